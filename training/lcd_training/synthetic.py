"""Seeded generator of synthetic change-detection pairs.

Every pair is a small rendered landscape seen twice ("before" and "after") at a fixed ground sampling distance of
roughly 0.5-1 m per pixel, so a 1024 px scene and a 128 px tile of it have objects of the same size in pixels.

Terrain: agricultural parcels (rotated strip/field layout, per-field colour, plough-line texture, hedges/tracks on
boundaries), grass, forest (fractal-noise outline, crown texture), water (lake or meandering river), roads and small
villages of gable-roofed buildings.

REAL changes (drawn into the label, 255): new buildings, forest clearings, new roads.
NUISANCE changes (never labelled): seasonal colour shift of vegetation (independently for both dates, strength set by
``season_shift``), global illumination (gain/offset/gamma/white balance), misregistration of the before image by a
sub-pixel shift of 0-1 px, sensor noise and quantisation.

Determinism: pair ``i`` of seed ``k`` is drawn from ``numpy.random.default_rng(SeedSequence([k, i]))`` so a pair does
not depend on how many pairs are generated. The random numbers that decide the seasonal shift are drawn the same way
whatever ``season_shift`` is, so the same seed with a larger ``season_shift`` gives the same scenes and changes with a
stronger seasonal shift (useful for drift tests).

CLI::

    python -m lcd_training.synthetic --out DIR --pairs N --size S --seed K [--season-shift X]
        [--nuisance-only-fraction F] [--split train|val|test] [--prefix P] [--append]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

GENERATOR_VERSION = "1"
# The smallest side the change model takes (lcd_training.model.SIZE_MULTIPLE; not imported, to keep torch out of the
# generator): a smaller pair could never be trained or evaluated on.
MIN_SIZE = 16

# land-cover classes of the rendered scene (internal)
FIELD, FOREST, WATER, ROAD, BUILDING, GRASS, CLEARING = 1, 2, 3, 4, 5, 6, 7


# ----------------------------------------------------------------------------------------------------------------------
# noise and geometry helpers
# ----------------------------------------------------------------------------------------------------------------------
def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """One octave of value noise in [0, 1]: random lattice values every ``cell`` px, smooth-step interpolated."""
    cell = max(float(cell), 1.0)
    gh = int(np.ceil(h / cell)) + 2
    gw = int(np.ceil(w / cell)) + 2
    grid = rng.random((gh, gw))
    oy, ox = rng.random(2)
    ys = np.arange(h) / cell + oy
    xs = np.arange(w) / cell + ox
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    fy = _smooth(ys - y0)[:, None]
    fx = _smooth(xs - x0)[None, :]
    rows = grid[y0] * (1.0 - fy) + grid[y0 + 1] * fy  # (h, gw)
    return rows[:, x0] * (1.0 - fx) + rows[:, x0 + 1] * fx


def fractal_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 4,
                  persistence: float = 0.5) -> np.ndarray:
    """Sum of octaves of value noise, normalised to roughly [0, 1] (mean 0.5)."""
    total = np.zeros((h, w))
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise(rng, h, w, max(cell / (2 ** o), 1.0))
        norm += amp
        amp *= persistence
    return total / norm


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return img
    pad = [(r, r), (r, r)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode="edge")
    c = np.cumsum(p, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
    p = (c[2 * r + 1:] - c[:-2 * r - 1]) / (2 * r + 1)
    c = np.cumsum(p, axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    return (c[:, 2 * r + 1:] - c[:, :-2 * r - 1]) / (2 * r + 1)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W[, C]) float image, edges replicated."""
    if sigma <= 0:
        return img
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = [(r, r), (r, r)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode="edge")
    h, w = img.shape[:2]
    out = np.zeros((h + 2 * r,) + img.shape[1:])
    for i, kv in enumerate(k):
        out += kv * p[:, i:i + w]
    res = np.zeros_like(img, dtype=np.float64)
    for i, kv in enumerate(k):
        res += kv * out[i:i + h]
    return res


