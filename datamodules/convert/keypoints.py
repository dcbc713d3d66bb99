"""Keypoint and joint arithmetic of the converters: cleaning, index maps, original -> crop pixels.

Pixel convention. SPIN-format 2D coordinates are *pixel indices*: the centre of the top-left pixel is
(0, 0). That is OpenPose's output convention, COCO's (integer labels in [0, W - 1]; detectron2 adds 0.5
for the same reason) and what SPIN's crop code assumes (``base_dataset.j2d_processing`` passes
``kp + 1`` to ``imutils.transform``, which subtracts the 1 again before applying the crop). Our samples
use continuous coordinates (pixel i covers [i, i + 1), ``body.camera``), so every stored 2D coordinate
gets ``+ PIXEL_INDEX_OFFSET`` before the crop transform. LSP / LSPET / MPII labels were made in MATLAB
(1-based); SPIN never shifted them, so they carry a further half-to-one original pixel of offset that we
leave as SPIN left it. ``center`` is used as stored (it only places the crop window).

A missing keypoint/joint is all zeros with confidence 0 (the sample schema): rows with confidence 0,
or with NaN/inf anywhere, come out as zeros.
"""
from __future__ import annotations

import numpy as np

from body.joints import (H36M17_JOINT_NAMES, J24_TO_BIGRAPH12, OPENPOSE25_TO_BIGRAPH12,
                         SPIN24_GT_JOINT_NAMES, build_index_map)
from datamodules.convert.datasets import H36M17_TO_J24_SLOTS
from datamodules.warp import apply_affine_np, invert_affine_np

PIXEL_INDEX_OFFSET: float = 0.5

# The J24 slot of each H36M-17 joint, by name (SPIN stores H36M's thorax in 'neck', its neck/nose in
# 'jaw_h36m', its head top in 'head_h36m', its pelvis in 'pelvis_mpii'). Must equal SPIN's global_idx.
_H36M_TO_J24_RENAME = {"pelvis": "pelvis_mpii", "spine": "spine_h36m", "thorax": "neck",
                       "neck_nose": "jaw_h36m", "head_top": "head_h36m"}
H36M17_TO_J24: list[int] = build_index_map(
    SPIN24_GT_JOINT_NAMES, [_H36M_TO_J24_RENAME.get(n, n) for n in H36M17_JOINT_NAMES])
assert H36M17_TO_J24 == H36M17_TO_J24_SLOTS, "H36M-17 -> J24 slots disagree with SPIN's global_idx"


def clean_confidence_rows(points: np.ndarray) -> tuple[np.ndarray, int]:
    """Zero the rows that are not usable; clip confidences to [0, 1].

    Args:
        points: (K, C) coordinates + confidence/visibility in the last column (any float dtype).
    Returns:
        ((K, C) float64 copy, number of rows that held NaN/inf). A row with a non-finite value or a
        confidence <= 0 becomes all zeros; other confidences are clipped to [0, 1] (files hold 0/1
        visibilities or detector confidences).
    """
    out = np.array(points, dtype=np.float64, copy=True)
    bad = ~np.isfinite(out).all(axis=1)
    out[bad] = 0.0
    out[:, -1] = np.clip(out[:, -1], 0.0, 1.0)
    out[out[:, -1] <= 0.0] = 0.0
    return out, int(bad.sum())


def keypoints_to_crop(keypoints: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
    """Original-image pixel-index keypoints -> continuous crop pixels.

    Args:
        keypoints: (K, 3) x, y (SPIN pixel indices) + confidence, already cleaned.
        crop_to_image: (2, 3) affine crop px -> original px (``Sample.crop_to_image``).
    Returns:
        (K, 3) float64: x_crop = A^-1 (x + 0.5); confidence kept; confidence-0 rows stay zeros.
    """
    shifted = np.array(keypoints, dtype=np.float64, copy=True)
    shifted[:, :2] += PIXEL_INDEX_OFFSET
    out = apply_affine_np(shifted, invert_affine_np(crop_to_image))
    out[out[:, 2] <= 0.0] = 0.0
    return out


def crop_to_original(keypoints_crop: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`keypoints_to_crop`: (K, C>=2) crop px -> original pixel indices (SPIN's frame)."""
    out = apply_affine_np(np.asarray(keypoints_crop, dtype=np.float64), crop_to_image)
    out[:, :2] -= PIXEL_INDEX_OFFSET
    return out


def keypoints49(openpose: np.ndarray | None, part: np.ndarray | None) -> np.ndarray:
    """SPIN-49 order: (25, 3) OpenPose then (24, 3) ground truth; an absent set is zeros. -> (49, 3)."""
    op = np.zeros((25, 3)) if openpose is None else np.asarray(openpose, dtype=np.float64)
    gt = np.zeros((24, 3)) if part is None else np.asarray(part, dtype=np.float64)
    return np.concatenate([op, gt], axis=0)


def bigraph12_from_openpose(openpose: np.ndarray) -> np.ndarray:
    """(25, 3) OpenPose BODY_25 -> (12, 3) BiGraph joints; the score is OpenPose's confidence."""
    return np.asarray(openpose)[OPENPOSE25_TO_BIGRAPH12]


def bigraph12_from_part(part: np.ndarray) -> np.ndarray:
    """(24, 3) ground-truth joints -> (12, 3) BiGraph joints, visibility as score (ground truth used as
    detections, for files without OpenPose detections)."""
    return np.asarray(part)[J24_TO_BIGRAPH12]


def h36m17_to_j24(joints17: np.ndarray) -> np.ndarray:
    """(17, 3) H36M-17 joints -> (24, 4) in SPIN's 24-joint layout, visibility 1 on the 17 slots.

    Centred on the H36M pelvis (joint 0) exactly as SPIN's preprocessing centres S.
    """
    j = np.asarray(joints17, dtype=np.float64)
    out = np.zeros((24, 4))
    out[H36M17_TO_J24, :3] = j - j[0]
    out[H36M17_TO_J24, 3] = 1.0
    return out
