"""A small NumPy reference interpreter for the ONNX graphs this trainer exports.

The training image has neither ``onnx`` nor ``onnxruntime``; this module decodes the ModelProto with the protobuf
reader of :mod:`onnx_meta` and evaluates the graph in float64 so the tests (and ``python -m lcd_training.onnx_ref
MODEL PARITY_DIR``) can check that ``model.onnx`` really computes what PyTorch computed. It supports only the
operators and attribute combinations that the SNUNet-CBAM export uses; anything else raises NotImplementedError.
It is slow and meant for tiny inputs.
"""
from __future__ import annotations

import json
import os
import struct
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from .onnx_meta import decode_varint, iter_fields

_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
           10: np.float16, 11: np.float64}


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


def _packed_varints(buf: bytes) -> List[int]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = decode_varint(buf, pos)
        out.append(_signed64(v))
    return out


def parse_tensor(buf: bytes) -> Tuple[str, np.ndarray]:
    dims: List[int] = []
    dtype = 1
    name = ""
    raw: Optional[bytes] = None
    floats: List[float] = []
    ints: List[int] = []
    doubles: List[float] = []
    for f, wt, _, _, v in iter_fields(buf):
        if f == 1:
            dims += _packed_varints(bytes(v)) if wt == 2 else [_signed64(v)]
        elif f == 2:
            dtype = v
        elif f == 4:
            floats += list(struct.unpack(f"<{len(v) // 4}f", bytes(v))) if wt == 2 else \
                [struct.unpack("<f", struct.pack("<I", v))[0]]
        elif f in (5, 7):
            ints += _packed_varints(bytes(v)) if wt == 2 else [_signed64(v)]
        elif f == 8:
            name = bytes(v).decode()
        elif f == 9:
            raw = bytes(v)
        elif f == 10:
            doubles += list(struct.unpack(f"<{len(v) // 8}d", bytes(v))) if wt == 2 else [v]
    np_dtype = _DTYPES.get(dtype)
    if np_dtype is None:
        raise NotImplementedError(f"tensor data type {dtype}")
    if raw is not None:
        arr = np.frombuffer(raw, dtype=np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype)
    elif floats:
        arr = np.array(floats, np_dtype)
    elif ints:
        arr = np.array(ints, np_dtype)
    elif doubles:
        arr = np.array(doubles, np_dtype)
    else:
        arr = np.zeros(0, np_dtype)
    return name, arr.reshape(dims) if dims else (arr.reshape(()) if arr.size == 1 else arr)


def parse_attribute(buf: bytes):
    name, kind = "", 0
    f_val = i_val = s_val = t_val = None
    floats: List[float] = []
    ints: List[int] = []
    for f, wt, _, _, v in iter_fields(buf):
        if f == 1:
            name = bytes(v).decode()
        elif f == 2:
            f_val = struct.unpack("<f", struct.pack("<I", v))[0]
        elif f == 3:
            i_val = _signed64(v)
        elif f == 4:
            s_val = bytes(v).decode("utf-8", "replace")
        elif f == 5:
            t_val = parse_tensor(bytes(v))[1]
        elif f == 7:
            floats += list(struct.unpack(f"<{len(v) // 4}f", bytes(v))) if wt == 2 else \
                [struct.unpack("<f", struct.pack("<I", v))[0]]
        elif f == 8:
            ints += _packed_varints(bytes(v)) if wt == 2 else [_signed64(v)]
        elif f == 20:
            kind = v
    value = {1: f_val, 2: i_val, 3: s_val, 4: t_val, 6: floats, 7: ints}.get(kind)
    if value is None:  # type missing: guess
        value = next(x for x in (t_val, ints or None, floats or None, i_val, f_val, s_val) if x is not None)
    return name, value


