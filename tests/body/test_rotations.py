import math

import pytest
import roma
import torch

from body.rotations import (axis_angle_to_rot6d, axis_angle_to_rotmat, rot6d_to_axis_angle,
                            rot6d_to_rotmat, rotmat_to_axis_angle, rotmat_to_rot6d)

@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # roma's random rotations use the global generator


DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def spin_style_gram_schmidt(x):
    """Independent reading of SPIN's rot6d_to_rotmat: x.view(-1, 3, 2), columns 0 and 1."""
    a1 = x[:, [0, 2, 4]]
    a2 = x[:, [1, 3, 5]]
    b1 = a1 / a1.norm(dim=1, keepdim=True)
    b2 = a2 - (b1 * a2).sum(1, keepdim=True) * b1
    b2 = b2 / b2.norm(dim=1, keepdim=True)
    b3 = torch.cross(b1, b2, dim=1)
    return torch.stack([b1, b2, b3], dim=-1)


def random_axis_angle(n, dtype, max_angle=math.pi - 1e-2, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=1, keepdim=True)
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return (axis * angle).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_schmidt_is_rotation(dtype):
    x = torch.randn(1000, 6, dtype=dtype, generator=torch.Generator().manual_seed(1))
    r = rot6d_to_rotmat(x)
    eye = torch.eye(3, dtype=dtype).expand_as(r)
    assert torch.allclose(r.transpose(-1, -2) @ r, eye, atol=TOL[dtype] * 10)
    assert torch.allclose(torch.linalg.det(r), torch.ones(1000, dtype=dtype), atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layout_matches_spin_convention(dtype):
    x = torch.randn(200, 6, dtype=dtype, generator=torch.Generator().manual_seed(2))
    r = rot6d_to_rotmat(x)
    assert torch.allclose(r, spin_style_gram_schmidt(x), atol=TOL[dtype])
    # the first column is the normalised first 3D vector (elements 0, 2, 4)
    a1 = x[:, 0::2]
    assert torch.allclose(r[..., 0], a1 / a1.norm(dim=1, keepdim=True), atol=TOL[dtype])
    # identity in 6D is [1, 0, 0, 1, 0, 0]
    ident = torch.tensor([1.0, 0, 0, 1, 0, 0], dtype=dtype)
    assert torch.equal(rot6d_to_rotmat(ident), torch.eye(3, dtype=dtype))
    assert torch.equal(rotmat_to_rot6d(torch.eye(3, dtype=dtype)), ident)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotmat_rot6d_round_trip(dtype):
    r = roma.random_rotmat(500, dtype=dtype)
    assert torch.allclose(rot6d_to_rotmat(rotmat_to_rot6d(r)), r, atol=TOL[dtype])
    # already-orthonormal 6D is a fixed point of Gram-Schmidt
    x = rotmat_to_rot6d(r)
    assert torch.allclose(rotmat_to_rot6d(rot6d_to_rotmat(x)), x, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_axis_angle_round_trips(dtype):
    aa = random_axis_angle(500, dtype)
    assert torch.allclose(rotmat_to_axis_angle(axis_angle_to_rotmat(aa)), aa, atol=TOL[dtype] * 10)
    assert torch.allclose(rot6d_to_axis_angle(axis_angle_to_rot6d(aa)), aa, atol=TOL[dtype] * 10)
    # rotation matrices round trip at any angle, including near pi
    r = roma.random_rotmat(500, dtype=dtype)
    assert torch.allclose(axis_angle_to_rotmat(rotmat_to_axis_angle(r)), r, atol=TOL[dtype] * 10)


def test_axis_angle_known_values():
    # 90 deg about z takes x to y (right-handed)
    r = axis_angle_to_rotmat(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    assert torch.allclose(r @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12)
    # 180 deg about x (SPIN's upright global orientation in the camera frame)
    r = axis_angle_to_rotmat(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(r, torch.diag(torch.tensor([1.0, -1, -1], dtype=torch.float64)), atol=1e-12)
    assert torch.allclose(axis_angle_to_rot6d(torch.zeros(3)), torch.tensor([1.0, 0, 0, 1, 0, 0]))


def test_batch_shapes_and_errors():
    x = torch.randn(2, 24, 6)
    assert rot6d_to_rotmat(x).shape == (2, 24, 3, 3)
    assert torch.allclose(rot6d_to_rotmat(x).reshape(-1, 3, 3), rot6d_to_rotmat(x.reshape(-1, 6)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        rot6d_to_rotmat(torch.zeros(2, 144))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        rotmat_to_rot6d(torch.zeros(2, 9))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        axis_angle_to_rotmat(torch.zeros(2, 72))


def test_gradients_flow_and_degenerate_input_is_finite():
    x = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rot6d_to_rotmat, (x,))
    assert torch.isfinite(rot6d_to_rotmat(torch.zeros(1, 6))).all()
