"""Shared helpers: JSON-lines event output, config validation, seeding, code version, tiled prediction."""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import random
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .model import SIZE_MULTIPLE, SNUNetCBAM, pad_to_multiple

PKG_DIR = os.path.dirname(os.path.abspath(__file__))
TRAINING_DIR = os.path.dirname(PKG_DIR)


# ----------------------------------------------------------------------------------------------------------------------
# JSON-lines output
# ----------------------------------------------------------------------------------------------------------------------
def clean_json(v: Any) -> Any:
    """Make a value strictly JSON-serialisable: non-finite floats become null, numpy scalars become Python."""
    if isinstance(v, dict):
        return {str(k): clean_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean_json(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


class Emitter:
    """Writes one JSON object per line to the real stdout. While active, file descriptor 1 points at stderr, so
    anything else that prints (libraries, C++ warnings) cannot corrupt the protocol."""

    def __init__(self, redirect: bool = True, stream=None) -> None:
        sys.stdout.flush()
        self._redirect = redirect and stream is None
        if stream is not None:
            self._out = stream
        elif redirect:
            self._saved = os.dup(1)
            os.dup2(2, 1)
            self._out = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding="utf-8")
        else:
            self._out = sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        obj = {"event": event}
        obj.update(fields)
        self._out.write(json.dumps(clean_json(obj), allow_nan=False, separators=(",", ":")) + "\n")
        self._out.flush()

    def close(self) -> None:
        try:
            self._out.flush()
        finally:
            if self._redirect:
                sys.stdout.flush()
                os.dup2(self._saved, 1)
                os.close(self._saved)
                self._out.close()
                self._redirect = False


# ----------------------------------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------------------------------
class ConfigError(Exception):
    pass


DEFAULTS: Dict[str, Any] = {
    "epochs": 20,
    "baseWidth": 16,
    "batchSize": 8,
    "learningRate": 1e-3,
    "seed": 42,
    "tileSize": 256,
    "threshold": 0.5,
    "valFraction": 0.1,
    "weightDecay": 1e-4,
    "schedule": "cosine",
    "warmupFraction": 0.05,
    "augment": True,
    "bceWeight": 1.0,
    "diceWeight": 1.0,
    "samplesPerEpoch": None,
    "logEvery": 10,
    "numThreads": None,
    "device": "auto",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(float(v))


def validate_config(raw: Any) -> Dict[str, Any]:
    """Fill defaults and validate; raises ConfigError naming the first bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(DEFAULTS))})")
    cfg = dict(DEFAULTS)
    cfg.update(raw)

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"config.{key} must be {what} (got {json.dumps(cfg[key])})")

    v = cfg
    need("epochs", _is_int(v["epochs"]) and 1 <= v["epochs"] <= 100000, "an integer between 1 and 100000")
    need("baseWidth", _is_int(v["baseWidth"]) and 4 <= v["baseWidth"] <= 128 and v["baseWidth"] % 4 == 0,
         "a multiple of 4 between 4 and 128 (paper default 32)")
    need("batchSize", _is_int(v["batchSize"]) and 1 <= v["batchSize"] <= 4096, "an integer between 1 and 4096")
    need("learningRate", _is_num(v["learningRate"]) and 0 < v["learningRate"] <= 10, "a number in (0, 10]")
    need("seed", _is_int(v["seed"]) and 0 <= v["seed"] < 2 ** 32, "an integer in [0, 2^32)")
    need("tileSize", _is_int(v["tileSize"]) and 16 <= v["tileSize"] <= 8192 and v["tileSize"] % SIZE_MULTIPLE == 0,
         f"a multiple of {SIZE_MULTIPLE} between 16 and 8192")
    need("threshold", _is_num(v["threshold"]) and 0 < v["threshold"] < 1, "a number in (0, 1)")
    need("valFraction", _is_num(v["valFraction"]) and 0 <= v["valFraction"] < 1, "a number in [0, 1)")
    need("weightDecay", _is_num(v["weightDecay"]) and 0 <= v["weightDecay"] <= 10, "a number in [0, 10]")
    need("schedule", v["schedule"] in ("cosine", "onecycle", "constant"), "one of cosine, onecycle, constant")
    need("warmupFraction", _is_num(v["warmupFraction"]) and 0 <= v["warmupFraction"] < 1, "a number in [0, 1)")
    need("augment", isinstance(v["augment"], bool), "true or false")
    need("bceWeight", _is_num(v["bceWeight"]) and v["bceWeight"] >= 0, "a number >= 0")
    need("diceWeight", _is_num(v["diceWeight"]) and v["diceWeight"] >= 0, "a number >= 0")
    need("bceWeight", v["bceWeight"] + v["diceWeight"] > 0, "positive when diceWeight is 0")
    need("samplesPerEpoch", v["samplesPerEpoch"] is None or (_is_int(v["samplesPerEpoch"]) and
                                                             v["samplesPerEpoch"] >= 1), "null or an integer >= 1")
    need("logEvery", _is_int(v["logEvery"]) and v["logEvery"] >= 1, "an integer >= 1")
    need("numThreads", v["numThreads"] is None or (_is_int(v["numThreads"]) and 1 <= v["numThreads"] <= 1024),
         "null or an integer between 1 and 1024")
    need("device", v["device"] in ("auto", "cpu", "cuda"), "one of auto, cpu, cuda")
    cfg["learningRate"] = float(cfg["learningRate"])
    cfg["threshold"] = float(cfg["threshold"])
    cfg["valFraction"] = float(cfg["valFraction"])
    cfg["weightDecay"] = float(cfg["weightDecay"])
    cfg["warmupFraction"] = float(cfg["warmupFraction"])
    cfg["bceWeight"] = float(cfg["bceWeight"])
    cfg["diceWeight"] = float(cfg["diceWeight"])
    return cfg


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(cfg: Dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(cfg).encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------------------------------
# seeding / device
# ----------------------------------------------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("config.device is cuda but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int, device: torch.device, num_threads: Optional[int] = None) -> None:
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        # on CPU every op the model uses has a deterministic kernel; on CUDA a few (e.g. max-pool backward) do not,
        # so warn instead of failing there
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    except TypeError:  # very old torch without warn_only
        torch.use_deterministic_algorithms(device.type != "cuda")


def state_dict_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, t in sorted(model.state_dict().items()):
        h.update(k.encode("utf-8"))
        arr = t.detach().cpu().contiguous().numpy()
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version(repo_dir: str = TRAINING_DIR) -> str:
    """LCD_CODE_VERSION if set, else the git commit of the repository (``<commit>-dirty`` when tracked files differ
    from it: the commit alone would not say what ran), else sha256 of the training sources."""
    env = os.environ.get("LCD_CODE_VERSION")
    if env:
        return env
    try:
        r = subprocess.run(["git", "-C", repo_dir, "rev-parse", "--verify", "-q", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        commit = r.stdout.strip()
        if r.returncode == 0 and len(commit) == 40:
            # --no-optional-locks: a read-only look, never a refresh of the index under another git process's feet.
            # Untracked files are left out (as `git describe --dirty` does); a status that fails counts as dirty.
            st = subprocess.run(["git", "--no-optional-locks", "-C", repo_dir, "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True, timeout=30)
            dirty = st.returncode != 0 or st.stdout.strip() != ""
            return commit + "-dirty" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        pass
    h = hashlib.sha256()
    files = sorted(glob.glob(os.path.join(PKG_DIR, "*.py")))
    for p in files:
        h.update(os.path.relpath(p, TRAINING_DIR).encode())
        with open(p, "rb") as f:
            h.update(f.read())
    return "src-sha256:" + h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------------
# tiled prediction
# ----------------------------------------------------------------------------------------------------------------------
def tile_grid(h: int, w: int, tile: int) -> List[Tuple[int, int, int, int]]:
    """(y, x, th, tw) windows covering the image; windows are tile x tile (the last ones aligned to the far edge)."""
    def starts(n: int) -> List[int]:
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, tile))
        s.append(n - tile)
        return s
    return [(y, x, min(tile, h), min(tile, w)) for y in starts(h) for x in starts(w)]


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(0).to(device)


@torch.no_grad()
def predict_tiles(model: SNUNetCBAM, before: np.ndarray, after: np.ndarray, tile: int, device: torch.device
                  ) -> Iterator[Tuple[Tuple[int, int, int, int], np.ndarray, np.ndarray]]:
    """before/after: normalised C x H x W float32. Yields (window, logits th x tw, embedding D) per tile."""
    _, h, w = before.shape
    for (y, x, th, tw) in tile_grid(h, w, tile):
        a = to_tensor(before[:, y:y + th, x:x + tw], device)
        b = to_tensor(after[:, y:y + th, x:x + tw], device)
        a, _ = pad_to_multiple(a)
        b, _ = pad_to_multiple(b)
        logits, emb = model(a, b)
        yield (y, x, th, tw), logits[0, 0, :th, :tw].float().cpu().numpy(), emb[0].float().cpu().numpy()


def predict_image(model: SNUNetCBAM, before: np.ndarray, after: np.ndarray, tile: int, device: torch.device
                  ) -> Tuple[np.ndarray, List[np.ndarray]]:
    _, h, w = before.shape
    out = np.zeros((h, w), np.float32)
    embs = []
    for (y, x, th, tw), lg, emb in predict_tiles(model, before, after, tile, device):
        out[y:y + th, x:x + tw] = lg
        embs.append(emb)
    return out, embs


def logit_threshold(p: float) -> float:
    return float(np.log(p / (1.0 - p)))
