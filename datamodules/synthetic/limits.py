"""Anatomical joint limits of the body pose, as ranges of the axis-angle components per joint.

A pose is within limits when every component (x, y, z) of every joint's axis-angle vector lies in its
range. Frame: SMPL's rest frame (y up, +z forward, +x the body's left; see ``body.poses`` for the
rotation cues); every joint rotates in its own rest-aligned frame, so "left elbow about -y" is elbow
flexion whatever the shoulder does. Components of an axis-angle vector are not Euler angles, but for the
moderate rotations of a body they behave like them and the ranges read like a physiotherapy table
(knee flexion 0..150 deg, no hyperextension; elbow 0..145 deg; shoulder, hip, spine and neck ranges).

Only the left and centre joints are written; a right joint's range is its left twin's mirrored through
the body's sagittal plane (x kept, y and z negated), which makes the table symmetric under
``body.joints.flip_smpl_pose``. Each range also holds a ``typical`` (relaxed) value, the centre the
random-pose sampler draws around (arms hanging, elbows slightly bent); every range contains 0 (the rest
pose) and its typical value.
"""
from __future__ import annotations

import numpy as np

from body.joints import SMPL_JOINT_NAMES

# joint -> ((lo_x, hi_x), (lo_y, hi_y), (lo_z, hi_z)) in degrees; left and centre joints only.
_LIMITS_DEG: dict[str, tuple[tuple[float, float], ...]] = {
    "spine1": ((-15, 35), (-20, 20), (-15, 15)),
    "spine2": ((-15, 35), (-20, 20), (-15, 15)),
    "spine3": ((-10, 25), (-15, 15), (-10, 10)),
    "neck": ((-30, 40), (-45, 45), (-25, 25)),
    "head": ((-25, 30), (-30, 30), (-15, 15)),
    "left_hip": ((-125, 30), (-40, 40), (-25, 50)),    # x < 0: flexion (leg forward); z > 0: abduction
    "left_knee": ((0, 150), (-10, 10), (-5, 5)),        # x > 0: flexion, no hyperextension
    "left_ankle": ((-25, 45), (-20, 20), (-20, 20)),   # x > 0: plantar flexion (toes down)
    "left_foot": ((-20, 20), (-5, 5), (-5, 5)),
    "left_collar": ((-10, 10), (-15, 15), (-15, 25)),  # z > 0: shoulder shrug
    "left_shoulder": ((-90, 90), (-100, 40), (-95, 80)),  # -y: arm forward; -z: arm down; x: twist
    "left_elbow": ((-20, 20), (-145, 0), (-10, 10)),   # -y: flexion (forearm forward)
    "left_wrist": ((-45, 45), (-30, 30), (-70, 70)),
    "left_hand": ((-20, 20), (-20, 20), (-20, 20)),
}
# joint -> typical (relaxed) axis-angle in degrees; absent = 0.
_TYPICAL_DEG: dict[str, tuple[float, float, float]] = {
    "left_shoulder": (0.0, -5.0, -65.0),
    "left_elbow": (0.0, -20.0, 0.0),
    "left_knee": (5.0, 0.0, 0.0),
}


def _mirror_name(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[len("left_"):]
    return name


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo = np.zeros((24, 3))
    hi = np.zeros((24, 3))
    typ = np.zeros((24, 3))
    for name, ranges in _LIMITS_DEG.items():
        for side in {name, _mirror_name(name)}:
            j = SMPL_JOINT_NAMES.index(side)
            t = np.array(_TYPICAL_DEG.get(name, (0.0, 0.0, 0.0)))
            r = np.array(ranges, dtype=np.float64)  # (3, 2)
            if side != name:  # mirrored: x kept, y and z negated (and their bounds swapped)
                r[1:] = -r[1:, ::-1]
                t = t * np.array([1.0, -1.0, -1.0])
            lo[j], hi[j], typ[j] = r[:, 0], r[:, 1], t
    return np.radians(lo), np.radians(hi), np.radians(typ)


# (24, 3) radians; row 0 (the global orientation) is unconstrained here and left at 0..0.
LIMITS_LO, LIMITS_HI, TYPICAL = _tables()
# Body joints 1..23 as a (69,) vector, in the layout of a body_pose.
BODY_LO: np.ndarray = LIMITS_LO[1:].reshape(-1)
BODY_HI: np.ndarray = LIMITS_HI[1:].reshape(-1)
BODY_TYPICAL: np.ndarray = TYPICAL[1:].reshape(-1)


def clip_to_limits(body_pose: np.ndarray) -> np.ndarray:
    """(..., 69) axis-angle body pose -> the same with every component clipped to its range."""
    return np.clip(body_pose, BODY_LO, BODY_HI)


def limit_violations(body_pose: np.ndarray, tol: float = 1e-6) -> list[str]:
    """Names of the components of a (69,) body pose outside their range, e.g. ``["left_knee.x"]``."""
    pose = np.asarray(body_pose, dtype=np.float64).reshape(23, 3)
    bad = (pose < LIMITS_LO[1:] - tol) | (pose > LIMITS_HI[1:] + tol)
    return [f"{SMPL_JOINT_NAMES[j + 1]}.{'xyz'[k]}" for j, k in zip(*np.nonzero(bad))]
