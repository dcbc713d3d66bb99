"""What a synthetic person wears and how they are lit: per-sample appearance parameters (numpy draws).

- Skin: a tone blended between two neighbours of the Monk Skin Tone scale (10 tones, lightest to
  darkest), jittered by +-4 % per channel; every tone is equally likely.
- Hair: black, browns, blond, auburn, grey; bald/shaved (8 %), short (55 %) or long (37 %), with a
  random hairline height and slope.
- Clothing regions (``.texture`` paints them from the mesh's part labels): a top (tank top, T-shirt,
  3/4 or long sleeves), a bottom (trousers, capris, shorts or a skirt-like band, 12 % of the people in
  a one-colour dress), shoes. Colours from a table of common clothing colours (70 %) or any hue
  (30 %); patterns: plain, horizontal or vertical stripes, checks, plaid or melange, with a second colour.
- Light: a directional light from the camera's side of the person (random azimuth/elevation), ambient
  0.3..0.55, a slightly warm or cool tint and an exposure factor; optional blur and sensor noise.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np


def _hex(code: str) -> tuple[float, float, float]:
    return tuple(int(code[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


# Monk Skin Tone scale (Google, 2022), tones 1..10.
SKIN_TONES = np.array([_hex(c) for c in ("f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96",
                                          "a07e56", "825c43", "604134", "3a312a", "292420")])
HAIR_COLOURS = np.array([(0.05, 0.04, 0.035), (0.12, 0.08, 0.05), (0.22, 0.14, 0.08), (0.38, 0.26, 0.15),
                         (0.72, 0.58, 0.36), (0.45, 0.18, 0.08), (0.55, 0.54, 0.52), (0.82, 0.80, 0.76)])
HAIR_WEIGHTS = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.06, 0.04])
CLOTHING_COLOURS = np.array([_hex(c) for c in (
    "1b2a49", "111111", "f2f2f2", "8a8d91", "3c3f44", "3b5b8c", "5d7fb0", "c3b091", "e8dcc2", "556b2f",
    "7a1f2b", "b22222", "1f5f3a", "87ceeb", "e7a1b0", "e3c04a", "d2691e", "5b3a7a", "6b4423", "2f4f4f")])
SHOE_COLOURS = np.array([_hex(c) for c in ("141414", "f0f0f0", "5a3a22", "6e6e6e", "1b2a49", "8b0000")])
SHOE_WEIGHTS = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])
JEANS_COLOURS = np.array([_hex(c) for c in ("2b3f66", "3b5b8c", "1c2333", "5d7fb0", "262626")])

PATTERNS: tuple[str, ...] = ("plain", "hstripes", "vstripes", "checks", "plaid", "melange")
TOP_PATTERN_WEIGHTS = np.array([0.5, 0.18, 0.07, 0.1, 0.07, 0.08])
BOTTOM_PATTERN_WEIGHTS = np.array([0.82, 0.03, 0.03, 0.04, 0.03, 0.05])
HAIR_STYLES: tuple[str, ...] = ("bald", "short", "long")
HAIR_STYLE_WEIGHTS = np.array([0.08, 0.55, 0.37])
# (arm coordinate of the sleeve hem, 0 = shoulder joint .. 1 = wrist): tank top, T-shirt, 3/4, long.
SLEEVES: tuple[tuple[float, float], ...] = ((-1.0, -1.0), (0.22, 0.42), (0.6, 0.8), (0.9, 0.97))
SLEEVE_WEIGHTS = np.array([0.12, 0.45, 0.08, 0.35])
# (leg coordinate of the hem, 0 = hip joint .. 1 = ankle): trousers, capris, shorts, skirt-like.
BOTTOMS: tuple[tuple[float, float], ...] = ((0.93, 1.05), (0.62, 0.8), (0.3, 0.45), (0.3, 0.45))
BOTTOM_WEIGHTS = np.array([0.6, 0.08, 0.2, 0.12])
DRESS_PROB: float = 0.12


@dataclass
class Garment:
    """Two colours (3,) each in [0, 1], a pattern name, its period (m), phase and direction angle (rad)."""

    colour_a: np.ndarray
    colour_b: np.ndarray
    pattern: str
    period: float
    phase: float
    angle: float


@dataclass
class Appearance:
    """One person's look and light. Lengths in the body coordinates of ``.texture`` (module docstring)."""

    skin: np.ndarray
    hair: np.ndarray
    hair_style: str
    hairline: float        # hair where height above the head joint > hairline + slope * forwardness (m)
    hair_slope: float
    nape: float            # ... and > nape (m, < 0: below the head joint)
    long_hair_low: float   # long hair reaches down to this height above the pelvis (m)
    top: Garment
    sleeve: float          # arm coordinate of the sleeve hem; < 0: no sleeves (a tank top)
    strap: float           # tank tops leave the skin bare where the arm coordinate < strap
    waist: float           # torso height (0 pelvis .. 1 neck) where the top ends
    neckline: float        # torso height of the top's neckline
    bottom: Garment
    hem: float             # leg coordinate of the bottom's hem
    shoes: np.ndarray
    shoe_top: float        # leg coordinate where the shoes begin
    light_dir: np.ndarray  # (3,) camera frame, from the surface towards the light
    ambient: float
    light_colour: np.ndarray
    blur_sigma: float      # px, 0 = none
    noise_sigma: float     # in [0, 1] units, 0 = none