def subpixel_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Bilinear resampling so that out[y, x] = img[y + dy, x + dx] (edges clamped)."""
    h, w = img.shape[:2]
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    y0 = np.minimum(np.floor(ys).astype(np.int64), h - 2 if h > 1 else 0)
    x0 = np.minimum(np.floor(xs).astype(np.int64), w - 2 if w > 1 else 0)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def polyline_mask(h: int, w: int, pts: np.ndarray, width: float) -> np.ndarray:
    """Pixels within width/2 of a polyline (pts: K x 2 array of (y, x))."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    best = np.full((h, w), np.inf)
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        vy, vx = y1 - y0, x1 - x0
        ll = vy * vy + vx * vx
        if ll < 1e-9:
            continue
        t = np.clip(((yy - y0) * vy + (xx - x0) * vx) / ll, 0.0, 1.0)
        d = (yy - (y0 + t * vy)) ** 2 + (xx - (x0 + t * vx)) ** 2
        np.minimum(best, d, out=best)
    return best <= (width / 2.0) ** 2


def random_path(rng: np.random.Generator, h: int, w: int, wiggle: float = 0.08) -> np.ndarray:
    """A gently bending path that crosses the image from one side to another (points may lie outside)."""
    side_a = rng.integers(4)
    side_b = (side_a + rng.integers(1, 4)) % 4

    def edge_point(side: int) -> Tuple[float, float]:
        t = rng.uniform(0.1, 0.9)
        if side == 0:
            return (-4.0, t * w)
        if side == 1:
            return (t * h, w + 3.0)
        if side == 2:
            return (h + 3.0, t * w)
        return (t * h, -4.0)

    p0 = np.array(edge_point(int(side_a)))
    p1 = np.array(edge_point(int(side_b)))
    n = 6
    pts = np.stack([p0 + (p1 - p0) * t for t in np.linspace(0, 1, n)])
    d = p1 - p0
    normal = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    amp = wiggle * max(h, w)
    offs = np.cumsum(rng.normal(0, amp / 2.5, n))
    offs -= np.linspace(offs[0], offs[-1], n)  # endpoints stay on the edges
    return pts + offs[:, None] * normal[None, :]


def rotated_rect(h: int, w: int, cy: float, cx: float, half_len: float, half_wid: float, angle: float
                 ) -> Tuple[Tuple[slice, slice], np.ndarray, np.ndarray]:
    """Mask of a rotated rectangle inside its bounding window plus the across-axis coordinate (for roof shading)."""
    r = int(np.ceil(np.hypot(half_len, half_wid))) + 1
    y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
    x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
    if y0 >= y1 or x0 >= x1:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool), np.zeros((0, 0))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    ca, sa = np.cos(angle), np.sin(angle)
    along = (xx - cx) * ca + (yy - cy) * sa
    across = -(xx - cx) * sa + (yy - cy) * ca
    mask = (np.abs(along) <= half_len) & (np.abs(across) <= half_wid)
    return (slice(y0, y1), slice(x0, x1)), mask, across / max(half_wid, 1e-6)


