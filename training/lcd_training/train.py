"""Train SNUNet-CBAM on a manifest and write the model artifacts.

    python -m lcd_training.train --manifest M --out DIR --config '{"epochs":20,"baseWidth":16,...}'

Progress is written to stdout as JSON lines (see training/README.md). Exit codes: 0 done, 2 invalid config or
dataset (an ``error`` event names the item and the problem), 1 any other failure.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import io
import json
import math
import os
import signal
import sys
import time
import traceback
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import CONTRACT_VERSION
from .common import (ConfigError, Emitter, code_version, config_hash, pick_device, predict_image, predict_tiles,
                     seed_everything, sha256_file, state_dict_hash, tile_grid, validate_config)
from .data import (DataError, Sample, assign_splits, band_names, compute_normalization, geometric, load_all,
                   load_manifest, normalize, photometric, random_crop)
from .losses import bce_dice_loss
from .metrics import Confusion
from .model import ARCHITECTURE, SIZE_MULTIPLE, SNUNetCBAM, count_parameters, embedding_dim
from .onnx_meta import set_metadata

ONNX_OPSET = 17
HIST_BINS = 64
FRACTION_BINS = 20
RESERVOIR = 256
REFERENCE_MODEL_ITEMS = 512
PARITY_ITEMS = 2
PARITY_MAX_SIZE = 128


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage text and exit; we need a JSON error instead
        raise ConfigError(f"bad arguments: {message}")


# ----------------------------------------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------------------------------------
def make_batch(rng: np.random.Generator, samples: Sequence[Sample], idx: Sequence[int], crop: int, norm: Dict,
               augment: bool, device: torch.device):
    A, B, L = [], [], []
    for i in idx:
        a, b, lab = random_crop(rng, samples[i], crop)
        if augment:
            a, b, lab = geometric(rng, a, b, lab)
            a = photometric(rng, a)   # independent jitter for each date
            b = photometric(rng, b)
        A.append(normalize(a, norm))
        B.append(normalize(b, norm))
        L.append(lab[None].astype(np.float32))
    to = lambda xs: torch.from_numpy(np.stack(xs)).to(device)  # noqa: E731
    return to(A), to(B), to(L)


def make_schedule(opt: torch.optim.Optimizer, cfg: Dict, total_steps: int):
    if cfg["schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["learningRate"], total_steps=max(total_steps, 2),
                                                   pct_start=max(cfg["warmupFraction"], 0.05))
    warm = int(round(cfg["warmupFraction"] * total_steps))
    constant = cfg["schedule"] == "constant"

    def factor(step: int) -> float:
        if warm > 0 and step < warm:
            return (step + 1) / warm
        if constant:
            return 1.0
        t = (step - warm) / max(1, total_steps - warm)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ----------------------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------------------
def evaluate(model: SNUNetCBAM, samples: Sequence[Sample], idx: Sequence[int], norm: Dict, threshold: float,
             tile: int, device: torch.device, full: bool = False) -> Dict:
    model.eval()
    conf = Confusion()
    t_logit = float(np.log(threshold / (1 - threshold)))
    for i in idx:
        s = samples[i]
        logits, _ = predict_image(model, normalize(s.before, norm), normalize(s.after, norm), tile, device)
        conf.update(logits > t_logit, s.label)
    return conf.summary(full=full)


def _hist_summary(values: np.ndarray, bins: int, lo: float, hi: float) -> Dict:
    values = np.asarray(values, np.float64)
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    return {"histogram": counts.tolist(), "binEdges": [round(float(e), 6) for e in edges],
            "count": int(values.size), "mean": float(values.mean()) if values.size else None,
            "std": float(values.std()) if values.size else None,
            "min": float(values.min()) if values.size else None, "max": float(values.max()) if values.size else None}


@torch.no_grad()
def reference_stats(model: SNUNetCBAM, samples: Sequence[Sample], idx: Sequence[int], norm: Dict, cfg: Dict,
                    device: torch.device, dataset_version: str) -> Dict:
    """Reference statistics for drift monitoring, over the training split, per inference tile of tileSize."""
    model.eval()
    bands = samples[idx[0]].before.shape[2]
    names = band_names(bands)
    hist = np.zeros((bands, HIST_BINS), np.int64)
    s1 = np.zeros(bands)
    s2 = np.zeros(bands)
    vmin = np.full(bands, np.inf)
    vmax = np.full(bands, -np.inf)
    npx = 0
    label_frac: List[float] = []
    pred_frac: List[float] = []
    mean_prob: List[float] = []
    d = model.embedding_dim
    e_sum = np.zeros(d)
    e_sq = np.zeros(d)
    e_n = 0
    reservoir: List[List[float]] = []
    rng = np.random.default_rng(np.random.SeedSequence([cfg["seed"], 0xD41F7]))
    t_logit = float(np.log(cfg["threshold"] / (1 - cfg["threshold"])))
    tile = cfg["tileSize"]
    for i in idx:
        s = samples[i]
        for img in (s.before, s.after):
            x = img.reshape(-1, bands).astype(np.float64)
            for b in range(bands):
                hist[b] += np.histogram(np.clip(x[:, b], 0, 255), bins=HIST_BINS, range=(0, 256))[0]
            s1 += x.sum(0)
            s2 += (x * x).sum(0)
            vmin = np.minimum(vmin, x.min(0))
            vmax = np.maximum(vmax, x.max(0))
            npx += x.shape[0]
        h, w = s.label.shape
        for (y, x0, th, tw) in tile_grid(h, w, tile):
            label_frac.append(float(s.label[y:y + th, x0:x0 + tw].mean()))
    # the model-based statistics use a seeded subset of at most REFERENCE_MODEL_ITEMS items (one forward pass each)
    model_idx = list(idx)
    if len(model_idx) > REFERENCE_MODEL_ITEMS:
        model_idx = sorted(rng.choice(model_idx, REFERENCE_MODEL_ITEMS, replace=False).tolist())
    for i in model_idx:
        s = samples[i]
        a, b_ = normalize(s.before, norm), normalize(s.after, norm)
        for (y, x0, th, tw), lg, emb in predict_tiles(model, a, b_, tile, device):
            pred_frac.append(float((lg > t_logit).mean()))
            mean_prob.append(float((1.0 / (1.0 + np.exp(-lg.astype(np.float64)))).mean()))
            e = emb.astype(np.float64)
            e_sum += e
            e_sq += e * e
            e_n += 1
            if len(reservoir) < RESERVOIR:
                reservoir.append([round(float(v), 6) for v in e])
            else:
                j = int(rng.integers(0, e_n))
                if j < RESERVOIR:
                    reservoir[j] = [round(float(v), 6) for v in e]
    mean = s1 / npx
    std = np.sqrt(np.maximum(s2 / npx - mean * mean, 0))
    e_mean = e_sum / max(e_n, 1)
    e_var = np.maximum(e_sq / max(e_n, 1) - e_mean * e_mean, 0)
    return {
        "version": 1,
        "datasetVersion": dataset_version,
        "split": "train",
        "items": len(idx),
        "modelItems": len(model_idx),
        "tileSize": tile,
        "tiles": len(label_frac),
        "bands": {
            "names": names,
            "scale": 255,
            "histogramBins": HIST_BINS,
            "histogramRange": [0, 256],
            "note": "raw input values, before and after pooled; bin i counts values in [4i, 4i+4), values outside "
                    "0..255 are clipped into the first/last bin",
            "perBand": [{"name": names[b], "histogram": hist[b].tolist(), "mean": float(mean[b]),
                         "std": float(std[b]), "min": float(vmin[b]), "max": float(vmax[b]), "pixels": npx}
                        for b in range(bands)],
        },
        "classBalance": {"unit": "tile", "changedFraction": _hist_summary(np.array(label_frac), FRACTION_BINS, 0, 1),
                         "pixelChangedFraction": float(np.mean(label_frac)) if label_frac else None},
        "prediction": {"unit": "tile", "threshold": cfg["threshold"],
                       "changedFraction": _hist_summary(np.array(pred_frac), FRACTION_BINS, 0, 1),
                       "meanProbability": _hist_summary(np.array(mean_prob), FRACTION_BINS, 0, 1)},
        "embedding": {"dim": d, "count": e_n, "unit": "tile",
                      "definition": "per-tile mean over space of |X40(after)-X40(before)|, groups of 4 channels "
                                    "averaged",
                      "mean": [float(v) for v in e_mean], "var": [float(v) for v in e_var],
                      "sample": reservoir, "sampleSize": len(reservoir)},
    }


# ----------------------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------------------
def export_onnx(model: SNUNetCBAM, path: str, metadata: Dict[str, str], size: int = 64) -> int:
    m = copy.deepcopy(model).cpu().float().eval()
    c = m.in_channels
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, c, size, size, generator=g)
    b = torch.randn(1, c, size, size, generator=g)
    axes = {0: "batch", 2: "height", 3: "width"}
    kwargs = dict(input_names=["before", "after"], output_names=["change_logits", "embedding"],
                  dynamic_axes={"before": axes, "after": axes, "change_logits": axes, "embedding": {0: "batch"}},
                  opset_version=ONNX_OPSET, do_constant_folding=True, export_params=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # torch >= 2.5: keep the TorchScript exporter (no onnxscript dependency)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (a, b), buf, **kwargs)
    data = set_metadata(buf.getvalue(), metadata)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(data)


@torch.no_grad()
def write_parity(model: SNUNetCBAM, samples: Sequence[Sample], idx: Sequence[int], norm: Dict, out_dir: str,
                 tile: int) -> Dict:
    """Held-back pairs' normalised inputs and the PyTorch (CPU, float32) outputs as raw little-endian float32."""
    m = copy.deepcopy(model).cpu().float().eval()
    chosen = list(idx)[:PARITY_ITEMS]
    side = min([tile, PARITY_MAX_SIZE] + [min(samples[i].label.shape) for i in chosen])
    side = (side // SIZE_MULTIPLE) * SIZE_MULTIPLE
    A = np.stack([normalize(samples[i].before[:side, :side], norm) for i in chosen]).astype("<f4")
    B = np.stack([normalize(samples[i].after[:side, :side], norm) for i in chosen]).astype("<f4")
    logits, emb = m(torch.from_numpy(A.astype(np.float32)), torch.from_numpy(B.astype(np.float32)))
    tensors = {"before": A, "after": B, "change_logits": logits.numpy().astype("<f4"),
               "embedding": emb.numpy().astype("<f4")}
    os.makedirs(out_dir, exist_ok=True)
    index = {"format": "raw little-endian float32, C order", "inputs": ["before", "after"],
             "outputs": ["change_logits", "embedding"], "tolerance": {"maxAbsDiff": 1e-3},
             "items": [samples[i].item.name for i in chosen], "tensors": {}}
    for name, arr in tensors.items():
        fn = f"{name}.bin"
        with open(os.path.join(out_dir, fn), "wb") as f:
            f.write(np.ascontiguousarray(arr).tobytes())
        index["tensors"][name] = {"file": fn, "dtype": "float32", "shape": list(arr.shape)}
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    return index


def _write_json(path: str, obj: Dict, indent: Optional[int] = 1) -> None:
    from .common import clean_json
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(clean_json(obj), f, indent=indent, allow_nan=False, separators=(",", ": ") if indent else (",", ":"))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------------
def parse_config_arg(text: Optional[str]) -> Dict:
    if text is None or text == "":
        return {}
    if text.startswith("@"):
        try:
            with open(text[1:], "r", encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read config file {text[1:]}: {e}")
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError(f"config is not valid JSON: {e}")


def run(args: argparse.Namespace, em: Emitter) -> int:
    t_start = time.time()
    cfg = validate_config(parse_config_arg(args.config))
    device = pick_device(cfg["device"])
    seed_everything(cfg["seed"], device, cfg["numThreads"])
    manifest = load_manifest(args.manifest)
    samples = load_all(manifest)
    splits = assign_splits(samples, cfg["valFraction"], cfg["seed"])
    train_idx, val_idx, test_idx = splits["train"], splits["val"], splits["test"]
    if not train_idx:
        raise DataError("dataset has no training items (all items are in val/test splits)", problem="empty_dataset")
    bands = samples[0].before.shape[2]
    # Every item must reach the model's size multiple, whatever its split: a smaller val/test item would only fail
    # after training (in evaluation and the parity export), so it is refused before any work is done.
    for split_name, split_idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        for i in split_idx:
            h, w = samples[i].label.shape
            if min(h, w) < SIZE_MULTIPLE:
                name = samples[i].item.name
                raise DataError(f"{name}: image is {w}x{h} px, smaller than {SIZE_MULTIPLE} px a side, the smallest "
                                f"the model takes ({split_name} split); drop it or use a larger crop", item=name,
                                problem="image_too_small")
    min_side = min(min(samples[i].label.shape) for i in train_idx)
    crop = (min(cfg["tileSize"], min_side) // SIZE_MULTIPLE) * SIZE_MULTIPLE
    norm = compute_normalization([samples[i] for i in train_idx])
    chash = config_hash(cfg)
    cver = code_version()
    os.makedirs(args.out, exist_ok=True)

    model = SNUNetCBAM(bands, cfg["baseWidth"]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["learningRate"], weight_decay=cfg["weightDecay"])
    per_epoch = cfg["samplesPerEpoch"] or len(train_idx)
    steps_per_epoch = math.ceil(per_epoch / cfg["batchSize"])
    total_steps = steps_per_epoch * cfg["epochs"]
    sched = make_schedule(opt, cfg, total_steps)
    rng = np.random.default_rng(np.random.SeedSequence([cfg["seed"], 0xA116]))

    em.emit("start", config=cfg, configHash=chash, datasetVersion=manifest.dataset_version, codeVersion=cver,
            device=str(device), torch=torch.__version__, threads=torch.get_num_threads(),
            counts={"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)}, bands=bands,
            cropSize=crop, stepsPerEpoch=steps_per_epoch, totalSteps=total_steps,
            parameters=count_parameters(model), architecture=ARCHITECTURE,
            embeddingDim=embedding_dim(cfg["baseWidth"]))

    best_f1 = -1.0
    best_epoch = 0
    best_val: Optional[Dict] = None
    best_state = None
    ckpt_path = os.path.join(args.out, "best.pt")
    step = 0
    for epoch in range(1, cfg["epochs"] + 1):
        model.train()
        t_epoch = time.time()
        cpu_epoch = time.process_time()
        order: List[int] = []
        while len(order) < per_epoch:
            order += [train_idx[k] for k in rng.permutation(len(train_idx))]
        order = order[:per_epoch]
        loss_sum, n_seen = 0.0, 0
        t_log, n_log = time.time(), 0
        for bi in range(steps_per_epoch):
            idx = order[bi * cfg["batchSize"]:(bi + 1) * cfg["batchSize"]]
            a, b, lab = make_batch(rng, samples, idx, crop, norm, cfg["augment"], device)
            logits, _ = model(a, b)
            loss, bce, dice = bce_dice_loss(logits, lab, cfg["bceWeight"], cfg["diceWeight"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged: loss is {loss.item()} at epoch {epoch} step {bi + 1}"
                                         " (try a lower learningRate)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            lv = float(loss.item())
            loss_sum += lv * len(idx)
            n_seen += len(idx)
            n_log += len(idx)
            if (bi + 1) % cfg["logEvery"] == 0 or bi + 1 == steps_per_epoch:
                dt = max(time.time() - t_log, 1e-9)
                em.emit("step", epoch=epoch, step=bi + 1, globalStep=step, loss=round(lv, 6),
                        bce=round(float(bce.item()), 6), dice=round(float(dice.item()), 6),
                        lr=float(opt.param_groups[0]["lr"]), pairsPerSecond=round(n_log / dt, 3))
                t_log, n_log = time.time(), 0
        train_loss = loss_sum / max(n_seen, 1)
        val = evaluate(model, samples, val_idx, norm, cfg["threshold"], cfg["tileSize"], device) if val_idx else None
        score = val["f1"] if val else float(epoch)  # without a val split the last epoch wins
        improved = score > best_f1
        if improved:
            best_f1, best_epoch, best_val = score, epoch, val
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            torch.save({"format": "lcd-snunet-cbam", "formatVersion": 1, "stateDict": best_state, "config": cfg,
                        "bands": bands, "bandNames": band_names(bands), "normalization": norm,
                        "baseWidth": cfg["baseWidth"], "embeddingDim": embedding_dim(cfg["baseWidth"]),
                        "epoch": epoch, "val": val, "datasetVersion": manifest.dataset_version,
                        "configHash": chash, "codeVersion": cver}, ckpt_path)
        em.emit("epoch", epoch=epoch, trainLoss=round(train_loss, 6), val=val, best=improved,
                seconds=round(time.time() - t_epoch, 3), cpuSeconds=round(time.process_time() - cpu_epoch, 3),
                lr=float(opt.param_groups[0]["lr"]))

    em.emit("artifact", name="best.pt", path=os.path.abspath(ckpt_path), bytes=os.path.getsize(ckpt_path),
            sha256=sha256_file(ckpt_path))
    model.load_state_dict(best_state)
    model.eval()
    weights_hash = state_dict_hash(model)

    # evaluation on test (else val, else train)
    eval_split, eval_idx = ("test", test_idx) if test_idx else (("val", val_idx) if val_idx else ("train", train_idx))
    evaluation = evaluate(model, samples, eval_idx, norm, cfg["threshold"], cfg["tileSize"], device, full=True)
    evaluation = {"split": eval_split, "items": len(eval_idx), "threshold": cfg["threshold"], **evaluation,
                  "bestEpoch": best_epoch, "val": best_val, "datasetVersion": manifest.dataset_version,
                  "configHash": chash, "weightsSha256": weights_hash}
    ev_path = os.path.join(args.out, "evaluation.json")
    _write_json(ev_path, evaluation)
    em.emit("artifact", name="evaluation.json", path=os.path.abspath(ev_path), bytes=os.path.getsize(ev_path))

    stats = reference_stats(model, samples, train_idx, norm, cfg, device, manifest.dataset_version)
    rs_path = os.path.join(args.out, "reference_stats.json")
    _write_json(rs_path, stats, indent=None)
    em.emit("artifact", name="reference_stats.json", path=os.path.abspath(rs_path), bytes=os.path.getsize(rs_path))

    metadata = {
        "lcd.contract_version": CONTRACT_VERSION,
        "lcd.architecture": ARCHITECTURE,
        "lcd.base_width": str(cfg["baseWidth"]),
        "lcd.bands": str(bands),
        "lcd.band_names": json.dumps(band_names(bands)),
        "lcd.normalization": json.dumps(norm, separators=(",", ":")),
        "lcd.tile_size": str(cfg["tileSize"]),
        "lcd.size_multiple": str(SIZE_MULTIPLE),
        "lcd.threshold": repr(cfg["threshold"]),
        "lcd.output_activation": "sigmoid",
        "lcd.dataset_version": manifest.dataset_version,
        "lcd.config_hash": chash,
        "lcd.code_version": cver,
        "lcd.embedding_dim": str(embedding_dim(cfg["baseWidth"])),
    }
    onnx_path = os.path.join(args.out, "model.onnx")
    onnx_bytes = export_onnx(model, onnx_path, metadata, size=min(crop, 64))
    em.emit("artifact", name="model.onnx", path=os.path.abspath(onnx_path), bytes=onnx_bytes,
            sha256=sha256_file(onnx_path), metadata=metadata)

    held = test_idx or val_idx or train_idx
    parity_dir = os.path.join(args.out, "parity")
    write_parity(model, samples, held, norm, parity_dir, cfg["tileSize"])
    em.emit("artifact", name="parity", path=os.path.abspath(os.path.join(parity_dir, "index.json")))

    em.emit("done", bestEpoch=best_epoch, best=best_val,
            evaluation={k: evaluation[k] for k in ("split", "precision", "recall", "f1", "iou", "kappa")},
            weightsSha256=weights_hash, onnxBytes=onnx_bytes, seconds=round(time.time() - t_start, 3))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = _ArgParser(prog="python -m lcd_training.train", description="Train SNUNet-CBAM (JSON-lines progress)")
    ap.add_argument("--manifest", required=True, help="dataset manifest JSON")
    ap.add_argument("--out", required=True, help="output folder for best.pt, model.onnx, ...")
    ap.add_argument("--config", default="{}", help="JSON object (or @file) with training settings")
    return ap


def _install_sigterm():
    """SIGTERM (e.g. a cancelled run) ends like Ctrl-C: an ``error`` event with code ``interrupted``, exit 130.
    Returns the previous handler (None when it could not be installed)."""
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt()
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        return None


def main(argv: Optional[List[str]] = None, stream=None) -> int:
    """CLI entry point. ``stream``: write the JSON lines there instead of stdout (in-process use and tests)."""
    em = Emitter(stream=stream)
    previous = _install_sigterm()
    try:
        args = build_parser().parse_args(argv)
        return run(args, em)
    except ConfigError as e:
        em.emit("error", code="invalid_config", message=str(e))
        return 2
    except DataError as e:
        em.emit("error", code=e.problem, item=e.item, message=e.message)
        return 2
    except KeyboardInterrupt:
        em.emit("error", code="interrupted", message="interrupted")
        return 130
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        em.emit("error", code="internal", message=f"{type(e).__name__}: {e}")
        return 1
    finally:
        em.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
