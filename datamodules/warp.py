"""Affine resampling of images and label masks (crops, augmentation), in continuous pixel coordinates.

Pixel i covers [i, i + 1) and its centre is at i + 0.5 (``body.camera``'s convention), so an affine
map between two images acts on the same coordinates as the keypoints do: a keypoint at x in the source
lands at A x in the destination, with no half-pixel offset. Pillow's ``Image.transform(AFFINE)``
samples at pixel centres in exactly this convention (its coefficients map destination to source), and
it is the fastest resampler we have here (torchvision is unusable: its PyPI wheels are CUDA builds
that fail to import beside the CPU torch; OpenCV is not a dependency). A test checks the convention on a one-pixel image.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def _pil_coefficients(dst_to_src: np.ndarray) -> tuple[float, ...]:
    a = np.asarray(dst_to_src, dtype=np.float64)
    if a.shape != (2, 3):
        raise ValueError(f"affine must have shape (2, 3), got {a.shape}")
    return tuple(float(v) for v in a.reshape(-1))


def invert_affine_np(affine: np.ndarray) -> np.ndarray:
    """(2, 3) [M | t] -> [M^-1 | -M^-1 t], float64 (the numpy twin of ``body.camera.invert_affine``)."""
    a = np.asarray(affine, dtype=np.float64)
    inv = np.linalg.inv(a[:, :2])
    return np.concatenate([inv, -inv @ a[:, 2:]], axis=1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) maps: x -> outer(inner(x)), float64."""
    o = np.asarray(outer, dtype=np.float64)
    i = np.asarray(inner, dtype=np.float64)
    return np.concatenate([o[:, :2] @ i[:, :2], o[:, :2] @ i[:, 2:] + o[:, 2:]], axis=1)


def apply_affine_np(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(N, C>=2) points -> the same with x, y mapped by the (2, 3) affine; other channels kept."""
    a = np.asarray(affine, dtype=np.float64)
    out = np.array(points, dtype=np.float64, copy=True)
    out[:, :2] = points[:, :2] @ a[:, :2].T + a[:, 2]
    return out.astype(np.asarray(points).dtype, copy=False)


def _axis_aligned_box(dst_to_src: np.ndarray, out_size: tuple[int, int],
                      src_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The source box (x0, y0, x1, y1) of a scale-and-shift map that stays inside the source, else None."""
    a = np.asarray(dst_to_src, dtype=np.float64)
    if a[0, 1] != 0.0 or a[1, 0] != 0.0 or a[0, 0] <= 0.0 or a[1, 1] <= 0.0:
        return None
    x0, y0 = a[0, 2], a[1, 2]
    x1, y1 = x0 + a[0, 0] * out_size[0], y0 + a[1, 1] * out_size[1]
    if x0 < 0.0 or y0 < 0.0 or x1 > src_size[0] or y1 > src_size[1]:
        return None
    return (float(x0), float(y0), float(x1), float(y1))


def warp_image(image: np.ndarray, dst_to_src: np.ndarray, out_size: tuple[int, int],
               interpolation: str = "bilinear", fill: int | tuple[int, ...] = 0,
               levels: np.ndarray | None = None) -> np.ndarray:
    """Resample ``image`` into an ``out_size`` = (width, height) image.

    Args:
        image: (H, W, 3) or (H, W) uint8.
        dst_to_src: (2, 3) affine taking destination pixel coordinates to source pixel coordinates.
        interpolation: ``"bilinear"`` (images) or ``"nearest"`` (label masks: labels are never blended).
        fill: value of destination pixels that fall outside the source.
        levels: optional (C, 256) uint8 lookup tables applied to the result, channel by channel
            (e.g. per-channel gains), in the same C pass as the resampling.
    Returns:
        (height, width, 3) or (height, width) uint8.
    """
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W[, 3]) uint8, got {image.shape} {image.dtype}")
    src = Image.fromarray(image)
    if image.ndim == 3 and isinstance(fill, int):
        fill = (fill,) * image.shape[2]
    w, h = int(out_size[0]), int(out_size[1])
    box = _axis_aligned_box(dst_to_src, (w, h), (image.shape[1], image.shape[0]))
    if box is not None and interpolation == "bilinear":
        # Scale + shift inside the source: Pillow's separable resize samples the same bilinear
        # interpolation at the same points (to rounding) about 2.5x faster than the general transform.
        out = src.resize((w, h), Image.Resampling.BILINEAR, box=box)
    else:
        out = src.transform((w, h), Image.Transform.AFFINE, data=_pil_coefficients(dst_to_src),
                            resample=_RESAMPLE[interpolation], fillcolor=fill)
    if levels is not None:
        out = out.point(np.asarray(levels, dtype=np.uint8).reshape(-1).tolist())
    return np.asarray(out)
