"""Minimal protobuf reader/patcher for ONNX model metadata.

Why: ``torch.onnx.export`` cannot set ``ModelProto.metadata_props`` and the ``onnx`` package is not available in the
training image. Protobuf messages are a sequence of (tag, value) fields and parsers merge repeated fields that appear
anywhere in the message, so appending encoded ``metadata_props`` entries (ModelProto field 14, each a
StringStringEntryProto with key = field 1 and value = field 2) to the serialized bytes yields a valid ModelProto that
onnxruntime (``InferenceSession.getModelMetadata`` / ``session.handler.metadata``) and the ``onnx`` package read back.
Existing entries with the same keys are removed first, so patching twice does not duplicate keys.

Only the top level of ModelProto is rewritten; the graph bytes are copied verbatim.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

MODEL_IR_VERSION = 1
MODEL_PRODUCER_NAME = 2
MODEL_GRAPH = 7
MODEL_OPSET_IMPORT = 8
MODEL_METADATA_PROPS = 14
GRAPH_NODE = 1
GRAPH_INITIALIZER = 5
GRAPH_INPUT = 11
GRAPH_OUTPUT = 12


def encode_varint(v: int) -> bytes:
    if v < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> Tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def iter_fields(buf: bytes) -> Iterator[Tuple[int, int, int, int, object]]:
    """Yield (field_number, wire_type, start, end, value) for each top-level field of a message.
    value is an int for varint/fixed types and a memoryview for length-delimited fields."""
    pos = 0
    n = len(buf)
    mv = memoryview(buf)
    while pos < n:
        start = pos
        tag, pos = decode_varint(buf, pos)
        fno, wt = tag >> 3, tag & 7
        if wt == 0:
            val, pos = decode_varint(buf, pos)
        elif wt == 1:
            val = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wt == 2:
            ln, pos = decode_varint(buf, pos)
            if pos + ln > n:
                raise ValueError("truncated length-delimited field")
            val = mv[pos:pos + ln]
            pos += ln
        elif wt == 5:
            val = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield fno, wt, start, pos, val


def _len_field(fno: int, payload: bytes) -> bytes:
    return encode_varint((fno << 3) | 2) + encode_varint(len(payload)) + payload


def encode_entry(key: str, value: str) -> bytes:
    """One ModelProto.metadata_props field: StringStringEntryProto {key = 1, value = 2}."""
    entry = _len_field(1, key.encode("utf-8")) + _len_field(2, value.encode("utf-8"))
    return _len_field(MODEL_METADATA_PROPS, entry)


def _decode_entry(payload: bytes) -> Tuple[str, str]:
    key, value = "", ""
    for fno, wt, _, _, val in iter_fields(payload):
        if wt == 2 and fno == 1:
            key = bytes(val).decode("utf-8")
        elif wt == 2 and fno == 2:
            value = bytes(val).decode("utf-8")
    return key, value


def read_metadata(model: bytes) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for fno, wt, _, _, val in iter_fields(model):
        if fno == MODEL_METADATA_PROPS and wt == 2:
            k, v = _decode_entry(bytes(val))
            out[k] = v
    return out


def set_metadata(model: bytes, props: Dict[str, str]) -> bytes:
    """Return model bytes with ``props`` stored in metadata_props (replacing entries with the same keys)."""
    for k, v in props.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("metadata keys and values must be strings")
    kept = bytearray()
    for fno, wt, start, end, val in iter_fields(model):
        if fno == MODEL_METADATA_PROPS and wt == 2 and _decode_entry(bytes(val))[0] in props:
            continue
        kept += model[start:end]
    for k in sorted(props):
        kept += encode_entry(k, props[k])
    return bytes(kept)


def _names(graph: bytes, fno: int) -> List[str]:
    names = []
    for f, wt, _, _, val in iter_fields(graph):
        if f == fno and wt == 2:
            for f2, wt2, _, _, v2 in iter_fields(bytes(val)):
                if f2 == 1 and wt2 == 2:
                    names.append(bytes(v2).decode("utf-8"))
                    break
    return names


def model_info(model: bytes) -> Dict:
    """A few facts about a serialized ModelProto: ir_version, producer, opsets, graph input/output names,
    node and initializer counts, op types, metadata."""
    info: Dict = {"opsets": {}, "inputs": [], "outputs": [], "metadata": {}, "nodes": 0, "initializers": 0,
                  "opTypes": []}
    op_types = set()
    for fno, wt, _, _, val in iter_fields(model):
        if fno == MODEL_IR_VERSION and wt == 0:
            info["irVersion"] = val
        elif fno == MODEL_PRODUCER_NAME and wt == 2:
            info["producer"] = bytes(val).decode("utf-8")
        elif fno == MODEL_OPSET_IMPORT and wt == 2:
            domain, version = "", 0
            for f2, wt2, _, _, v2 in iter_fields(bytes(val)):
                if f2 == 1 and wt2 == 2:
                    domain = bytes(v2).decode("utf-8")
                elif f2 == 2 and wt2 == 0:
                    version = v2
            info["opsets"][domain] = version
        elif fno == MODEL_GRAPH and wt == 2:
            g = bytes(val)
            info["inputs"] = _names(g, GRAPH_INPUT)
            info["outputs"] = _names(g, GRAPH_OUTPUT)
            for f2, wt2, _, _, v2 in iter_fields(g):
                if f2 == GRAPH_NODE and wt2 == 2:
                    info["nodes"] += 1
                    for f3, wt3, _, _, v3 in iter_fields(bytes(v2)):
                        if f3 == 4 and wt3 == 2:  # NodeProto.op_type
                            op_types.add(bytes(v3).decode("utf-8"))
                elif f2 == GRAPH_INITIALIZER and wt2 == 2:
                    info["initializers"] += 1
        elif fno == MODEL_METADATA_PROPS and wt == 2:
            k, v = _decode_entry(bytes(val))
            info["metadata"][k] = v
    info["opTypes"] = sorted(op_types)
    return info
