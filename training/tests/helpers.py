"""Shared helpers for the trainer tests (tiny datasets, in-process CLI runs)."""
import io
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINING = os.path.dirname(HERE)
if TRAINING not in sys.path:
    sys.path.insert(0, TRAINING)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

TINY_CONFIG = {"epochs": 1, "baseWidth": 8, "batchSize": 4, "tileSize": 64, "valFraction": 0.25, "seed": 7,
               "logEvery": 1}


def run_train(manifest, out, config=None):
    """Run the training CLI in-process; returns (exit code, list of events)."""
    from lcd_training.train import main
    buf = io.StringIO()
    args = ["--manifest", manifest, "--out", out]
    if config is not None:
        args += ["--config", config if isinstance(config, str) else json.dumps(config)]
    code = main(args, stream=buf)
    events = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    return code, events


def write_png(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


def write_manifest(folder, items, version="test-v1"):
    path = os.path.join(folder, "manifest.json")
    with open(path, "w") as f:
        json.dump({"datasetVersion": version, "items": items}, f)
    return path


def simple_dataset(folder, n=4, size=32, rng_seed=0):
    """n random pairs with a square change, written as PNGs; returns the manifest path and the items."""
    rng = np.random.default_rng(rng_seed)
    items = []
    for i in range(n):
        a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        b = a.copy()
        lab = np.zeros((size, size), np.uint8)
        b[4:12, 4:12] = 255 - b[4:12, 4:12]
        lab[4:12, 4:12] = 255
        write_png(os.path.join(folder, "A", f"{i}.png"), a)
        write_png(os.path.join(folder, "B", f"{i}.png"), b)
        write_png(os.path.join(folder, "label", f"{i}.png"), lab)
        items.append({"before": f"A/{i}.png", "after": f"B/{i}.png", "label": f"label/{i}.png"})
    return write_manifest(folder, items), items
