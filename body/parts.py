"""Per-vertex body-part labels and part-local UV coordinates (IUV), derived from skinning weights.

- 24-part labels: the body-model joint with the largest skinning weight (SMPL's own part
  segmentation is defined this way).
- LSP 6-part labels (+ background 0) for the LSP segmentation protocol. Our order, documented:
  1 head (head, neck), 2 torso (pelvis, spine, collars), 3 left arm, 4 right arm, 5 left leg,
  6 right leg; left/right are the person's own. Data converters map annotation colours to these.
- IUV: I = part index 1..24 (0 is background), U, V in [0, 1] a cylindrical chart per part around
  its bone: U runs along the bone, V around it. DensePose's own charts (UV_Processed.mat, licensed
  with SMPL) differ; this derived chart is what the suite uses when they are absent, and it only
  needs to be a smooth, unique-per-part coordinate for PyMAF's auxiliary IUV supervision.
"""
from __future__ import annotations

import numpy as np

# SMPL joint index -> LSP 6-part label.
SMPL24_TO_LSP6 = np.array(
    [2, 5, 6, 2, 5, 6, 2, 5, 6, 2, 5, 6, 1, 2, 2, 1, 3, 4, 3, 4, 3, 4, 3, 4], dtype=np.int64
)
LSP6_PART_NAMES = ["background", "head", "torso", "left_arm", "right_arm", "left_leg", "right_leg"]

# For each SMPL joint, the joint its bone points to (a child), used as the part's axis.
_BONE_END = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17,
             16: 18, 17: 19, 18: 20, 19: 21, 20: 22, 21: 23}


def part_labels_from_weights(weights: np.ndarray) -> np.ndarray:
    """(V, 24) skinning weights -> (V,) int part index 0..23 (argmax)."""
    return np.asarray(weights).argmax(1).astype(np.int64)


def lsp6_labels(part24: np.ndarray) -> np.ndarray:
    """(V,) 24-part labels -> (V,) LSP 6-part labels 1..6."""
    return SMPL24_TO_LSP6[np.asarray(part24)]


def _part_axis(joints: np.ndarray, parents: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Origin and unit axis of part j's bone: towards its child, or continuing its parent's bone."""
    if j in _BONE_END:
        a, b = joints[j], joints[_BONE_END[j]]
    else:  # leaves (feet, head, hands) and collars without a unique child: extend the parent bone
        p = parents[j]
        a, b = joints[j], joints[j] + (joints[j] - joints[p])
    d = b - a
    return a, d / max(np.linalg.norm(d), 1e-9)


def part_uv(verts: np.ndarray, joints: np.ndarray, parents: np.ndarray, part24: np.ndarray) -> np.ndarray:
    """Cylindrical part-local UV per vertex.

    Args:
        verts: (V, 3) rest-pose vertices; joints: (24, 3) rest joints; parents: (24,) kinematic tree
            (-1 root); part24: (V,) part labels.
    Returns:
        (V, 2) in [0, 1]: U along the part's bone (min..max of the part), V = azimuth / 2 pi.
    """
    uv = np.zeros((len(verts), 2))
    for j in range(24):
        m = part24 == j
        if not m.any():
            continue
        origin, axis = _part_axis(joints, parents, j)
        rel = verts[m] - origin
        along = rel @ axis
        ref = np.cross(axis, [0.0, 0.0, 1.0])
        if np.linalg.norm(ref) < 1e-6:
            ref = np.cross(axis, [0.0, 1.0, 0.0])
        ref /= np.linalg.norm(ref)
        ref2 = np.cross(axis, ref)
        perp = rel - along[:, None] * axis
        angle = np.arctan2(perp @ ref2, perp @ ref)
        span = max(along.max() - along.min(), 1e-9)
        uv[m, 0] = (along - along.min()) / span
        uv[m, 1] = (angle + np.pi) / (2 * np.pi)
    return np.clip(uv, 0.0, 1.0)


def vertex_iuv(verts: np.ndarray, joints: np.ndarray, parents: np.ndarray, part24: np.ndarray) -> np.ndarray:
    """(V, 3) columns I (1..24), U, V for IUV rendering."""
    uv = part_uv(verts, joints, parents, part24)
    return np.concatenate([(part24 + 1)[:, None].astype(np.float64), uv], axis=1)
