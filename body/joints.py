"""Joint tables: every joint set the suite uses, as named index tables with their flip permutations.

Naming rule for every table in this module: snake_case names; a sided joint carries ``left_`` or
``right_`` (the *person's* left/right), a centre joint carries neither. Swapping ``left_`` <-> ``right_``
in a name gives the name of the mirrored joint, which is what each ``*_FLIP_PERM`` encodes:
``perm[i]`` is the index of the joint that joint ``i`` becomes after a horizontal flip, so a flipped
array is ``x_flipped = x[..., perm, :]`` (plus mirroring the coordinates, see ``flip_*`` below).
Tables are plain ``list[int]`` so they index tensors directly (a tuple would be read by torch as a
multi-dimensional index).

The sets (facts from smplx 0.1.28, SPIN's ``constants.py`` and the COCO / OpenPose definitions):

- ``smpl24``: SMPL's 24 skeleton joints, kinematic tree ``SMPL_PARENTS``.
- ``body_model45``: what ``smplx.SMPL`` returns: the 24, then 21 vertex joints
  (``SMPLX_EXTRA_JOINT_NAMES``, order of ``smplx.vertex_joint_selector``).
- ``body_model54``: the 45, then 9 joints from SPIN's ``J_regressor_extra`` (``BODY_MODEL_EXTRA9_JOINT_NAMES``).
- ``h36m17``: SPIN's ``J_regressor_h36m`` order (left leg at 1-3, right leg at 4-6).
- ``lsp14``: the evaluation joints; from H36M-17 via ``H36M_TO_LSP14``.
- ``coco17``, ``openpose25`` (BODY_25).
- ``spin49``: SPIN/PyMAF training keypoints = 25 OpenPose (``op_`` prefix) + 24 ground-truth joints
  (``j24``); ``SPIN49_FROM_BODY_MODEL`` selects them from the 54 body-model joints.
- ``bigraph12``: BiGraph's skeleton joints common to all data sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# SMPL skeleton (24) and the smplx.SMPL output (45)
# ----------------------------------------------------------------------------------------------
SMPL_JOINT_NAMES: list[str] = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
]
SMPL_PARENTS: list[int] = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
SMPL_FLIP_PERM: list[int] = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]
# Axis-angle pose vector (24 joints x 3) permuted joint-wise.
SMPL_POSE_FLIP_PERM: list[int] = [3 * j + k for j in SMPL_FLIP_PERM for k in range(3)]

# The keys of smplx's ``vertex_ids`` dict in the order VertexJointSelector appends them
# (face, then feet, then finger tips of the left and then the right hand).
SMPLX_EXTRA_VERTEX_ID_KEYS: list[str] = [
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky",
    "rthumb", "rindex", "rmiddle", "rring", "rpinky",
]
SMPLX_EXTRA_JOINT_NAMES: list[str] = [
    "nose", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    "left_thumb_tip", "left_index_tip", "left_middle_tip", "left_ring_tip", "left_pinky_tip",
    "right_thumb_tip", "right_index_tip", "right_middle_tip", "right_ring_tip", "right_pinky_tip",
]
BODY_MODEL45_JOINT_NAMES: list[str] = SMPL_JOINT_NAMES + SMPLX_EXTRA_JOINT_NAMES
BODY_MODEL45_FLIP_PERM: list[int] = SMPL_FLIP_PERM + [
    24, 26, 25, 28, 27,
    32, 33, 34, 29, 30, 31,
    40, 41, 42, 43, 44,
    35, 36, 37, 38, 39,
]

# Rows of SPIN's J_regressor_extra (9 x V), appended after the 45 joints.
BODY_MODEL_EXTRA9_JOINT_NAMES: list[str] = [
    "right_hip_lsp", "left_hip_lsp", "neck_lsp", "head_top_lsp",
    "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m",
]
BODY_MODEL54_JOINT_NAMES: list[str] = BODY_MODEL45_JOINT_NAMES + BODY_MODEL_EXTRA9_JOINT_NAMES
BODY_MODEL54_FLIP_PERM: list[int] = BODY_MODEL45_FLIP_PERM + [46, 45, 47, 48, 49, 50, 51, 52, 53]

# ----------------------------------------------------------------------------------------------
# Evaluation sets: H36M-17 (SPIN's J_regressor_h36m) and LSP-14
# ----------------------------------------------------------------------------------------------
H36M17_JOINT_NAMES: list[str] = [
    "pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle",
    "spine", "thorax", "neck_nose", "head_top",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
]
H36M17_FLIP_PERM: list[int] = [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13]
H36M17_PELVIS: int = 0

LSP14_JOINT_NAMES: list[str] = [
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck", "head_top",
]
LSP14_FLIP_PERM: list[int] = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13]
# LSP 'neck' is H36M 'thorax' (index 8); LSP 'head_top' is H36M 'head_top' (index 10).
H36M_TO_LSP14: list[int] = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
# LSP-14 has no pelvis: the MPJPE protocol centres on the midpoint of the two hips.
LSP14_HIP_INDICES: tuple[int, int] = (2, 3)

# ----------------------------------------------------------------------------------------------
# 2D keypoint sets: COCO-17 and OpenPose BODY_25
# ----------------------------------------------------------------------------------------------
COCO17_JOINT_NAMES: list[str] = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]
COCO17_FLIP_PERM: list[int] = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
# Official per-keypoint OKS sigmas (pycocotools: [.26, .25, ...] / 10).
COCO17_SIGMAS: list[float] = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
]

OPENPOSE25_JOINT_NAMES: list[str] = [
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "mid_hip",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
]
OPENPOSE25_FLIP_PERM: list[int] = [
    0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21,
]

# ----------------------------------------------------------------------------------------------
# SPIN / PyMAF 49 training keypoints = 25 OpenPose + 24 ground-truth joints
# ----------------------------------------------------------------------------------------------
# The 24 "ground-truth" joints: the union of what the data sets annotate. The first 14 are the
# LSP joints; 'neck' and 'head_top' are LSP's; H36M's thorax is stored at 'neck' (12) and its head
# at 'head_h36m' (18), MPII's pelvis/thorax at 14/15.
SPIN24_GT_JOINT_NAMES: list[str] = LSP14_JOINT_NAMES + [
    "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m",
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
]
J24_FLIP_PERM: list[int] = LSP14_FLIP_PERM + [14, 15, 16, 17, 18, 19, 21, 20, 23, 22]
J24_PELVIS: int = 14  # 'pelvis_mpii', the slot where H36M's pelvis is stored (SPIN's J24_TO_J17[14])
# SPIN's J24_TO_J14: the LSP-14 evaluation joints of ground-truth 3D data in the 24-joint layout.
# The 14th joint (head top) is taken from 'head_h36m' (18), not 'head_top' (13): H36M-style 3D
# ground truth fills slot 18 and leaves 13 empty, and 18 is what H36M_TO_LSP14's index 10 matches.
J24_TO_LSP14: list[int] = list(range(13)) + [18]

SPIN49_NUM_OPENPOSE: int = 25
SPIN49_JOINT_NAMES: list[str] = ["op_" + n for n in OPENPOSE25_JOINT_NAMES] + SPIN24_GT_JOINT_NAMES
SPIN49_FLIP_PERM: list[int] = OPENPOSE25_FLIP_PERM + [SPIN49_NUM_OPENPOSE + i for i in J24_FLIP_PERM]

# Which of the 54 body-model joints (45 smplx.SMPL joints + 9 J_regressor_extra rows) stands for
# each of the 49 keypoints. OpenPose hips/neck/mid-hip come from SMPL's skeleton; the ground-truth
# hips, neck and head top from the LSP-style regressor rows.
_SPIN49_SOURCE_NAME: dict[str, str] = {
    "op_nose": "nose", "op_neck": "neck", "op_mid_hip": "pelvis",
    "op_right_hip": "right_hip", "op_left_hip": "left_hip",
    "right_hip": "right_hip_lsp", "left_hip": "left_hip_lsp",
    "neck": "neck_lsp", "head_top": "head_top_lsp",
}


def build_index_map(source_names: Sequence[str], target_names: Sequence[str],
                    rename: dict[str, str] | None = None) -> list[int]:
    """Indices into ``source_names`` for each of ``target_names``: ``x_target = x_source[..., idx, :]``.

    ``rename`` maps a target name to the source name it is taken from when the two differ.
    Raises ValueError naming the first target joint that the source set lacks.
    """
    rename = rename or {}
    lookup = {n: i for i, n in enumerate(source_names)}
    out = []
    for name in target_names:
        src = rename.get(name, name)
        if src not in lookup:
            raise ValueError(f"joint {src!r} (for target {name!r}) is not in the source joint set")
        out.append(lookup[src])
    return out


SPIN49_FROM_BODY_MODEL: list[int] = build_index_map(
    BODY_MODEL54_JOINT_NAMES,
    [_SPIN49_SOURCE_NAME.get(n, n.removeprefix("op_")) for n in SPIN49_JOINT_NAMES],
)

# ----------------------------------------------------------------------------------------------
# BiGraph: 12 skeleton joints common to all data sets
# ----------------------------------------------------------------------------------------------
# Our choice (paper silent): COCO's order of these 12 (COCO indices 5..16), left before right.
BIGRAPH12_JOINT_NAMES: list[str] = [
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]
BIGRAPH12_FLIP_PERM: list[int] = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10]
# Limbs per side, then the shoulder and hip bars, then the torso sides.
BIGRAPH12_EDGES: list[tuple[int, int]] = [
    (0, 2), (2, 4), (1, 3), (3, 5),      # shoulder-elbow, elbow-wrist (left, right)
    (6, 8), (8, 10), (7, 9), (9, 11),    # hip-knee, knee-ankle (left, right)
    (0, 1), (6, 7),                      # left-right shoulder, left-right hip
    (0, 6), (1, 7),                      # shoulder-hip (left, right)
]
COCO17_TO_BIGRAPH12: list[int] = build_index_map(COCO17_JOINT_NAMES, BIGRAPH12_JOINT_NAMES)
J24_TO_BIGRAPH12: list[int] = build_index_map(SPIN24_GT_JOINT_NAMES, BIGRAPH12_JOINT_NAMES)
# Into the 49 keypoints, using their 24 ground-truth joints (not the OpenPose part).
SPIN49_TO_BIGRAPH12: list[int] = [SPIN49_NUM_OPENPOSE + i for i in J24_TO_BIGRAPH12]
OPENPOSE25_TO_BIGRAPH12: list[int] = build_index_map(OPENPOSE25_JOINT_NAMES, BIGRAPH12_JOINT_NAMES)
H36M17_TO_BIGRAPH12: list[int] = build_index_map(H36M17_JOINT_NAMES, BIGRAPH12_JOINT_NAMES)

# COCO-17 from the 24 ground-truth joints (the face from the nose/eye/ear slots): the predictions scored
# by the COCO keypoint protocol and its ground truth in SPIN-format files (SPIN / PyMAF ``J24_TO_JCOCO``).
J24_TO_COCO17: list[int] = build_index_map(SPIN24_GT_JOINT_NAMES, COCO17_JOINT_NAMES)
SPIN49_TO_COCO17: list[int] = [SPIN49_NUM_OPENPOSE + i for i in J24_TO_COCO17]


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JointSet:
    """A named joint table: ``names[i]`` is joint i, ``flip_perm[i]`` the index of its mirror."""

    name: str
    names: tuple[str, ...]
    flip_perm: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, joint: str) -> int:
        """Index of ``joint``; ValueError naming the set when it is absent."""
        if joint not in self.names:
            raise ValueError(f"joint {joint!r} is not in joint set {self.name!r}")
        return self.names.index(joint)


def _set(name: str, names: Sequence[str], perm: Sequence[int]) -> JointSet:
    return JointSet(name, tuple(names), tuple(perm))


JOINT_SETS: dict[str, JointSet] = {
    js.name: js for js in [
        _set("smpl24", SMPL_JOINT_NAMES, SMPL_FLIP_PERM),
        _set("body_model45", BODY_MODEL45_JOINT_NAMES, BODY_MODEL45_FLIP_PERM),
        _set("body_model54", BODY_MODEL54_JOINT_NAMES, BODY_MODEL54_FLIP_PERM),
        _set("h36m17", H36M17_JOINT_NAMES, H36M17_FLIP_PERM),
        _set("lsp14", LSP14_JOINT_NAMES, LSP14_FLIP_PERM),
        _set("coco17", COCO17_JOINT_NAMES, COCO17_FLIP_PERM),
        _set("openpose25", OPENPOSE25_JOINT_NAMES, OPENPOSE25_FLIP_PERM),
        _set("j24", SPIN24_GT_JOINT_NAMES, J24_FLIP_PERM),
        _set("spin49", SPIN49_JOINT_NAMES, SPIN49_FLIP_PERM),
        _set("bigraph12", BIGRAPH12_JOINT_NAMES, BIGRAPH12_FLIP_PERM),
    ]
}


def get_joint_set(name: str) -> JointSet:
    """The joint set registered as ``name``; ValueError listing the valid names otherwise."""
    if name not in JOINT_SETS:
        raise ValueError(f"unknown joint set {name!r}; valid names: {', '.join(sorted(JOINT_SETS))}")
    return JOINT_SETS[name]


# ----------------------------------------------------------------------------------------------
# Pure functions: pelvis and horizontal flips
# ----------------------------------------------------------------------------------------------
def hip_midpoint(joints: Tensor, hips: tuple[int, int] = LSP14_HIP_INDICES) -> Tensor:
    """Pelvis as the midpoint of two hip joints (the LSP-14 / J24 protocol).

    Args:
        joints: (B, N, D) joints (D = 2, 3, or more; all channels are averaged).
        hips: indices of the two hips; default LSP-14's (2, 3), also valid for J24.
    Returns:
        (B, D) midpoint.
    """
    if joints.dim() != 3 or joints.shape[1] <= max(hips):
        raise ValueError(f"joints must have shape (B, N, D) with N > {max(hips)}, got {tuple(joints.shape)}")
    return 0.5 * (joints[:, hips[0]] + joints[:, hips[1]])


def _check_perm(perm: Sequence[int], n: int, what: str) -> list[int]:
    perm = list(perm)
    if len(perm) != n:
        raise ValueError(f"flip permutation has {len(perm)} entries but {what} has {n} joints")
    return perm


def flip_smpl_pose(pose: Tensor) -> Tensor:
    """Mirror SMPL axis-angle poses through the x = 0 plane (the body's left/right axis).

    Mirroring with M = diag(-1, 1, 1) maps each rotation R to M R M, i.e. the axis-angle
    (ax, ay, az) to (ax, -ay, -az); joints are then swapped left <-> right by ``SMPL_FLIP_PERM``.
    The global orientation (joint 0) is mirrored the same way, which matches flipping the image
    horizontally when the body is expressed in the camera frame.

    Args:
        pose: (B, 72) or (B, 24, 3) axis-angle.
    Returns:
        mirrored pose, same shape as ``pose``.
    """
    if pose.dim() == 2 and pose.shape[1] == 72:
        aa = pose.reshape(pose.shape[0], 24, 3)
    elif pose.dim() == 3 and pose.shape[1:] == (24, 3):
        aa = pose
    else:
        raise ValueError(f"pose must have shape (B, 72) or (B, 24, 3), got {tuple(pose.shape)}")
    sign = torch.tensor([1.0, -1.0, -1.0], dtype=aa.dtype, device=aa.device)
    return (aa[:, SMPL_FLIP_PERM] * sign).reshape(pose.shape)


def flip_keypoints_2d(keypoints: Tensor, perm: Sequence[int], image_width: float | None = None) -> Tensor:
    """Horizontally flip 2D keypoints and swap left/right joints.

    With ``image_width=None`` the keypoints are normalised crop coordinates in [-1, 1] and x -> -x.
    With a width W they are continuous pixel coordinates (pixel i spans [i, i + 1), see
    ``body.camera``) and x -> W - x. Channels after x, y (e.g. confidence) are permuted only.

    Args:
        keypoints: (B, N, C) with C >= 2.
        perm: flip permutation of length N.
        image_width: None for normalised coordinates, else the image width in pixels.
    Returns:
        (B, N, C) flipped keypoints.
    """
    if keypoints.dim() != 3 or keypoints.shape[-1] < 2:
        raise ValueError(f"keypoints must have shape (B, N, C>=2), got {tuple(keypoints.shape)}")
    perm = _check_perm(perm, keypoints.shape[1], "keypoints")
    out = keypoints[:, perm].clone()
    out[..., 0] = -out[..., 0] if image_width is None else image_width - out[..., 0]
    return out


def flip_joints_3d(joints: Tensor, perm: Sequence[int]) -> Tensor:
    """Mirror 3D joints through the x = 0 plane (x -> -x) and swap left/right joints.

    Args:
        joints: (B, N, C) with C >= 3; channels after x, y, z (e.g. confidence) are permuted only.
        perm: flip permutation of length N.
    Returns:
        (B, N, C) mirrored joints.
    """
    if joints.dim() != 3 or joints.shape[-1] < 3:
        raise ValueError(f"joints must have shape (B, N, C>=3), got {tuple(joints.shape)}")
    perm = _check_perm(perm, joints.shape[1], "joints")
    out = joints[:, perm].clone()
    out[..., 0] = -out[..., 0]
    return out