def _choice(rng: np.random.Generator, weights: np.ndarray) -> int:
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def skin_tone(rng: np.random.Generator) -> np.ndarray:
    """(3,) skin colour: a blend of two neighbouring Monk tones, jittered."""
    i = int(rng.integers(len(SKIN_TONES) - 1))
    t = rng.random()
    tone = (1 - t) * SKIN_TONES[i] + t * SKIN_TONES[i + 1]
    return np.clip(tone * rng.uniform(0.96, 1.04, 3), 0.0, 1.0)


def clothing_colour(rng: np.random.Generator, table: np.ndarray = CLOTHING_COLOURS) -> np.ndarray:
    """(3,) a clothing colour: from ``table`` (70 %) or any hue with moderate saturation (30 %)."""
    if rng.random() < 0.7:
        base = table[int(rng.integers(len(table)))]
    else:
        base = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.85), rng.uniform(0.3, 0.95)))
    return np.clip(base * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.02, 3), 0.0, 1.0)


def garment(rng: np.random.Generator, pattern_weights: np.ndarray, table: np.ndarray = CLOTHING_COLOURS) -> Garment:
    """A garment's colours and pattern."""
    a = clothing_colour(rng, table)
    pattern = PATTERNS[_choice(rng, pattern_weights)]
    if pattern == "melange":
        b = np.clip(a * rng.uniform(0.7, 0.85), 0.0, 1.0)
    elif rng.random() < 0.5:
        b = clothing_colour(rng)
    else:  # a lighter or darker shade of the same colour
        b = np.clip(a * rng.choice([0.55, 1.6]), 0.0, 1.0)
    return Garment(a, b, pattern, float(rng.uniform(0.025, 0.09)), float(rng.random()),
                   float(rng.uniform(-0.4, 0.4)))


def light(rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    """(direction (3,) towards the light in the camera frame, ambient, colour (3,) with exposure)."""
    azimuth = rng.uniform(-1.2, 1.2)             # left/right of the camera axis
    elevation = rng.uniform(-0.2, 1.0)           # mostly from above (camera y points down)
    d = np.array([np.sin(azimuth) * np.cos(elevation), -np.sin(elevation), -np.cos(azimuth) * np.cos(elevation)])
    tint = np.array([1.0 + 0.05 * rng.uniform(-1, 1), 1.0, 1.0 - 0.05 * rng.uniform(-1, 1)])
    exposure = rng.uniform(0.85, 1.15)
    return d / np.linalg.norm(d), float(rng.uniform(0.3, 0.55)), tint * exposure


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw one person's appearance (module docstring)."""
    skin = skin_tone(rng)
    hair = np.clip(HAIR_COLOURS[_choice(rng, HAIR_WEIGHTS)] * rng.uniform(0.85, 1.15), 0.0, 1.0)
    hair_style = HAIR_STYLES[_choice(rng, HAIR_STYLE_WEIGHTS)]
    top = garment(rng, TOP_PATTERN_WEIGHTS)
    lo, hi = SLEEVES[_choice(rng, SLEEVE_WEIGHTS)]
    sleeve = float(rng.uniform(lo, hi))
    dress = rng.random() < DRESS_PROB
    if dress:
        bottom, (lo, hi) = top, BOTTOMS[3]
    else:
        kind = _choice(rng, BOTTOM_WEIGHTS)
        table = JEANS_COLOURS if kind == 0 and rng.random() < 0.5 else CLOTHING_COLOURS
        bottom, (lo, hi) = garment(rng, BOTTOM_PATTERN_WEIGHTS, table), BOTTOMS[kind]
    hem = float(rng.uniform(lo, hi))
    shoes = np.clip(SHOE_COLOURS[_choice(rng, SHOE_WEIGHTS)] * rng.uniform(0.9, 1.1), 0.0, 1.0)
    light_dir, ambient, light_colour = light(rng)
    blur = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.6 else 0.0
    noise = float(rng.uniform(0.0, 0.02))
    return Appearance(
        skin=skin, hair=hair, hair_style=hair_style, hairline=float(rng.uniform(0.0, 0.04)),
        hair_slope=float(rng.uniform(0.85, 1.2)), nape=float(rng.uniform(-0.07, -0.04)),
        long_hair_low=float(rng.uniform(0.4, 0.5)), top=top, sleeve=sleeve, strap=float(rng.uniform(0.3, 0.36)),
        waist=float(rng.uniform(0.02, 0.2)) if not dress else -1.0, neckline=float(rng.uniform(0.85, 0.93)),
        bottom=bottom, hem=hem, shoes=shoes, shoe_top=float(rng.uniform(0.86, 0.95)), light_dir=light_dir,
        ambient=ambient, light_colour=light_colour,
        blur_sigma=blur, noise_sigma=noise,
    )
