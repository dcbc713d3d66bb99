"""Rotation conversions through ``roma``: axis-angle, rotation matrices and the 6D representation.

6D layout (Zhou et al. 2019, as in SPIN / PyMAF / HMR 2.0 code): the 6 numbers are the first two
COLUMNS of the rotation matrix, stored row-major as a 3x2 block,
    x = [R00, R01, R10, R11, R20, R21],
so ``x.reshape(..., 3, 2)`` gives the columns a1 = x[..., 0::2] (elements 0, 2, 4) and
a2 = x[..., 1::2] (elements 1, 3, 5). ``roma.special_gramschmidt`` orthonormalises exactly those two
columns (b1 = a1 / |a1|, b2 = normalised a2 minus its b1 component, b3 = b1 x b2) and returns
[b1 b2 b3] as columns, which is SPIN's ``rot6d_to_rotmat``. PyMAF's mean pose (``smpl_mean_params``,
144 = 24 x 6) is stored in this layout.

All functions take any leading batch shape ``...``; dtype and device follow the input.
"""
from __future__ import annotations

import roma
from torch import Tensor


def _check_last(x: Tensor, name: str, shape: tuple[int, ...]) -> None:
    if x.dim() < len(shape) or tuple(x.shape[-len(shape):]) != shape:
        expected = ", ".join(["..."] + [str(s) for s in shape])
        raise ValueError(f"{name} must have shape ({expected}), got {tuple(x.shape)}")


def rot6d_to_rotmat(x: Tensor, epsilon: float = 1e-12) -> Tensor:
    """6D representation to rotation matrices by Gram-Schmidt over the two columns.

    Args:
        x: (..., 6) in the layout described in the module docstring; e.g. reshape a PyMAF
            pose of (B, 144) to (B, 24, 6) first.
        epsilon: clamp of the column norms, keeps degenerate inputs finite.
    Returns:
        (..., 3, 3) rotation matrices (orthonormal, det +1).
    """
    _check_last(x, "x", (6,))
    return roma.special_gramschmidt(x.reshape(*x.shape[:-1], 3, 2), epsilon=epsilon)


def rotmat_to_rot6d(rotmat: Tensor) -> Tensor:
    """Rotation matrices to the 6D representation (their first two columns).

    Args:
        rotmat: (..., 3, 3).
    Returns:
        (..., 6) = [R00, R01, R10, R11, R20, R21].
    """
    _check_last(rotmat, "rotmat", (3, 3))
    return rotmat[..., :, :2].reshape(*rotmat.shape[:-2], 6)


def axis_angle_to_rotmat(axis_angle: Tensor) -> Tensor:
    """Axis-angle (rotation vectors, angle = norm in radians) to rotation matrices.

    Args:
        axis_angle: (..., 3).
    Returns:
        (..., 3, 3).
    """
    _check_last(axis_angle, "axis_angle", (3,))
    return roma.rotvec_to_rotmat(axis_angle)


def rotmat_to_axis_angle(rotmat: Tensor) -> Tensor:
    """Rotation matrices to axis-angle with angle in [0, pi].

    Args:
        rotmat: (..., 3, 3) proper rotations.
    Returns:
        (..., 3).
    """
    _check_last(rotmat, "rotmat", (3, 3))
    return roma.rotmat_to_rotvec(rotmat)


def axis_angle_to_rot6d(axis_angle: Tensor) -> Tensor:
    """Axis-angle to the 6D representation.

    Args:
        axis_angle: (..., 3).
    Returns:
        (..., 6).
    """
    return rotmat_to_rot6d(axis_angle_to_rotmat(axis_angle))


def rot6d_to_axis_angle(x: Tensor) -> Tensor:
    """6D representation to axis-angle (through Gram-Schmidt).

    Args:
        x: (..., 6).
    Returns:
        (..., 3).
    """
    return rotmat_to_axis_angle(rot6d_to_rotmat(x))
