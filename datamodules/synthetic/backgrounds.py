"""Procedural backgrounds for synthetic crops, deterministic from a numpy generator.

No real photographs: none of the suite's runtime dependencies ships any (and downloading a photo set
would make ``make data`` depend on the network and on its licence), so the backgrounds are generated:

- ``noise``: value noise at several octaves (bicubic upsampling of random grids), mapped through a
  palette of 2-3 related colours (foliage, rock, sand, concrete...);
- ``gradient``: a linear two-colour gradient at any angle, with faint noise;
- ``pattern``: wallpaper / tiles: soft stripes or checks at an angle, low contrast, with light falloff;
- ``room``: a wall and a floor meeting at a horizon, the floor in perspective (planks or tiles), a
  baseboard, maybe a door or a window on the wall;
- ``outdoor``: sky above the horizon, a band of trees/buildings, noisy ground (grass, earth, pavement);
- ``blobs``: a base colour with large blurred colour blobs (out-of-focus scenery).

Every function returns a (3, H, W) float32 tensor in [0, 1].
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

KINDS: tuple[str, ...] = ("room", "outdoor", "noise", "gradient", "pattern", "blobs")


def _colour(rng: np.random.Generator, sat: tuple[float, float] = (0.1, 0.6),
            val: tuple[float, float] = (0.25, 0.9), hue: float | None = None) -> Tensor:
    h = rng.random() if hue is None else hue % 1.0
    return torch.tensor(colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val)), dtype=torch.float32)


def value_noise(rng: np.random.Generator, size: tuple[int, int], cells: int, octaves: int,
                persistence: float = 0.5) -> Tensor:
    """(H, W) fractal value noise normalised to [0, 1]; the coarsest grid has ``cells`` cells."""
    h, w = size
    total = torch.zeros(1, 1, h, w)
    amp = 1.0
    for octave in range(octaves):
        n = cells * 2 ** octave
        grid = torch.from_numpy(rng.random((1, 1, n + 1, n + 1))).float()
        total += amp * F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True)
        amp *= persistence
    total = total[0, 0]
    return (total - total.min()) / (total.max() - total.min() + 1e-6)


def palette_map(t: Tensor, colours: list[Tensor]) -> Tensor:
    """(H, W) values in [0, 1] -> (3, H, W) piecewise-linear colours through ``colours``."""
    k = len(colours) - 1
    pos = (t.clamp(0, 1) * k).clamp(max=k - 1e-6)
    i = pos.floor().long()
    f = (pos - i)[None]
    stack = torch.stack(colours)  # (K, 3)
    return (stack[i].permute(2, 0, 1) * (1 - f) + stack[i + 1].permute(2, 0, 1) * f)


def _grid(size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    return xs, ys


def noise_background(rng: np.random.Generator, size: tuple[int, int]) -> Tensor:
    base = rng.random()
    colours = [_colour(rng, hue=base + rng.normal(0, 0.06)) for _ in range(int(rng.integers(2, 4)))]
    return palette_map(value_noise(rng, size, int(rng.integers(2, 5)), 5, rng.uniform(0.45, 0.65)), colours)


def gradient_background(rng: np.random.Generator, size: tuple[int, int]) -> Tensor:
    xs, ys = _grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    t = (xs * math.cos(angle) + ys * math.sin(angle))
    t = (t - t.min()) / (t.max() - t.min())
    a, b = _colour(rng), _colour(rng)
    img = a[:, None, None] * (1 - t) + b[:, None, None] * t
    return img * (0.94 + 0.12 * value_noise(rng, size, 3, 4))[None]


def pattern_background(rng: np.random.Generator, size: tuple[int, int]) -> Tensor:
    xs, ys = _grid(size)
    angle = rng.uniform(-0.3, 0.3) + (math.pi / 2 if rng.random() < 0.5 else 0.0)
    period = rng.uniform(12, 60)
    u = (xs * math.cos(angle) + ys * math.sin(angle)) / period
    v = (-xs * math.sin(angle) + ys * math.cos(angle)) / period
    if rng.random() < 0.5:
        t = 0.5 + 0.5 * torch.tanh(4 * torch.sin(2 * math.pi * u))
    else:
        t = 0.5 + 0.5 * torch.tanh(4 * torch.sin(2 * math.pi * u) * torch.sin(2 * math.pi * v))
    a = _colour(rng)
    b = (a * rng.uniform(0.7, 1.3)).clamp(0, 1) if rng.random() < 0.6 else _colour(rng)
    img = a[:, None, None] * (1 - t) + b[:, None, None] * t
    falloff = 1.0 - 0.25 * ((xs - rng.uniform(0, size[1])) ** 2 + (ys - rng.uniform(0, size[0])) ** 2) / (size[0] ** 2)
    return img * falloff.clamp(0.6, 1.0)[None]


def room_background(rng: np.random.Generator, size: tuple[int, int], horizon: float) -> Tensor:
    h, w = size
    xs, ys = _grid(size)
    wall = _colour(rng, sat=(0.03, 0.35), val=(0.55, 0.95))
    floor_a = _colour(rng, sat=(0.1, 0.5), val=(0.2, 0.7), hue=rng.uniform(0.05, 0.12) if rng.random() < 0.6 else None)
    floor_b = (floor_a * rng.uniform(0.75, 0.95)).clamp(0, 1)
    img = wall[:, None, None] * (0.9 + 0.1 * value_noise(rng, size, 2, 3))[None].expand(3, h, w).clone()
    if rng.random() < 0.5:  # a door or a window
        x0, x1 = sorted(rng.uniform(0, w, 2))
        y0 = rng.uniform(0, horizon * 0.6)
        y1 = horizon if rng.random() < 0.5 else rng.uniform(y0, horizon)
        inside = (xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)
        img = torch.where(inside[None], (_colour(rng) * 0.8)[:, None, None], img)
    # Floor in perspective: depth ~ 1 / (y - horizon); planks or tiles in world units.
    below = ys > horizon
    depth = rng.uniform(40, 120) / (ys - horizon).clamp(min=1.0)
    wx = (xs - w / 2 - rng.uniform(-w, w)) * depth / 60.0
    wz = depth * 3.0 + rng.uniform(0, 10)
    if rng.random() < 0.5:
        t = 0.5 + 0.5 * torch.tanh(4 * torch.sin(2 * math.pi * wx / 0.6) * torch.sin(2 * math.pi * wz / 0.6))
    else:
        t = 0.5 + 0.5 * torch.tanh(6 * torch.sin(2 * math.pi * wx / 0.2))
    t = 0.5 + (t - 0.5) * torch.exp(-depth / 4.0)  # far tiles blend to their mean: no moire at the horizon
    fog = (1.0 - torch.exp(-depth / 3.0))[None]
    floor = floor_a[:, None, None] * (1 - t) + floor_b[:, None, None] * t
    floor = floor * (1 - 0.3 * fog) + wall[:, None, None] * 0.3 * fog
    img = torch.where(below[None], floor, img)
    base = (ys > horizon - rng.uniform(3, 10)) & ~below
    img = torch.where(base[None], (wall * 0.6)[:, None, None], img)
    return img * (0.85 + 0.15 * (1 - (ys / h)))[None]


def outdoor_background(rng: np.random.Generator, size: tuple[int, int], horizon: float) -> Tensor:
    h, w = size
    xs, ys = _grid(size)
    sky_top = _colour(rng, sat=(0.3, 0.7), val=(0.6, 0.95), hue=rng.uniform(0.55, 0.62))
    sky_low = (sky_top * 0.4 + 0.6 * torch.tensor([0.95, 0.95, 0.92]))
    t = (ys / max(horizon, 1.0)).clamp(0, 1)[None]
    img = sky_top[:, None, None] * (1 - t) + sky_low[:, None, None] * t
    ridge = value_noise(rng, (1, w), int(rng.integers(3, 9)), 3)[0]  # (W,) heights of trees / buildings
    top = horizon - (0.05 + 0.35 * rng.random()) * h * ridge
    band = (ys > top[None, :]) & (ys <= horizon)
    trees = palette_map(value_noise(rng, size, 8, 3), [_colour(rng, (0.2, 0.6), (0.1, 0.35), rng.uniform(0.2, 0.4)),
                                                       _colour(rng, (0.1, 0.5), (0.25, 0.55))])
    img = torch.where(band[None], trees, img)
    ground_hue = rng.choice([0.25, 0.08, 0.1]) + rng.normal(0, 0.03)
    ground = palette_map(value_noise(rng, size, int(rng.integers(4, 9)), 5),
                         [_colour(rng, (0.1, 0.6), (0.2, 0.5), ground_hue), _colour(rng, (0.1, 0.6), (0.4, 0.8), ground_hue)])
    return torch.where((ys > horizon)[None], ground, img)


def blobs_background(rng: np.random.Generator, size: tuple[int, int]) -> Tensor:
    h, w = size
    xs, ys = _grid(size)
    img = _colour(rng)[:, None, None].expand(3, h, w).clone()
    for _ in range(int(rng.integers(5, 14))):
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        r = rng.uniform(0.08, 0.4) * w
        a = rng.uniform(0.3, 0.9) * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))
        img = img * (1 - a[None]) + _colour(rng, val=(0.3, 1.0))[:, None, None] * a[None]
    return img


def background(rng: np.random.Generator, kind: str, size: tuple[int, int], horizon: float) -> Tensor:
    """A (3, H, W) background of ``kind`` (module docstring); ``horizon`` is the row (px) where floor or
    ground meet the wall or sky (for ``room`` and ``outdoor``)."""
    if kind == "room":
        img = room_background(rng, size, horizon)
    elif kind == "outdoor":
        img = outdoor_background(rng, size, horizon)
    elif kind == "noise":
        img = noise_background(rng, size)
    elif kind == "gradient":
        img = gradient_background(rng, size)
    elif kind == "pattern":
        img = pattern_background(rng, size)
    elif kind == "blobs":
        img = blobs_background(rng, size)
    else:
        raise ValueError(f"unknown background kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return img.clamp(0.0, 1.0).float()