def blob_mask(rng: np.random.Generator, h: int, w: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """Irregular blob: a disc whose edge is perturbed by fractal noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.hypot(yy - cy, xx - cx) / max(radius, 1.0)
    n = fractal_noise(rng, h, w, max(radius * 0.8, 3.0), octaves=3)
    return d + 0.9 * (n - 0.5) < 1.0


# ----------------------------------------------------------------------------------------------------------------------
# scene
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    rgb: np.ndarray            # H x W x 3 float in [0, 1]
    cls: np.ndarray            # H x W int8 land-cover class
    veg: np.ndarray            # H x W float: how strongly a pixel responds to the seasonal shift (0..1)
    meta: Dict = field(default_factory=dict)

    def copy(self) -> "Scene":
        return Scene(self.rgb.copy(), self.cls.copy(), self.veg.copy(), dict(self.meta))


ROOF_COLOURS = np.array([
    [0.62, 0.27, 0.20],  # red tiles
    [0.70, 0.36, 0.25],  # terracotta
    [0.55, 0.56, 0.58],  # grey metal
    [0.82, 0.82, 0.80],  # white/light concrete
    [0.35, 0.33, 0.34],  # dark slate
    [0.40, 0.50, 0.60],  # blue metal
])

FIELD_TYPES = [
    # name, base colour, colour jitter, stripe amplitude range, seasonal response range
    ("green_crop", (0.30, 0.45, 0.18), 0.06, (0.02, 0.06), (0.6, 1.0)),
    ("ripe_crop", (0.66, 0.60, 0.36), 0.06, (0.02, 0.05), (0.3, 0.8)),
    ("bare_soil", (0.50, 0.40, 0.30), 0.06, (0.03, 0.08), (0.0, 0.2)),
    ("meadow", (0.38, 0.50, 0.25), 0.05, (0.00, 0.02), (0.7, 1.0)),
]


def _make_fields(rng: np.random.Generator, h: int, w: int, rgb: np.ndarray, cls: np.ndarray, veg: np.ndarray) -> None:
    """Agricultural parcels: strips of random width in a rotated frame, each cut into fields of random length."""
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    umin, umax = u.min() - 1, u.max() + 1
    vmin, vmax = v.min() - 1, v.max() + 1
    bounds = [umin - rng.uniform(0, 80)]
    while bounds[-1] < umax:
        bounds.append(bounds[-1] + rng.uniform(28, 110))
    bounds = np.array(bounds)
    strip = np.clip(np.searchsorted(bounds, u, side="right") - 1, 0, len(bounds) - 2)
    du = np.minimum(u - bounds[strip], bounds[strip + 1] - u)
    fid = np.zeros((h, w), np.int64)
    dv = np.full((h, w), np.inf)
    n_fields = 0
    for s in range(len(bounds) - 1):
        vb = [vmin - rng.uniform(0, 150)]
        while vb[-1] < vmax:
            vb.append(vb[-1] + rng.uniform(30, 160))
        vb = np.array(vb)
        m = strip == s
        if m.any():
            vs = v[m]
            fi = np.clip(np.searchsorted(vb, vs, side="right") - 1, 0, len(vb) - 2)
            dv[m] = np.minimum(vs - vb[fi], vb[fi + 1] - vs)
            fid[m] = n_fields + fi
        n_fields += len(vb) - 1
    # per-field parameters as lookup tables
    types = rng.integers(len(FIELD_TYPES), size=n_fields)
    colour = np.zeros((n_fields, 3))
    amp = np.zeros(n_fields)
    resp = np.zeros(n_fields)
    for i, t in enumerate(types):
        _, base, jit, (sa0, sa1), (r0, r1) = FIELD_TYPES[int(t)]
        colour[i] = np.clip(np.array(base) + rng.normal(0, jit, 3), 0.05, 0.95)
        amp[i] = rng.uniform(sa0, sa1)
        resp[i] = rng.uniform(r0, r1)
    period = rng.uniform(2.5, 7.0, n_fields)
    phase = rng.uniform(0, 2 * np.pi, n_fields)
    along_u = rng.random(n_fields) < 0.5
    noise_fine = fractal_noise(rng, h, w, 6.0, octaves=3) - 0.5
    noise_mid = fractal_noise(rng, h, w, 40.0, octaves=2) - 0.5
    coord = np.where(along_u[fid], u, v)
    tex = amp[fid] * np.sin(2 * np.pi * coord / period[fid] + phase[fid]) + 0.05 * noise_fine + 0.06 * noise_mid
    rgb[:] = np.clip(colour[fid] * (1.0 + tex[..., None]), 0, 1)
    meadow = np.array([FIELD_TYPES[int(t)][0] == "meadow" for t in types])
    cls[:] = np.where(meadow[fid], GRASS, FIELD)
    veg[:] = resp[fid]
    track_colour = np.array([0.47, 0.44, 0.34]) if rng.random() < 0.5 else np.array([0.24, 0.34, 0.16])
    edge = np.minimum(du, dv) < rng.uniform(0.8, 1.6)
    rgb[edge] = np.clip(track_colour[None, :] * (1 + 0.1 * noise_fine[edge, None]), 0, 1)
    veg[edge] = 0.5
    cls[edge] = GRASS


def _forest_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    crowns = fractal_noise(rng, h, w, 5.0, octaves=3)
    tint = fractal_noise(rng, h, w, 60.0, octaves=2) - 0.5
    base = np.array([0.14, 0.26, 0.11]) + rng.normal(0, 0.02, 3)
    shade = 0.55 + 0.9 * crowns + 0.3 * tint
    img = base[None, None, :] * shade[..., None]
    img[..., 0] += 0.03 * tint
    return np.clip(img, 0, 1)


def render_scene(rng: np.random.Generator, h: int, w: int) -> Scene:
    rgb = np.zeros((h, w, 3))
    cls = np.zeros((h, w), np.int8)
    veg = np.zeros((h, w))
    _make_fields(rng, h, w, rgb, cls, veg)
    meta: Dict = {}

    # forest
    forest_frac = rng.uniform(0.0, 0.5) if rng.random() < 0.85 else 0.0
    fnoise = fractal_noise(rng, h, w, rng.uniform(70, 220), octaves=4)
    if forest_frac > 0.01:
        thr = np.quantile(fnoise, 1 - forest_frac)
        fm = fnoise > thr
        tex = _forest_texture(rng, h, w)
        rgb[fm] = tex[fm]
        cls[fm] = FOREST
        veg[fm] = 1.0
    meta["forestFraction"] = float((cls == FOREST).mean())

    # water
    wr = rng.random()
    water = np.zeros((h, w), bool)
    if wr < 0.3:
        wn = fractal_noise(rng, h, w, rng.uniform(80, 240), octaves=3)
        water = wn > np.quantile(wn, 1 - rng.uniform(0.03, 0.2))
    elif wr < 0.55:
        water = polyline_mask(h, w, random_path(rng, h, w, wiggle=0.12), rng.uniform(8, 26))
    if water.any():
        shore = _box_blur(water.astype(np.float64), 2) > 0.02
        sand = shore & ~water
        rgb[sand] = np.array([0.58, 0.55, 0.45]) * (1 + 0.05 * rng.standard_normal((int(sand.sum()), 1)))
        cls[sand] = GRASS
        veg[sand] = 0.2
        wcol = np.array([0.09, 0.16, 0.21]) + rng.normal(0, 0.015, 3)
        ripple = fractal_noise(rng, h, w, 30.0, octaves=2) - 0.5
        rgb[water] = np.clip(wcol[None, :] * (1 + 0.25 * ripple[water, None]), 0, 1)
        cls[water] = WATER
        veg[water] = 0.0
    meta["waterFraction"] = float(water.mean())

    # existing roads
    for _ in range(int(rng.integers(0, 3))):
        _draw_road(rng, h, w, rgb, cls, veg, allow_water=False)

    # existing villages: one chance per 256 x 256 px of area (at least one)
    for _ in range(max(1, (h * w) // (256 * 256))):
        if rng.random() < 0.55:
            n = int(rng.integers(2, 12))
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            _draw_buildings(rng, h, w, rgb, cls, veg, n, cy, cx, spread=rng.uniform(15, 60))
    return Scene(rgb, cls, veg, meta)


def _draw_road(rng: np.random.Generator, h: int, w: int, rgb: np.ndarray, cls: np.ndarray, veg: np.ndarray,
               allow_water: bool) -> np.ndarray:
    width = rng.uniform(3.0, 7.0)
    m = polyline_mask(h, w, random_path(rng, h, w, wiggle=0.06), width)
    if not allow_water:
        m &= cls != WATER
    asphalt = rng.random() < 0.6
    colour = np.array([0.42, 0.42, 0.43]) if asphalt else np.array([0.60, 0.53, 0.42])
    colour = colour + rng.normal(0, 0.02, 3)
    n = int(m.sum())
    if n:
        rgb[m] = np.clip(colour[None, :] * (1 + 0.04 * rng.standard_normal((n, 1))), 0, 1)
        cls[m] = ROAD
        veg[m] = 0.0
    return m


def _draw_buildings(rng: np.random.Generator, h: int, w: int, rgb: np.ndarray, cls: np.ndarray, veg: np.ndarray,
                    n: int, cy: float, cx: float, spread: float, avoid: Optional[np.ndarray] = None) -> np.ndarray:
    """Draw up to ``n`` gable-roofed buildings around (cy, cx); returns the union of the drawn footprints."""
    drawn = np.zeros((h, w), bool)
    angle0 = rng.uniform(0, np.pi)
    for _ in range(n * 4):
        if n <= 0:
            break
        by = cy + rng.normal(0, spread)
        bx = cx + rng.normal(0, spread)
        half_len = rng.uniform(3.5, 10.0)
        half_wid = rng.uniform(2.5, min(half_len, 6.5))
        angle = angle0 + (np.pi / 2 if rng.random() < 0.3 else 0.0) + rng.normal(0, 0.05)
        win, m, across = rotated_rect(h, w, by, bx, half_len, half_wid, angle)
        if m.sum() < 12:
            continue
        c = cls[win]
        blocked = (c == WATER) | (c == BUILDING)
        if avoid is not None:
            blocked |= avoid[win]
        halo_win, halo, _ = rotated_rect(h, w, by, bx, half_len + 2, half_wid + 2, angle)
        if (drawn[halo_win] & halo).any() or (blocked & m).any():
            continue
        roof = ROOF_COLOURS[int(rng.integers(len(ROOF_COLOURS)))] + rng.normal(0, 0.03, 3)
        light = rng.uniform(0.12, 0.25)
        shade = np.where(across > 0, 1.0 + light, 1.0 - light)
        edge = np.abs(across) > 0.85
        shade = np.where(edge, shade * 0.8, shade)
        sub = rgb[win]
        sub[m] = np.clip(roof[None, :] * shade[m][:, None], 0, 1)
        cls[win][m] = BUILDING
        veg[win][m] = 0.0
        drawn[win] |= m
        n -= 1
    return drawn


# ----------------------------------------------------------------------------------------------------------------------
# real changes
# ----------------------------------------------------------------------------------------------------------------------
def apply_real_changes(rng: np.random.Generator, scene: Scene) -> Tuple[Scene, np.ndarray, List[Dict]]:
    """Return the changed scene, the change mask (bool) and a list describing the changes."""
    h, w = scene.cls.shape
    after = scene.copy()
    label = np.zeros((h, w), bool)
    changes: List[Dict] = []
    # one round of change events per ~160 x 160 px of area (at least one), so larger scenes get more changes;
    # extra rounds (up to 6) until at least one change could be drawn
    rounds = max(1, int(round(h * w / (160.0 * 160.0))))
    for attempt in range(rounds + 5):
        kinds = []
        if rng.random() < 0.65 or attempt > rounds + 1:
            kinds.append("buildings")
        if rng.random() < 0.55:
            kinds.append("clearing")
        if rng.random() < 0.4:
            kinds.append("road")
        for kind in kinds:
            if kind == "buildings":
                n = int(rng.integers(1, 9))
                free = np.argwhere((after.cls != WATER) & (after.cls != BUILDING) & (after.cls != FOREST))
                if len(free) == 0:
                    free = np.argwhere(after.cls != WATER)
                if len(free) == 0:
                    continue
                cy, cx = free[int(rng.integers(len(free)))]
                m = _draw_buildings(rng, h, w, after.rgb, after.cls, after.veg, n, float(cy), float(cx),
                                    spread=rng.uniform(6, 30), avoid=label)
            elif kind == "clearing":
                forest = np.argwhere(after.cls == FOREST)
                if len(forest) < 50:
                    continue
                cy, cx = forest[int(rng.integers(len(forest)))]
                m = blob_mask(rng, h, w, float(cy), float(cx), rng.uniform(8, 40)) & (after.cls == FOREST)
                if m.sum() < 30:
                    continue
                soil = np.array([0.52, 0.42, 0.30]) if rng.random() < 0.6 else np.array([0.45, 0.48, 0.28])
                soil = soil + rng.normal(0, 0.03, 3)
                tex = fractal_noise(rng, h, w, 4.0, octaves=3) - 0.5
                stumps = rng.random((h, w)) < 0.04
                img = soil[None, None, :] * (1 + 0.25 * tex[..., None])
                img[stumps] *= 0.6
                after.rgb[m] = np.clip(img[m], 0, 1)
                after.cls[m] = CLEARING
                after.veg[m] = 0.15
            else:
                m = _draw_road(rng, h, w, after.rgb, after.cls, after.veg, allow_water=False)
                m &= scene.cls != ROAD
            m &= ~label
            if m.sum() >= 12:
                label |= m
                changes.append({"kind": kind, "pixels": int(m.sum())})
        if attempt + 1 >= rounds and label.any():
            break
    return after, label, changes


# ----------------------------------------------------------------------------------------------------------------------
# nuisance changes
# ----------------------------------------------------------------------------------------------------------------------
def season_transform(rgb: np.ndarray, veg: np.ndarray, amount: float) -> np.ndarray:
    """Seasonal colour shift of vegetation. amount > 0: drier/autumn (yellow-brown), < 0: lusher/greener spring."""
    if amount == 0:
        return rgb
    if amount > 0:
        target = np.stack([rgb[..., 0] * 1.55 + 0.06, rgb[..., 1] * 1.12 + 0.03, rgb[..., 2] * 0.75], -1)
    else:
        target = np.stack([rgb[..., 0] * 0.70, rgb[..., 1] * 1.25 + 0.02, rgb[..., 2] * 0.85], -1)
    k = np.clip(abs(amount), 0, 3) * veg[..., None]
    return np.clip(rgb + k * (target - rgb), 0, 1)


def illumination(rgb: np.ndarray, gain: float, offset: float, gamma: float, wb: np.ndarray) -> np.ndarray:
    return np.clip(gain * np.power(np.clip(rgb, 0, 1), gamma) * wb[None, None, :] + offset, 0, 1)


@dataclass
class Pair:
    before: np.ndarray   # H x W x 3 uint8
    after: np.ndarray    # H x W x 3 uint8
    label: np.ndarray    # H x W uint8 {0, 255}
    meta: Dict


def generate_pair(seed: int, index: int, size: int, season_shift: float = 0.5, nuisance_only: Optional[bool] = None,
                  nuisance_only_fraction: float = 0.2, height: Optional[int] = None) -> Pair:
    """Generate pair ``index`` of ``seed``. ``nuisance_only`` forces (True) or forbids (False) real changes;
    None decides at random with probability ``nuisance_only_fraction``."""
    h, w = int(height or size), int(size)
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px a side (the change model's minimum), got {w}x{h}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    # nuisance parameters are drawn first, independent of the scene, so season_shift only rescales them
    draw_only = rng.random()
    is_nuisance_only = (draw_only < nuisance_only_fraction) if nuisance_only is None else bool(nuisance_only)
    season_u = rng.uniform(-1.0, 1.0, 2)
    illum = [(rng.uniform(0.82, 1.18), rng.uniform(-0.04, 0.04), rng.uniform(0.8, 1.25),
              1.0 + rng.normal(0, 0.03, 3)) for _ in range(2)]
    shift_r, shift_a = rng.uniform(0.0, 1.0), rng.uniform(0, 2 * np.pi)
    dy, dx = shift_r * np.sin(shift_a), shift_r * np.cos(shift_a)
    noise_sigma = rng.uniform(0.5, 3.0, 2) / 255.0
    psf = rng.uniform(0.35, 0.7)
    scene_rng = np.random.default_rng(rng.integers(0, 2 ** 63))
    noise_rng = np.random.default_rng(rng.integers(0, 2 ** 63))

    before = render_scene(scene_rng, h, w)
    if is_nuisance_only:
        after, label, changes = before.copy(), np.zeros((h, w), bool), []
    else:
        after, label, changes = apply_real_changes(scene_rng, before)

    s_before, s_after = float(season_shift * season_u[0]), float(season_shift * season_u[1])
    imgs = []
    for sc, s, (g, o, gm, wb), sig, is_before in ((before, s_before, illum[0], noise_sigma[0], True),
                                                  (after, s_after, illum[1], noise_sigma[1], False)):
        img = season_transform(sc.rgb, sc.veg, s)
        img = gaussian_blur(img, psf)
        if is_before:
            img = subpixel_shift(img, dy, dx)
        img = illumination(img, g, o, gm, wb)
        img = img + noise_rng.normal(0, sig, img.shape)
        imgs.append(np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8))
    meta = {
        "nuisanceOnly": bool(is_nuisance_only),
        "changedFraction": float(label.mean()),
        "changes": changes,
        "nuisance": {
            "seasonBefore": round(s_before, 4), "seasonAfter": round(s_after, 4),
            "gain": [round(float(illum[0][0]), 4), round(float(illum[1][0]), 4)],
            "gamma": [round(float(illum[0][2]), 4), round(float(illum[1][2]), 4)],
            "misregistrationPx": [round(float(dy), 3), round(float(dx), 3)],
            "noiseSigma": [round(float(noise_sigma[0] * 255), 3), round(float(noise_sigma[1] * 255), 3)],
        },
        "scene": before.meta,
    }
    return Pair(imgs[0], imgs[1], (label.astype(np.uint8) * 255), meta)


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------
def _save_png(path: str, arr: np.ndarray) -> None:
    from PIL import Image
    Image.fromarray(arr).save(path, format="PNG", compress_level=3)


def write_dataset(out: str, pairs: int, size: int, seed: int, season_shift: float = 0.5,
                  nuisance_only_fraction: float = 0.2, split: Optional[str] = None, prefix: str = "",
                  append: bool = False, progress=None) -> Dict:
    for sub in ("A", "B", "label"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    existing: Dict = {}
    if append and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            existing = json.load(f)
    params = {"generator": "lcd_training.synthetic", "version": GENERATOR_VERSION, "pairs": pairs, "size": size,
              "seed": seed, "seasonShift": season_shift, "nuisanceOnlyFraction": nuisance_only_fraction,
              "split": split, "prefix": prefix}
    items = list(existing.get("items", []))
    digest = hashlib.sha256()
    for prev in existing.get("generators", []):
        digest.update(json.dumps(prev, sort_keys=True).encode())
    digest.update(json.dumps(params, sort_keys=True).encode())
    for i in range(pairs):
        p = generate_pair(seed, i, size, season_shift=season_shift, nuisance_only_fraction=nuisance_only_fraction)
        name = f"{prefix}{i:05d}.png"
        _save_png(os.path.join(out, "A", name), p.before)
        _save_png(os.path.join(out, "B", name), p.after)
        _save_png(os.path.join(out, "label", name), p.label)
        item = {"before": f"A/{name}", "after": f"B/{name}", "label": f"label/{name}"}
        if split:
            item["split"] = split
        item["meta"] = p.meta
        items.append(item)
        digest.update(p.before.tobytes())
        digest.update(p.after.tobytes())
        digest.update(p.label.tobytes())
        if progress:
            progress(i + 1, pairs)
    manifest = {
        "datasetVersion": "synthetic-v" + GENERATOR_VERSION + "-" + digest.hexdigest()[:16],
        "generators": list(existing.get("generators", [])) + [params],
        "items": items,
    }
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, manifest_path)
    return manifest


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lcd_training.synthetic",
                                 description="Generate synthetic change-detection pairs "
                                             "(A/, B/, label/, manifest.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pairs", type=int, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--season-shift", type=float, default=0.5,
                    help="strength of the seasonal vegetation colour shift (nuisance); 0 disables, >1 for drift")
    ap.add_argument("--nuisance-only-fraction", type=float, default=0.2,
                    help="fraction of pairs with nuisance changes only (empty label)")
    ap.add_argument("--split", choices=["train", "val", "test"], default=None,
                    help="write this split on every item (default: no split field)")
    ap.add_argument("--prefix", default="", help="file name prefix (use with --append)")
    ap.add_argument("--append", action="store_true", help="append to an existing manifest.json in --out")
    a = ap.parse_args(argv)
    if a.size < MIN_SIZE:
        print(json.dumps({"event": "error", "field": "size",
                          "message": f"--size {a.size} is below {MIN_SIZE} px, the smallest side the change model "
                                     f"takes (its size multiple): pairs that small could not be trained on"}))
        return 2
    if a.pairs < 1 or not (0 <= a.nuisance_only_fraction <= 1) or a.season_shift < 0:
        print(json.dumps({"event": "error", "message": "invalid arguments: need pairs>=1, "
                                                       "0<=nuisance-only-fraction<=1, season-shift>=0"}))
        return 2
    if a.prefix and any(c in a.prefix for c in "/\\"):
        print(json.dumps({"event": "error", "message": "prefix must not contain path separators"}))
        return 2
    m = write_dataset(a.out, a.pairs, a.size, a.seed, a.season_shift, a.nuisance_only_fraction, a.split, a.prefix,
                      a.append)
    print(json.dumps({"event": "done", "manifest": os.path.join(a.out, "manifest.json"),
                      "datasetVersion": m["datasetVersion"], "items": len(m["items"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
