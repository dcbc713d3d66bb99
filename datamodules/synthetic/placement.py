"""Where a person stands: the virtual original camera, the person's translation, the SPIN box and the crop.

Nothing of the original image is rendered: only its size and intrinsics exist, so that every sample
carries real-looking ``image_size``, ``camera``, ``center``/``scale`` and ``crop_to_image``. The picture
is rendered straight into the crop with the crop camera (the original camera composed with the inverse
of ``crop_to_image``: focal lengths divided by the crop's pixel size, principal point moved).

1. Original camera: an image size from common photo/video formats, a horizontal field of view
   U(40, 75) deg (fx = fy), the principal point at the image centre.
2. Translation: the person's 3D box is centred on the ray through a random image point, at the depth
   that makes its largest side span U(0.3, 0.85) of the image height.
3. SPIN box (as SPIN's preprocessing: the tight box of the 2D keypoints): scale = side * U(1.1, 1.3) / 200,
   centre jittered by N(0, 4 %) of the side (clipped at 8 %). With the source's truncation probability
   the box is instead pushed so that one of its borders cuts U(5, 25) % of the person's extent along
   that axis off the person: the network input (the box) then shows a truncated person, as real crops of
   people cut by the photo's border do, while the stored crop's context still holds the rest.
All functions are pure numpy (float64), the randomness comes from the generator passed in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datamodules.sample import CROP_CONTEXT, CROP_SIZE, person_crop_affine

IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (1000, 1000), (1920, 1080), (1080, 1920), (1280, 720), (640, 480), (640, 427), (800, 600), (480, 640),
)
FOV_DEG: tuple[float, float] = (40.0, 75.0)
HEIGHT_FRACTION: tuple[float, float] = (0.3, 0.85)
BOX_MARGIN: tuple[float, float] = (1.1, 1.3)
CENTER_JITTER, CENTER_JITTER_CLIP = 0.04, 0.08
TRUNCATION_DEPTH: tuple[float, float] = (0.05, 0.25)
MIN_DEPTH: float = 1.5


@dataclass(frozen=True)
class OriginalCamera:
    """Pinhole intrinsics of the virtual original image: ``image_size`` (width, height) px, ``focal``
    px (fx = fy), ``principal`` (2,) px."""

    image_size: tuple[int, int]
    focal: float
    principal: np.ndarray


def sample_camera(rng: np.random.Generator) -> OriginalCamera:
    """A random original camera (module docstring, step 1)."""
    w, h = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    fov = math.radians(rng.uniform(*FOV_DEG))
    focal = w / (2.0 * math.tan(fov / 2.0))
    return OriginalCamera((w, h), float(focal), np.array([w / 2.0, h / 2.0]))


def project(points: np.ndarray, focal: np.ndarray | float, principal: np.ndarray) -> np.ndarray:
    """Pinhole projection. points (N, 3) camera frame (z > 0); focal scalar or (2,); principal (2,).
    Returns (N, 2) pixels: u = f_x x / z + c_x, v = f_y y / z + c_y."""
    p = np.asarray(points, dtype=np.float64)
    return np.asarray(focal, dtype=np.float64) * p[:, :2] / p[:, 2:3] + np.asarray(principal, dtype=np.float64)


def place_person(points: np.ndarray, camera: OriginalCamera, rng: np.random.Generator) -> np.ndarray:
    """Translation (3,) that puts a posed body into the original image (module docstring, step 2).

    Args:
        points: (N, 3) the body's vertices in the camera frame, before translation.
    """
    lo, hi = points.min(0), points.max(0)
    centre = 0.5 * (lo + hi)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    w, h = camera.image_size
    frac = rng.uniform(*HEIGHT_FRACTION)
    depth = max(camera.focal * extent / (frac * h), MIN_DEPTH, float(hi[2] - lo[2]) + 1.0)
    half_px = 0.5 * camera.focal * np.array([hi[0] - lo[0], hi[1] - lo[1]]) / depth
    target = np.empty(2)
    for axis, size in enumerate((w, h)):
        lo_px, hi_px = half_px[axis], size - half_px[axis]
        target[axis] = rng.uniform(lo_px, hi_px) if hi_px > lo_px else size / 2.0
    ray = (target - camera.principal) * depth / camera.focal
    return np.array([ray[0], ray[1], depth]) - centre


def tight_box(points_2d: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Box of (N, 2) points: (centre (2,), side = the larger extent, min (2,), max (2,))."""
    lo, hi = points_2d.min(0), points_2d.max(0)
    return 0.5 * (lo + hi), float(max(hi - lo)), lo, hi


def spin_box(points_2d: np.ndarray, rng: np.random.Generator, truncate: bool) -> tuple[np.ndarray, float]:
    """SPIN-style ``center`` (2,) and ``scale`` of a person from its keypoints in original pixels
    (module docstring, step 3); ``truncate`` pushes the box so one border cuts the person."""
    centre, side, lo, hi = tight_box(points_2d)
    side = max(side, 1.0)
    scale = side * rng.uniform(*BOX_MARGIN) / 200.0
    jitter = np.clip(rng.normal(0.0, CENTER_JITTER * side, 2), -CENTER_JITTER_CLIP * side, CENTER_JITTER_CLIP * side)
    centre = centre + jitter
    if truncate:
        half = 0.5 * 200.0 * scale  # half side of the SPIN box (the network input), original pixels
        axis, sign = int(rng.integers(2)), (-1.0, 1.0)[int(rng.integers(2))]
        depth = rng.uniform(*TRUNCATION_DEPTH) * (hi[axis] - lo[axis])
        edge = hi[axis] if sign > 0 else lo[axis]
        centre[axis] = edge - sign * (depth + half)
    return centre, float(scale)


def crop_affine_for(center: np.ndarray, scale: float, crop_size: int = CROP_SIZE) -> np.ndarray:
    """``crop_to_image`` (2, 3) float32 of the SPIN box (``datamodules.sample.person_crop_affine``)."""
    return person_crop_affine(center, scale, crop_size, CROP_CONTEXT)


def crop_camera(focal: np.ndarray, principal: np.ndarray, crop_to_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics of the crop: the original camera composed with the inverse of ``crop_to_image``.

    With x_orig = k x_crop + b (k the crop's pixel size in original pixels, no rotation):
    f_crop = f / k, c_crop = (c - b) / k.

    Args:
        focal: (2,) (fx, fy) original; principal: (2,) original; crop_to_image: (2, 3).
    Returns:
        (focal (2,), principal (2,)) of the crop, float64.
    """
    a = np.asarray(crop_to_image, dtype=np.float64)
    if abs(a[0, 1]) > 0 or abs(a[1, 0]) > 0:
        raise ValueError("crop_camera: crop_to_image must be axis-aligned (no rotation)")
    k = np.array([a[0, 0], a[1, 1]])
    return np.asarray(focal, dtype=np.float64) / k, (np.asarray(principal, dtype=np.float64) - a[:, 2]) / k


def image_to_crop(points_2d: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
    """(N, 2) original pixels -> crop pixels with the inverse of ``crop_to_image`` (2, 3), float64."""
    a = np.asarray(crop_to_image, dtype=np.float64)
    return (np.asarray(points_2d, dtype=np.float64) - a[:, 2]) @ np.linalg.inv(a[:, :2]).T


def in_crop(points_2d: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """(N,) bool: the crop-pixel point lies inside the crop, 0 <= x, y < crop_size."""
    return ((points_2d >= 0.0) & (points_2d < crop_size)).all(-1)
