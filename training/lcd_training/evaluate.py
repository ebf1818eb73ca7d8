"""Evaluate a checkpoint (best.pt) on a manifest split.

    python -m lcd_training.evaluate --checkpoint DIR/best.pt --manifest M [--split test|val|train|all]
        [--threshold T] [--tile-size S] [--val-fraction F] [--seed K] [--out FILE]

The split rule is the trainer's (explicit split fields, else train/val by --val-fraction/--seed, defaulting to the
checkpoint's config). Prints one JSON line with precision, recall, F1, IoU, overall accuracy, kappa and confusion
counts. When the manifest carries generator metadata (``meta.nuisanceOnly``, written by lcd_training.synthetic) it
also reports the false-positive pixel rate on the nuisance-only pairs.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import torch

from .common import clean_json, logit_threshold, pick_device, predict_image
from .data import DataError, assign_splits, load_all, load_manifest, normalize
from .metrics import Confusion
from .model import SNUNetCBAM


def load_checkpoint(path: str, device: torch.device):
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # torch < 1.13.1 has no weights_only
        ck = torch.load(path, map_location="cpu")
    model = SNUNetCBAM(ck["bands"], ck["baseWidth"])
    model.load_state_dict(ck["stateDict"])
    return model.to(device).eval(), ck


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lcd_training.evaluate")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--tile-size", type=int, default=None)
    ap.add_argument("--val-fraction", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    try:
        device = pick_device(a.device)
        model, ck = load_checkpoint(a.checkpoint, device)
        cfg = ck["config"]
        threshold = a.threshold if a.threshold is not None else cfg["threshold"]
        tile = a.tile_size or cfg["tileSize"]
        samples = load_all(load_manifest(a.manifest))
        if samples[0].before.shape[2] != ck["bands"]:
            raise DataError(f"manifest images have {samples[0].before.shape[2]} bands, model expects {ck['bands']}",
                            problem="band_mismatch")
        splits = assign_splits(samples, cfg["valFraction"] if a.val_fraction is None else a.val_fraction,
                               cfg["seed"] if a.seed is None else a.seed)
        idx = list(range(len(samples))) if a.split == "all" else splits[a.split]
        if not idx:
            raise DataError(f"no items in split {a.split}", problem="empty_dataset")
        conf, nuis = Confusion(), Confusion()
        t = logit_threshold(threshold)
        n_nuis = 0
        for i in idx:
            s = samples[i]
            logits, _ = predict_image(model, normalize(s.before, ck["normalization"]),
                                      normalize(s.after, ck["normalization"]), tile, device)
            pred = logits > t
            conf.update(pred, s.label)
            if s.item.meta and s.item.meta.get("nuisanceOnly"):
                nuis.update(pred, s.label)
                n_nuis += 1
        res = {"event": "evaluation", "split": a.split, "items": len(idx), "threshold": threshold, "tileSize": tile,
               **conf.summary(full=True)}
        if n_nuis:
            px = nuis.tp + nuis.fp + nuis.fn + nuis.tn
            res["nuisanceOnly"] = {"items": n_nuis, "falsePositivePixelRate": round(nuis.fp / max(px, 1), 6)}
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
