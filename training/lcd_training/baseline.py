"""Pixel-difference threshold baseline.

A pixel is called changed when the mean over bands of |after - before| (raw 0..255 values) exceeds a threshold.
The threshold that maximises F1 on the val split is chosen (exhaustively, via histograms of the difference for
changed and unchanged pixels) and F1/IoU are reported on the test split.

    python -m lcd_training.baseline --manifest M [--test-manifest T] [--val-fraction 0.1] [--seed 42] [--out FILE]

Splits follow the trainer: explicit ``split`` fields are kept, items without one are divided into train/val by
``--val-fraction`` and ``--seed`` (same rule and defaults as the trainer). With ``--test-manifest`` every item of that
manifest is a test item. Prints one JSON line; exit code 2 on invalid input.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from .common import clean_json
from .data import DataError, Sample, assign_splits, load_all, load_manifest
from .metrics import summarize

BINS_PER_UNIT = 4
N_BINS = 256 * BINS_PER_UNIT


def diff_map(s: Sample) -> np.ndarray:
    return np.abs(s.after.astype(np.float32) - s.before.astype(np.float32)).mean(axis=2)


def _bin(d: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(d * BINS_PER_UNIT + 1e-4).astype(np.int64), 0, N_BINS - 1)


def histograms(samples: Sequence[Sample]):
    pos = np.zeros(N_BINS, np.int64)
    neg = np.zeros(N_BINS, np.int64)
    for s in samples:
        b = _bin(diff_map(s))
        lab = s.label.astype(bool)
        pos += np.bincount(b[lab], minlength=N_BINS)
        neg += np.bincount(b[~lab], minlength=N_BINS)
    return pos, neg


def best_threshold(samples: Sequence[Sample]) -> Dict:
    """Threshold t (changed when diff >= t) that maximises F1 on ``samples``."""
    pos, neg = histograms(samples)
    # predicted changed for bins >= k
    tp = np.cumsum(pos[::-1])[::-1]
    fp = np.cumsum(neg[::-1])[::-1]
    fn = pos.sum() - tp
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    k = int(np.argmax(f1))
    return {"threshold": k / BINS_PER_UNIT, "f1": float(f1[k])}


def score(samples: Sequence[Sample], threshold: float) -> Dict:
    tp = fp = fn = tn = 0
    nuis_items = nuis_fp = nuis_px = 0
    for s in samples:
        pred = diff_map(s) >= threshold - 1e-6
        lab = s.label.astype(bool)
        tp += int(np.count_nonzero(pred & lab))
        fp += int(np.count_nonzero(pred & ~lab))
        fn += int(np.count_nonzero(~pred & lab))
        tn += int(np.count_nonzero(~pred & ~lab))
        if s.item.meta and s.item.meta.get("nuisanceOnly"):
            nuis_items += 1
            nuis_fp += int(np.count_nonzero(pred & ~lab))
            nuis_px += int(lab.size)
    out = summarize(tp, fp, fn, tn, full=True)
    if nuis_items:
        out["nuisanceOnly"] = {"items": nuis_items, "falsePositivePixelRate": round(nuis_fp / max(nuis_px, 1), 6)}
    return out


def run(manifest: str, test_manifest: Optional[str], val_fraction: float, seed: int) -> Dict:
    m = load_manifest(manifest)
    samples = load_all(m)
    splits = assign_splits(samples, val_fraction, seed)
    val = [samples[i] for i in splits["val"]]
    if test_manifest:
        test = load_all(load_manifest(test_manifest))
    else:
        test = [samples[i] for i in splits["test"]]
    tune_split = "val"
    if not val:
        val, tune_split = [samples[i] for i in splits["train"]], "train"
    if not test:
        raise DataError("no test items: give items with split 'test' or --test-manifest", problem="empty_dataset")
    best = best_threshold(val)
    return {"event": "baseline", "method": "mean over bands of |after - before| >= threshold (raw 0..255)",
            "threshold": best["threshold"], "tunedOn": tune_split, "tuneF1": round(best["f1"], 6),
            "val": score(val, best["threshold"]), "test": score(test, best["threshold"]),
            "counts": {"tune": len(val), "test": len(test)}}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lcd_training.baseline", description=__doc__.split("\n")[1])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--test-manifest", default=None)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="also write the result JSON here")
    a = ap.parse_args(argv)
    try:
        res = run(a.manifest, a.test_manifest, a.val_fraction, a.seed)
    except DataError as e:
        print(json.dumps({"event": "error", "code": e.problem, "item": e.item, "message": e.message}))
        return 2
    res = clean_json(res)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
