"""Manifest loading, input validation, image IO, normalisation and augmentation.

Manifest (JSON)::

    {"datasetVersion": "<id>",
     "items": [{"before": "A/1.png", "after": "B/1.png", "label": "label/1.png" | null,
                "split": "train" | "val" | "test" (optional), ...}]}

Paths are relative to the manifest's folder. Images: anything PIL reads (PNG, JPEG, TIFF; RGB/RGBA/P are read as
3 bands, L as 1 band) or ``.npy`` arrays (H x W or H x W x C, any numeric dtype). Raw values are expected on a 0..255
scale (``lcd.normalization.scale`` = 255). Labels: single band (or identical bands) with values in {0, 255} or {0, 1}.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SPLITS = ("train", "val", "test")
SCALE = 255.0


class DataError(Exception):
    """A problem with the dataset that the user must fix (exit code 2)."""

    def __init__(self, message: str, item: Optional[str] = None, problem: str = "invalid_input"):
        super().__init__(message)
        self.message = message
        self.item = item
        self.problem = problem


@dataclass
class Item:
    index: int
    name: str                 # the before path as written in the manifest (names the item in errors)
    before: str               # resolved paths
    after: str
    label: Optional[str]
    split: Optional[str]
    meta: Optional[Dict] = None  # free-form per-item metadata from the manifest (e.g. the generator's)


@dataclass
class Manifest:
    path: str
    dataset_version: str
    items: List[Item]


def load_manifest(path: str) -> Manifest:
    if not os.path.isfile(path):
        raise DataError(f"manifest not found: {path}", problem="manifest_not_found")
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"manifest is not valid JSON: {e}", problem="invalid_manifest")
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise DataError("manifest must be an object with an 'items' array", problem="invalid_manifest")
    version = doc.get("datasetVersion")
    if version is None:
        version = "unversioned"
    if not isinstance(version, str) or not version:
        raise DataError("manifest datasetVersion must be a non-empty string", problem="invalid_manifest")
    root = os.path.dirname(os.path.abspath(path))
    items: List[Item] = []
    for i, it in enumerate(doc["items"]):
        where = f"items[{i}]"
        if not isinstance(it, dict):
            raise DataError(f"{where} must be an object", item=where, problem="invalid_manifest")
        for key in ("before", "after"):
            if not isinstance(it.get(key), str) or not it.get(key):
                raise DataError(f"{where}.{key} must be a non-empty path string", item=where,
                                problem="invalid_manifest")
        label = it.get("label")
        if label is not None and (not isinstance(label, str) or not label):
            raise DataError(f"{where}.label must be a path string or null", item=where, problem="invalid_manifest")
        split = it.get("split")
        if split is not None and split not in SPLITS:
            raise DataError(f"{where}.split must be one of train, val, test (got {split!r})", item=where,
                            problem="invalid_manifest")
        name = f"{where} ({it['before']})"
        items.append(Item(i, name, os.path.join(root, it["before"]), os.path.join(root, it["after"]),
                          os.path.join(root, label) if label else None, split,
                          it.get("meta") if isinstance(it.get("meta"), dict) else None))
    if not items:
        raise DataError("dataset is empty: the manifest has no items", problem="empty_dataset")
    return Manifest(os.path.abspath(path), version, items)


def read_image(path: str, what: str, item: str) -> np.ndarray:
    """Read an image as H x W x C float32 on the raw 0..255 scale."""
    if not os.path.isfile(path):
        raise DataError(f"{item}: {what} file not found: {path}", item=item, problem="file_not_found")
    try:
        if path.lower().endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"expected a numeric H x W or H x W x C array, got {arr.dtype} {arr.shape}")
            arr = arr.astype(np.float32)
        else:
            from PIL import Image
            with Image.open(path) as im:
                if im.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA", "1"):
                    im = im.convert("L" if im.mode in ("LA", "1") else "RGB")
                arr = np.asarray(im).astype(np.float32)
            if arr.ndim == 2:
                arr = arr[..., None]
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a user input problem
        raise DataError(f"{item}: cannot read {what} image {path}: {e}", item=item, problem="unreadable_image")
    if not np.all(np.isfinite(arr)):
        bad = [int(b) for b in range(arr.shape[2]) if not np.all(np.isfinite(arr[..., b]))]
        raise DataError(f"{item}: NaN or infinite values in {what} image band(s) {bad}", item=item,
                        problem="nan_in_bands")
    return arr


def read_label(path: Optional[str], item: str) -> np.ndarray:
    """Read a binary label as H x W uint8 in {0, 1}."""
    if path is None:
        raise DataError(f"{item}: missing label (label is null; every training/evaluation item needs one)",
                        item=item, problem="missing_label")
    arr = read_image(path, "label", item)
    if arr.shape[2] > 1:
        if not np.all(arr == arr[..., :1]):
            raise DataError(f"{item}: label must have a single band (or identical bands)", item=item,
                            problem="non_binary_label")
    arr = arr[..., 0]
    values = np.unique(arr)
    if set(values.tolist()) <= {0.0, 255.0}:
        return (arr > 0).astype(np.uint8)
    if set(values.tolist()) <= {0.0, 1.0}:
        return arr.astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:8].tolist()) + (" ..." if len(values) > 8 else "")
    raise DataError(f"{item}: non-binary label: values must be 0/255 or 0/1, found {shown}", item=item,
                    problem="non_binary_label")


@dataclass
class Sample:
    item: Item
    before: np.ndarray   # H x W x C, uint8 when the source was 8-bit, else float32 (raw scale)
    after: np.ndarray
    label: np.ndarray    # H x W uint8 {0, 1}


def _compact(a: np.ndarray) -> np.ndarray:
    if a.min() >= 0 and a.max() <= 255 and np.all(a == np.round(a)):
        return a.astype(np.uint8)
    return a


def load_sample(item: Item, bands: Optional[int] = None) -> Sample:
    a = read_image(item.before, "before", item.name)
    b = read_image(item.after, "after", item.name)
    if a.shape != b.shape:
        raise DataError(f"{item.name}: size mismatch: before is {_shape(a)} but after is {_shape(b)}",
                        item=item.name, problem="size_mismatch")
    if bands is not None and a.shape[2] != bands:
        raise DataError(f"{item.name}: has {a.shape[2]} bands but other items have {bands}", item=item.name,
                        problem="band_mismatch")
    lab = read_label(item.label, item.name)
    if lab.shape != a.shape[:2]:
        raise DataError(f"{item.name}: size mismatch: label is {lab.shape[0]}x{lab.shape[1]} but images are "
                        f"{a.shape[0]}x{a.shape[1]}", item=item.name, problem="size_mismatch")
    return Sample(item, _compact(a), _compact(b), lab)


def _shape(a: np.ndarray) -> str:
    return "x".join(str(s) for s in a.shape)


def load_all(manifest: Manifest) -> List[Sample]:
    """Read and validate every item (fails on the first bad item)."""
    samples: List[Sample] = []
    bands: Optional[int] = None
    for it in manifest.items:
        s = load_sample(it, bands)
        bands = s.before.shape[2]
        samples.append(s)
    return samples


def assign_splits(samples: Sequence[Sample], val_fraction: float, seed: int) -> Dict[str, List[int]]:
    """Explicit splits are kept; items without one go to train/val by a seeded shuffle (at least one val item when
    val_fraction > 0 and at least two unassigned items; at least one training item when none is assigned
    explicitly)."""
    out: Dict[str, List[int]] = {s: [] for s in SPLITS}
    free: List[int] = []
    for i, s in enumerate(samples):
        if s.item.split:
            out[s.item.split].append(i)
        else:
            free.append(i)
    if free:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B117]))
        order = [free[k] for k in rng.permutation(len(free))]
        n_val = int(round(val_fraction * len(free)))
        if val_fraction > 0 and n_val == 0 and len(free) >= 2:
            n_val = 1
        if not out["train"]:
            n_val = min(n_val, len(free) - 1)  # keep at least one training item
        out["val"] += sorted(order[:n_val])
        out["train"] += sorted(order[n_val:])
    for k in out:
        out[k] = sorted(out[k])
    return out


def band_names(bands: int) -> List[str]:
    if bands == 3:
        return ["red", "green", "blue"]
    if bands == 4:
        return ["red", "green", "blue", "nir"]
    if bands == 1:
        return ["gray"]
    return [f"b{i + 1}" for i in range(bands)]


def compute_normalization(samples: Sequence[Sample]) -> Dict:
    """Per-band mean/std of x / 255 over before and after images pooled."""
    bands = samples[0].before.shape[2]
    s1 = np.zeros(bands)
    s2 = np.zeros(bands)
    n = 0
    for s in samples:
        for img in (s.before, s.after):
            x = img.reshape(-1, bands).astype(np.float64) / SCALE
            s1 += x.sum(0)
            s2 += (x * x).sum(0)
            n += x.shape[0]
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    std = np.maximum(std, 1e-3)
    return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std], "scale": 255}


def normalize(img: np.ndarray, norm: Dict) -> np.ndarray:
    """H x W x C raw -> C x H x W float32 normalised."""
    mean = np.asarray(norm["mean"], np.float32)
    std = np.asarray(norm["std"], np.float32)
    x = img.astype(np.float32) / np.float32(norm.get("scale", SCALE))
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# ----------------------------------------------------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------------------------------------------------
def random_crop(rng: np.random.Generator, s: Sample, size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = s.label.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return (s.before[y:y + size, x:x + size], s.after[y:y + size, x:x + size], s.label[y:y + size, x:x + size])


def geometric(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, lab: np.ndarray):
    """Random flips and 90-degree rotations, the same for before, after and label."""
    k = int(rng.integers(4))
    fh = rng.random() < 0.5
    fv = rng.random() < 0.5
    out = []
    for arr in (a, b, lab):
        arr = np.rot90(arr, k, axes=(0, 1))
        if fh:
            arr = arr[:, ::-1]
        if fv:
            arr = arr[::-1]
        out.append(np.ascontiguousarray(arr))
    return out


def photometric(rng: np.random.Generator, img: np.ndarray, p: float = 0.8) -> np.ndarray:
    """Brightness/contrast/gamma jitter on the 0..1 scale; call separately for before and after."""
    x = img.astype(np.float32) / np.float32(SCALE)
    if rng.random() < p:
        gamma = np.float32(np.exp(rng.uniform(np.log(0.75), np.log(1.33))))
        contrast = np.float32(rng.uniform(0.75, 1.25))
        brightness = np.float32(rng.uniform(-0.08, 0.08))
        x = np.power(np.clip(x, 0, None), gamma)
        m = x.mean(axis=(0, 1), keepdims=True)
        x = (x - m) * contrast + m + brightness
        x = np.clip(x, 0, None)
    return x * np.float32(SCALE)
