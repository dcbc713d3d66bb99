"""Per-vertex body-part labels and part-local UV coordinates (IUV), derived from skinning weights.

- 24-part labels: the body-model joint with the largest skinning weight (SMPL's own part
  segmentation is defined this way).
- LSP 6-part labels (+ background 0) for the LSP segmentation protocol. Our order, documented:
  1 head, 2 torso (pelvis, spine, collars, neck), 3 left arm, 4 right arm, 5 left leg,
  6 right leg; left/right are the person's own. Data converters map annotation colours to these.
- IUV: I = part index 1..24 (0 is background), U, V in [0, 1] a cylindrical chart per part around
  its bone: U runs along the bone, V around it. DensePose's own charts (UV_Processed.mat, licensed
  with SMPL) differ; this derived chart is what the suite uses when they are absent, and it only
  needs to be a smooth, unique-per-part coordinate for PyMAF's auxiliary IUV supervision.
  Rendering needs the charts seam-split per face (``face_chart_uv``, used by ``body.iuv_mesh``): each face
  belongs to one part, and its corners take THAT part's chart coordinates, also where a corner vertex is
  labelled with a neighbouring part or lies across the part's V seam (the azimuth's wrap).
- 15 coarse classes (``COARSE15_OF_PART``): DensePose's 14 coarse body parts + background, the classes of
  PyMAF's "annotation index" head. DensePose groups its 24 surface parts with ``Index2mask`` (PyMAF's
  ``utils/iuvmap.py``); the suite's 24 parts are SMPL's skinning parts, grouped here by meaning (below).
"""
from __future__ import annotations

import numpy as np

# SMPL joint index -> LSP 6-part label. The neck (joint 12) is torso: UP's ``six_region_groups``
# (up_tools/model.py), which made the LSP test annotations, group the neck region with the upper body.
SMPL24_TO_LSP6 = np.array(
    [2, 5, 6, 2, 5, 6, 2, 5, 6, 2, 5, 6, 2, 2, 2, 1, 3, 4, 3, 4, 3, 4, 3, 4], dtype=np.int64
)
LSP6_PART_NAMES = ["background", "head", "torso", "left_arm", "right_arm", "left_leg", "right_leg"]

# The 15 coarse classes, in DensePose's order (its coarse segmentation masks; PyMAF's Index2mask).
COARSE15_NAMES = ["background", "torso", "right_hand", "left_hand", "left_foot", "right_foot",
                  "right_upper_leg", "left_upper_leg", "right_lower_leg", "left_lower_leg",
                  "left_upper_arm", "right_upper_arm", "left_lower_arm", "right_lower_arm", "head"]
# SMPL joint (skinning part) -> coarse class. A joint's part is the body segment its rotation moves most:
# the hip's part is the thigh (upper leg), the knee's the shank (lower leg), ankle + foot (toes) the foot,
# shoulder the upper arm, elbow the forearm, wrist + hand (fingers) the hand; pelvis, spines and collars
# the torso; neck + head the head (DensePose's head charts take in the neck; the LSP map, after UP, does not).
# Left / right are the person's own, in SMPL and in DensePose.
_COARSE_OF_JOINT = [1, 7, 6, 1, 9, 8, 1, 4, 5, 1, 4, 5, 14, 1, 1, 14, 10, 11, 12, 13, 3, 2, 3, 2]
# Part index (0 background, 1..24 = joint + 1) -> coarse class 0..14.
COARSE15_OF_PART = np.array([0] + _COARSE_OF_JOINT, dtype=np.int64)

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


def _chart_coordinates(points: np.ndarray, joints: np.ndarray, parents: np.ndarray,
                       j: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw cylinder coordinates of points in part j's chart: (N, 3) -> along (N,) the bone axis (from joint j)
    and azimuth (N,) in [-pi, pi] around it (0 on a reference direction perpendicular to the axis)."""
    origin, axis = _part_axis(joints, parents, j)
    rel = points - origin
    along = rel @ axis
    ref = np.cross(axis, [0.0, 0.0, 1.0])
    if np.linalg.norm(ref) < 1e-6:
        ref = np.cross(axis, [0.0, 1.0, 0.0])
    ref /= np.linalg.norm(ref)
    ref2 = np.cross(axis, ref)
    perp = rel - along[:, None] * axis
    return along, np.arctan2(perp @ ref2, perp @ ref)


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
        along, angle = _chart_coordinates(verts[m], joints, parents, j)
        span = max(along.max() - along.min(), 1e-9)
        uv[m, 0] = (along - along.min()) / span
        uv[m, 1] = (angle + np.pi) / (2 * np.pi)
    return np.clip(uv, 0.0, 1.0)


def face_parts(part24: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) vertex part labels, (F, 3) faces -> (F,) face part labels: the majority of the 3 vertices, the
    first vertex's with three different labels (``body.render.vertex_labels_to_face_labels``'s rule)."""
    l0, l1, l2 = np.asarray(part24)[np.asarray(faces)].T
    return np.where(l1 == l2, l1, l0)


def face_chart_uv(verts: np.ndarray, faces: np.ndarray, joints: np.ndarray, parents: np.ndarray,
                  face_part: np.ndarray) -> np.ndarray:
    """Seam-split cylinder charts: the UV of every face corner in its FACE's part chart.

    Per part j (faces with ``face_part == j``): U = along the bone, V = azimuth, both min-max normalised to
    [0, 1] over the part's face corners. A face whose corners' azimuths spread over more than pi straddles the
    chart's seam (the wrap at +-pi): its corners with negative azimuth are taken one turn on (+ 2 pi), as a
    vertex duplicated across the seam, so no face interpolates across the wrap. Hence V spans a little more
    than one turn before normalisation, and a vertex's U / V differ between the charts of its faces.

    Args:
        verts: (V, 3) rest vertices; faces: (F, 3); joints: (24, 3) rest joints; parents: (24,);
        face_part: (F,) part 0..23 of each face.
    Returns:
        (F, 3, 2) float64 in [0, 1].
    """
    faces = np.asarray(faces)
    out = np.zeros(faces.shape + (2,))
    for j in range(24):
        m = face_part == j
        if not m.any():
            continue
        used, corner = np.unique(faces[m], return_inverse=True)        # each vertex computed once per chart
        along, angle = _chart_coordinates(verts[used], joints, parents, j)
        along, angle = along[corner.reshape(-1, 3)], angle[corner.reshape(-1, 3)]
        seam = (angle.max(1) - angle.min(1)) > np.pi
        angle = np.where(seam[:, None] & (angle < 0), angle + 2 * np.pi, angle)
        for k, x in enumerate((along, angle)):
            out[m, :, k] = (x - x.min()) / max(x.max() - x.min(), 1e-9)
    return out


def vertex_iuv(verts: np.ndarray, joints: np.ndarray, parents: np.ndarray, part24: np.ndarray) -> np.ndarray:
    """(V, 3) columns I (1..24), U, V for IUV rendering."""
    uv = part_uv(verts, joints, parents, part24)
    return np.concatenate([(part24 + 1)[:, None].astype(np.float64), uv], axis=1)
