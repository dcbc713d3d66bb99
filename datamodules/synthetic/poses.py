"""Random bodies: shapes, body poses and global orientations (numpy, one seeded generator per draw).

- Shape: betas ~ N(0, 1) (the open model's betas are scaled to unit variance), clipped to +-3.
- Body pose, a mix of
  (a) the hand-written library (``body.poses``; the T-pose excluded), mirrored left/right half of the
      time, every component perturbed by N(0, 6 deg), then clipped to the joint limits;
  (b) random poses within the limits: per component v = typical + s (u - typical), u ~ U(lo, hi), with
      one spread s ~ U(0.15, spread) per pose: a convex combination of the relaxed pose and a uniform
      draw, so it stays within limits, and small spreads look like everyday poses.
- Global orientation, in the camera frame (x right, y down, z forward; ``body.camera``): the upright
  person (180 deg about x) turned by a uniform yaw about its vertical axis, then pitched / rolled in the
  camera frame by N(0, 8 deg) / N(0, 5 deg) (clipped at 2.5 sigma); 3 % of the people are tilted more
  (pitch and roll up to +-60 deg: falling, cartwheels, lying back).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from body.joints import SMPL_POSE_FLIP_PERM
from body.poses import NAMED_POSES, named_pose
from body.rotations import rotmat_to_axis_angle
from datamodules.synthetic.limits import BODY_HI, BODY_LO, BODY_TYPICAL, clip_to_limits

BETAS_CLIP: float = 3.0
LIBRARY_NOISE_RAD: float = math.radians(6.0)
MIN_SPREAD: float = 0.15
PITCH_STD_RAD, ROLL_STD_RAD = math.radians(8.0), math.radians(5.0)
TILT_PROB: float = 0.03
TILT_MAX_RAD: float = math.radians(60.0)
LIBRARY_NAMES: tuple[str, ...] = tuple(n for n in NAMED_POSES if n != "t_pose")

_FLIP_SIGN = np.tile([1.0, -1.0, -1.0], 24)


def _library_table() -> np.ndarray:
    """(P, 72) axis-angle of the library poses (rows in ``LIBRARY_NAMES`` order)."""
    return np.stack([named_pose(n).numpy().astype(np.float64).reshape(-1) for n in LIBRARY_NAMES])


_LIBRARY = _library_table()


def mirror_pose(pose72: np.ndarray) -> np.ndarray:
    """(72,) axis-angle -> its mirror image (left <-> right joints; y, z components negated), as
    ``body.joints.flip_smpl_pose``."""
    return pose72[SMPL_POSE_FLIP_PERM] * _FLIP_SIGN


def sample_betas(rng: np.random.Generator, num: int = 10) -> np.ndarray:
    """(num,) betas ~ N(0, 1) clipped to +-BETAS_CLIP."""
    return np.clip(rng.standard_normal(num), -BETAS_CLIP, BETAS_CLIP)


def library_pose(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A perturbed library pose: ((69,) body pose within limits, the pose's name)."""
    k = int(rng.integers(len(LIBRARY_NAMES)))
    pose = _LIBRARY[k]
    if rng.random() < 0.5:
        pose = mirror_pose(pose)
    body = pose[3:] + rng.normal(0.0, LIBRARY_NOISE_RAD, 69)
    return clip_to_limits(body), LIBRARY_NAMES[k]


def random_pose(rng: np.random.Generator, spread: float) -> np.ndarray:
    """A random (69,) body pose within limits, ``spread`` in (MIN_SPREAD, 1] the largest excursion."""
    s = rng.uniform(MIN_SPREAD, max(spread, MIN_SPREAD))
    u = rng.uniform(BODY_LO, BODY_HI)
    return clip_to_limits(BODY_TYPICAL + s * (u - BODY_TYPICAL))


def sample_body_pose(rng: np.random.Generator, library_share: float, spread: float) -> tuple[np.ndarray, str]:
    """(69,) body pose and its origin (a library name or ``"random"``)."""
    if rng.random() < library_share:
        return library_pose(rng)
    return random_pose(rng, spread), "random"


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def orientation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) global orientation in the camera frame: R = Rz(roll) Rx(pitch) Rx(pi) Ry(yaw).

    yaw = 0 faces the camera; pitch > 0 leans the top of the body away from the camera; roll turns the
    person in the image plane."""
    return _rot_z(roll) @ _rot_x(pitch) @ _rot_x(math.pi) @ _rot_y(yaw)


def sample_orientation(rng: np.random.Generator) -> np.ndarray:
    """(3,) axis-angle global orientation in the camera frame (module docstring)."""
    yaw = rng.uniform(-math.pi, math.pi)
    if rng.random() < TILT_PROB:
        pitch, roll = rng.uniform(-TILT_MAX_RAD, TILT_MAX_RAD, 2)
    else:
        pitch = float(np.clip(rng.normal(0.0, PITCH_STD_RAD), -2.5 * PITCH_STD_RAD, 2.5 * PITCH_STD_RAD))
        roll = float(np.clip(rng.normal(0.0, ROLL_STD_RAD), -2.5 * ROLL_STD_RAD, 2.5 * ROLL_STD_RAD))
    rotmat = orientation_matrix(yaw, float(pitch), float(roll))
    return rotmat_to_axis_angle(torch.as_tensor(rotmat, dtype=torch.float64)).numpy()
