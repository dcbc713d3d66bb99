"""Reading source images and cutting the person crop (image and label mask).

The crop is ``datamodules.sample.person_crop_affine(center, scale, crop_size, 1.5)`` used as the
destination -> source map of :func:`datamodules.warp.warp_image` (continuous pixel coordinates, black
outside the image). Shrinking a large box by plain bilinear sampling aliases, so when one crop pixel
spans k >= 2 source pixels the image is first box-averaged by the integer factor f = floor(k)
(``PIL.Image.reduce``: reduced pixel j covers source [f j, f (j + 1)), so the affine is simply divided
by f) and then resampled; labels are never averaged (nearest, full resolution).

Images are decoded with Pillow, converted to RGB, and EXIF orientation is applied, because SPIN read
them with ``cv2.imread`` (which applies it) and its annotations match what it saw. ``image_size`` is
the size after that.
"""
from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageOps

from datamodules.warp import warp_image

_EXIF_ORIENTATION = 0x0112


class ImageReadError(OSError):
    """The image file is missing or cannot be decoded. ``problem``: "missing file" | "unreadable"."""

    def __init__(self, problem: str, detail: str):
        super().__init__(detail)
        self.problem = problem


def load_rgb(path: str) -> tuple[np.ndarray, bool]:
    """(H, W, 3) uint8 RGB with EXIF orientation applied, and whether a rotation/flip was applied.

    Raises:
        ImageReadError: missing or undecodable file (truncated JPEG included).
    """
    if not os.path.isfile(path):
        raise ImageReadError("missing file", f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            fixed = ImageOps.exif_transpose(im) if orientation not in (0, 1) else im
            rgb = np.asarray(fixed.convert("RGB"))
    except Exception as exn:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise ImageReadError("unreadable", f"{path}: cannot decode ({type(exn).__name__}: {exn})") from None
    return np.ascontiguousarray(rgb), orientation not in (0, 1)


def crop_image(image: np.ndarray, crop_to_image: np.ndarray, crop_size: int) -> np.ndarray:
    """The square person crop.

    Args:
        image: (H, W, 3) uint8 source image.
        crop_to_image: (2, 3) affine crop px -> source px (no rotation: ``person_crop_affine``).
        crop_size: side of the crop, pixels.
    Returns:
        (crop_size, crop_size, 3) uint8, black where the crop leaves the image.
    """
    a = np.asarray(crop_to_image, dtype=np.float64)
    k = math.sqrt(abs(np.linalg.det(a[:, :2])))  # source pixels per crop pixel
    factor = int(math.floor(k)) if k >= 2.0 else 1
    src = image
    if factor > 1:
        src = np.asarray(Image.fromarray(image).reduce(factor))
        a = a / factor
    return warp_image(src, a, (crop_size, crop_size), interpolation="bilinear", fill=0)


def crop_labels(labels: np.ndarray, crop_to_image: np.ndarray, crop_size: int, fill: int = 255) -> np.ndarray:
    """(H, W) uint8 label image -> (crop_size, crop_size) uint8, nearest; ``fill`` outside the image."""
    return warp_image(np.ascontiguousarray(labels, dtype=np.uint8), crop_to_image, (crop_size, crop_size),
                      interpolation="nearest", fill=fill)
