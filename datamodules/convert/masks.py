"""Segmentation annotations of SPIN-format files (``maskname`` / ``partname``): decoding and labels.

What the files are (UP-S1h's ``data/lsp/im%04d_part_segmentation.png`` and ``_segmentation.png``, used
by the LSP test protocol):

- the part PNG is a *label image*: SPIN's and PyMAF's ``eval.py`` read it with ``cv2.imread(path, 0)``
  and compare it with ``c`` for ``c in range(7)``, and with 255 for "ignore"; UP's own evaluator
  (``segmentation/evaluate_segmentation.py``) reads it with PIL and keeps the first channel of a
  3-channel file. The six labels are UP's ``six_region_groups`` (``up_tools/model.py``):
  1 head, 2 torso (with neck and shoulders), 3 right arm, 4 left arm, 5 right leg, 6 left leg
  (``--as_nolr`` merges 4 -> 3 and 6 -> 5, so 3/4 and 5/6 are the left/right pairs; UP names regions
  like LSP names joints, by the person's side).
- the silhouette PNG is foreground where the grey value is > 0 (``cv2.imread(maskname, 0) > 0``).

Our labels (``body.parts.LSP6_PART_NAMES``): 0 background, 1 head, 2 torso, 3 left arm, 4 right arm,
5 left leg, 6 right leg, 255 ignore; a silhouette is 0 background / 1 foreground. UP labels outside
{0..6, 255} are unknown and become 255. Pixels of the crop outside the original image are 255 too
(nothing is known there).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from body.parts import LSP6_PART_NAMES

IGNORE: int = 255
# UP-3D six-part label -> ours. Built from names so it cannot drift from body.parts.
UP3D_PART_NAMES: list[str] = ["background", "head", "torso", "right_arm", "left_arm", "right_leg", "left_leg"]
UP3D_TO_OURS: dict[int, int] = {i: LSP6_PART_NAMES.index(n) for i, n in enumerate(UP3D_PART_NAMES)}
UP3D_TO_OURS[IGNORE] = IGNORE


class MaskDecodeError(ValueError):
    """A segmentation file is readable but not in a known encoding."""


def _lut(mapping: dict[int, int]) -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


_UP3D_LUT = _lut(UP3D_TO_OURS)


def map_part_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """UP-3D six-part labels -> ours.

    Args:
        labels: (H, W) integer label image (UP-3D encoding).
    Returns:
        ((H, W) uint8 in our labels, number of pixels whose label was unknown and became 255).
    """
    lab = np.asarray(labels)
    out_of_range = (lab < 0) | (lab > 255)
    lab8 = np.where(out_of_range, IGNORE, lab).astype(np.uint8)
    mapped = _UP3D_LUT[lab8]
    known = np.isin(lab8, list(UP3D_TO_OURS)) & ~out_of_range
    return mapped, int((~known).sum())


def silhouette_labels(grey: np.ndarray) -> np.ndarray:
    """(H, W) grey values -> (H, W) uint8: 1 where > 0, else 0 (SPIN's ``> 0``)."""
    return (np.asarray(grey) > 0).astype(np.uint8)


def read_label_png(path: str) -> np.ndarray:
    """A label image as (H, W) integers, the way UP's evaluator reads it.

    Grey ('L'), 16-bit ('I;16', 'I') and palette ('P', the *indices*) images give their values; a
    3/4-channel image whose colour channels are equal gives its first channel. A colour-coded image
    (channels differ) raises :class:`MaskDecodeError`: SPIN's grayscale read would turn it into
    luminance values that are not labels.
    """
    with Image.open(path) as im:
        im.load()
        if im.mode in ("L", "P", "I", "I;16", "1"):
            return np.array(im).astype(np.int64)
        if im.mode == "LA":
            return np.array(im)[..., 0].astype(np.int64)
        arr = np.array(im.convert("RGB"))
    if not ((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()):
        raise MaskDecodeError("colour-coded PNG (RGB channels differ); expected a label image (0..6, 255)")
    return arr[..., 0].astype(np.int64)


def read_silhouette_png(path: str) -> np.ndarray:
    """A silhouette PNG as (H, W) uint8 {0, 1}: foreground where any channel is > 0."""
    with Image.open(path) as im:
        im.load()
        arr = np.array(im)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
    return silhouette_labels(arr)