class Graph:
    def __init__(self, model: bytes):
        self.nodes: List[Dict] = []
        self.initializers: Dict[str, np.ndarray] = {}
        self.inputs: List[str] = []
        self.outputs: List[str] = []
        for f, wt, _, _, v in iter_fields(model):
            if f == 7 and wt == 2:
                self._parse_graph(bytes(v))

    def _parse_graph(self, g: bytes) -> None:
        for f, wt, _, _, v in iter_fields(g):
            if f == 1:
                node = {"inputs": [], "outputs": [], "op": "", "attrs": {}}
                for f2, _, _, _, v2 in iter_fields(bytes(v)):
                    if f2 == 1:
                        node["inputs"].append(bytes(v2).decode())
                    elif f2 == 2:
                        node["outputs"].append(bytes(v2).decode())
                    elif f2 == 4:
                        node["op"] = bytes(v2).decode()
                    elif f2 == 5:
                        k, val = parse_attribute(bytes(v2))
                        node["attrs"][k] = val
                self.nodes.append(node)
            elif f == 5:
                name, arr = parse_tensor(bytes(v))
                self.initializers[name] = arr
            elif f in (11, 12):
                for f2, _, _, _, v2 in iter_fields(bytes(v)):
                    if f2 == 1:
                        (self.inputs if f == 11 else self.outputs).append(bytes(v2).decode())
                        break

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        env: Dict[str, np.ndarray] = {k: v for k, v in self.initializers.items()}
        for k, v in feeds.items():
            env[k] = np.asarray(v, np.float64)
        for node in self.nodes:
            args = [env[n] if n else None for n in node["inputs"]]
            outs = _OPS[node["op"]](args, node["attrs"]) if node["op"] in _OPS else None
            if outs is None:
                raise NotImplementedError(f"ONNX op {node['op']}")
            if not isinstance(outs, tuple):
                outs = (outs,)
            for name, val in zip(node["outputs"], outs):
                env[name] = val
        return {k: env[k] for k in self.outputs}


# ----------------------------------------------------------------------------------------------------------------------
# operators
# ----------------------------------------------------------------------------------------------------------------------
def _f(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) if x.dtype != np.float64 and np.issubdtype(x.dtype, np.floating) else x


