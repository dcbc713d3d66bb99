"""SMPL parameter regressor: SO(3) projections, shapes, mean-parameter start."""
from __future__ import annotations

import pytest
import torch

from body.rotations import axis_angle_to_rotmat
from lightning_modules.nets.smpl_regressor import SMPLParamRegressor, rotmat_from_6d, rotmat_from_svd


def assert_rotations(r: torch.Tensor, atol: float = 1e-5) -> None:
    eye = torch.eye(3, dtype=r.dtype).expand_as(r)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, rtol=0, atol=atol)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(r.shape[:-2], dtype=r.dtype), rtol=0, atol=atol)


def test_projections_return_rotations():
    gen = torch.Generator().manual_seed(0)
    assert_rotations(rotmat_from_6d(torch.randn(50, 6, generator=gen)))
    assert_rotations(rotmat_from_svd(torch.randn(50, 9, generator=gen)))
    # Reflections (det -1 inputs) are mapped to proper rotations too.
    assert_rotations(rotmat_from_svd(-torch.eye(3).reshape(1, 9) + 0.01 * torch.randn(1, 9, generator=gen)))


def test_projections_keep_rotations():
    r = axis_angle_to_rotmat(torch.randn(10, 3, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(rotmat_from_svd(r.reshape(10, 9)), r, rtol=0, atol=1e-5)
    torch.testing.assert_close(rotmat_from_6d(r[..., :, :2].reshape(10, 6)), r, rtol=0, atol=1e-6)


@pytest.mark.parametrize("rotation", ["6d", "svd"])
def test_regressor_outputs_and_mean_start(rotation):
    gen = torch.Generator().manual_seed(2)
    template = torch.randn(20, 3, generator=gen)
    mean_pose = axis_angle_to_rotmat(0.3 * torch.randn(24, 3, generator=gen))
    mean_shape = torch.randn(10, generator=gen)
    reg = SMPLParamRegressor(template, mean_pose, mean_shape, hidden=32, rotation=rotation)
    assert reg.fc_in.in_features == 20 * 6
    verts = torch.randn(4, 20, 3, generator=gen, requires_grad=True)
    rotmat, betas = reg(verts)
    assert rotmat.shape == (4, 24, 3, 3) and betas.shape == (4, 10)
    assert_rotations(rotmat)
    (rotmat.sum() + betas.sum()).backward()
    assert verts.grad is not None and verts.grad.abs().sum() > 0
    # With the last weights zeroed the output is exactly the mean parameters.
    torch.nn.init.zeros_(reg.fc_out.weight)
    rotmat, betas = reg.eval()(verts)
    torch.testing.assert_close(rotmat, mean_pose.expand(4, -1, -1, -1), rtol=0, atol=1e-5)
    torch.testing.assert_close(betas, mean_shape.expand(4, -1))


def test_regressor_rejects_unknown_rotation():
    with pytest.raises(ValueError, match="rotation"):
        SMPLParamRegressor(torch.zeros(3, 3), torch.eye(3).expand(24, 3, 3), torch.zeros(10), rotation="quat")