def _conv(args, at):
    x, w = _f(args[0]), _f(args[1])
    b = _f(args[2]) if len(args) > 2 and args[2] is not None else None
    if at.get("group", 1) != 1 or any(d != 1 for d in at.get("dilations", [1, 1])):
        raise NotImplementedError("Conv with groups/dilation")
    kh, kw = w.shape[2:]
    sh, sw = at.get("strides", [1, 1])
    pt, pl, pb, pr = at.get("pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # N, Ho, Wo, Co
    y = y.transpose(0, 3, 1, 2)
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def _conv_transpose(args, at):
    x, w = _f(args[0]), _f(args[1])
    b = _f(args[2]) if len(args) > 2 and args[2] is not None else None
    kh, kw = w.shape[2:]
    strides = at.get("strides", [1, 1])
    if list(strides) != [kh, kw] or any(at.get("pads", [0, 0, 0, 0])) or at.get("group", 1) != 1 \
            or any(at.get("output_padding", [0, 0])):
        raise NotImplementedError("ConvTranspose other than kernel == stride without padding")
    n, _, h, wd = x.shape
    y = np.einsum("nchw,cokl->nohkwl", x, w).reshape(n, w.shape[1], h * kh, wd * kw)
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def _maxpool(args, at):
    x = _f(args[0])
    k = at.get("kernel_shape")
    if list(at.get("strides", k)) != list(k) or any(at.get("pads", [0, 0, 0, 0])) or at.get("ceil_mode", 0):
        raise NotImplementedError("MaxPool other than kernel == stride without padding")
    n, c, h, w = x.shape
    kh, kw = k
    ho, wo = h // kh, w // kw
    return x[:, :, :ho * kh, :wo * kw].reshape(n, c, ho, kh, wo, kw).max(axis=(3, 5))


def _bn(args, at):
    x, s, b, m, v = (_f(a) for a in args[:5])
    eps = at.get("epsilon", 1e-5)
    sh = (1, -1) + (1,) * (x.ndim - 2)
    return (x - m.reshape(sh)) / np.sqrt(v.reshape(sh) + eps) * s.reshape(sh) + b.reshape(sh)


def _reshape(args, at):
    x, shape = args[0], [int(s) for s in np.asarray(args[1]).ravel()]
    if not at.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _reduce_mean(args, at):
    axes = at.get("axes")
    if axes is None and len(args) > 1 and args[1] is not None:
        axes = [int(a) for a in np.asarray(args[1]).ravel()]
    return np.mean(args[0], axis=tuple(axes) if axes is not None else None, keepdims=bool(at.get("keepdims", 1)))


def _unsqueeze(args, at):
    axes = at.get("axes")
    if axes is None:
        axes = [int(a) for a in np.asarray(args[1]).ravel()]
    x = args[0]
    for a in sorted(a % (x.ndim + len(axes)) for a in axes):
        x = np.expand_dims(x, a)
    return x


def _const_of_shape(args, at):
    val = at.get("value")
    dtype = val.dtype if val is not None else np.float32
    fill = val.ravel()[0] if val is not None else 0
    return np.full([int(s) for s in np.asarray(args[0]).ravel()], fill, dtype)


_OPS = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _maxpool,
    "BatchNormalization": _bn,
    "Relu": lambda a, at: np.maximum(a[0], 0),
    "Sigmoid": lambda a, at: 0.5 * (1.0 + np.tanh(0.5 * a[0])),
    "Add": lambda a, at: a[0] + a[1],
    "Sub": lambda a, at: a[0] - a[1],
    "Mul": lambda a, at: a[0] * a[1],
    "Div": lambda a, at: a[0] / a[1],
    "Abs": lambda a, at: np.abs(a[0]),
    "Identity": lambda a, at: a[0],
    "Concat": lambda a, at: np.concatenate(a, axis=at["axis"]),
    "GlobalAveragePool": lambda a, at: a[0].mean(axis=tuple(range(2, a[0].ndim)), keepdims=True),
    "GlobalMaxPool": lambda a, at: a[0].max(axis=tuple(range(2, a[0].ndim)), keepdims=True),
    "Constant": lambda a, at: at["value"],
    "ConstantOfShape": _const_of_shape,
    "Expand": lambda a, at: np.broadcast_to(a[0], np.broadcast_shapes(a[0].shape, tuple(
        int(s) for s in np.asarray(a[1]).ravel()))).copy(),
    "Tile": lambda a, at: np.tile(a[0], [int(r) for r in np.asarray(a[1]).ravel()]),
    "Reshape": _reshape,
    "ReduceMean": _reduce_mean,
    "Shape": lambda a, at: np.array(a[0].shape, np.int64),
    "Gather": lambda a, at: np.take(a[0], np.asarray(a[1]).astype(np.int64), axis=at.get("axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Cast": lambda a, at: a[0].astype(_DTYPES[at["to"]]),
    "Flatten": lambda a, at: a[0].reshape(int(np.prod(a[0].shape[:at.get("axis", 1)])), -1),
}


def load_parity(parity_dir: str) -> Dict[str, np.ndarray]:
    with open(os.path.join(parity_dir, "index.json")) as f:
        index = json.load(f)
    out = {}
    for name, t in index["tensors"].items():
        arr = np.fromfile(os.path.join(parity_dir, t["file"]), dtype="<f4")
        out[name] = arr.reshape(t["shape"])
    return out


def check_parity(model_path: str, parity_dir: str) -> Dict[str, float]:
    """Max abs difference between the ONNX graph (NumPy float64) and the recorded PyTorch outputs."""
    with open(model_path, "rb") as f:
        g = Graph(f.read())
    t = load_parity(parity_dir)
    res = g.run({"before": t["before"], "after": t["after"]})
    return {name: float(np.max(np.abs(res[name] - t[name]))) for name in ("change_logits", "embedding")}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m lcd_training.onnx_ref MODEL.onnx PARITY_DIR", file=sys.stderr)
        sys.exit(2)
    diffs = check_parity(sys.argv[1], sys.argv[2])
    print(json.dumps({"maxAbsDiff": diffs, "ok": all(v < 1e-3 for v in diffs.values())}))
    sys.exit(0 if all(v < 1e-3 for v in diffs.values()) else 1)
