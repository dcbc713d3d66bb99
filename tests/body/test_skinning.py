"""Skinning the down-sampled mesh directly (``BodyModel.downsampled_skinning``) equals down-sampling the full
mesh (the hierarchy selects vertices): to float32 rounding, and in float64 to 1e-12 whether the body model was
built in float64 or converted after construction."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat
from body.skinning import DownsampledSkinning

F64_ATOL = 1e-12


@pytest.fixture(scope="module")
def body_model(assets):
    # The open model has no pose blend shapes; give it some so the test covers that term as SMPL needs it.
    posedirs = np.random.default_rng(0).normal(0.0, 1e-3, (assets.num_vertices, 3, 207)).astype(np.float32)
    return BodyModel(dataclasses.replace(assets, posedirs=posedirs))


def _pose(batch: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    betas = torch.randn(batch, 10, generator=g, dtype=torch.float64)
    rotmats = axis_angle_to_rotmat(0.6 * torch.randn(batch, 24, 3, generator=g, dtype=torch.float64))
    return betas.to(dtype), rotmats.to(dtype)


def _reference(model: BodyModel, betas, rotmats, level: int) -> torch.Tensor:
    """Full forward, then the hierarchy's down-sampling: (B, V_level, 3)."""
    full = model(betas, rotmats[:, 1:], rotmats[:, :1]).vertices
    return model.mesh_hierarchy.downsample(full, 0, level)


def test_vertex_index_is_the_hierarchy_selection(body_model):
    h = body_model.mesh_hierarchy
    idx = h.vertex_index(2)
    assert idx.shape == (h.num_vertices[2],) == (431,)
    assert idx.unique().numel() == 431
    v = torch.randn(1, body_model.num_vertices, 3)
    assert torch.equal(h.downsample(v, 0, 2)[0], v[0, idx])
    assert torch.equal(body_model.downsampled_skinning(2).vertex_index, idx)


@pytest.mark.parametrize("level", [1, 2])
def test_downsampled_skinning_equals_full_forward_then_downsampling(body_model, level):
    sub = body_model.downsampled_skinning(level)
    assert isinstance(sub, DownsampledSkinning) and sub.v_template.dtype == torch.float32
    betas, rotmats = _pose(8, level)
    ref = _reference(body_model, betas, rotmats, level)
    out = sub(betas, rotmats)
    assert out.shape == ref.shape == (8, body_model.mesh_hierarchy.num_vertices[level], 3)
    # float32 summation order only (measured ~3e-7 m on bodies of ~1.7 m).
    assert (out - ref).abs().max() < 2e-6


@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("built", ["in_float64", "converted"])
def test_float64_downsampled_skinning_is_exact(body_model, level, built):
    """Built from a float64 body model, or built in float32 and converted with ``.double()``: the joint
    regression is summed in float64 either way, so both equal the float64 full forward to rounding."""
    model64 = copy.deepcopy(body_model).double()
    sub = model64.downsampled_skinning(level) if built == "in_float64" else body_model.downsampled_skinning(level).double()
    assert all(b.dtype == torch.float64 for b in sub.buffers() if b.is_floating_point())
    betas, rotmats = _pose(8, 10 + level, torch.float64)
    diff = (sub(betas, rotmats) - _reference(model64, betas, rotmats, level)).abs().max().item()
    print(f"float64 level {level} ({built}): max |downsampled - D(full)| = {diff:.3g} m")
    assert diff < F64_ATOL


def test_conversions_follow_the_module(body_model):
    sub = body_model.downsampled_skinning(2)
    template32 = sub.joints_template.clone()
    sub.double()
    assert sub.joints_template.dtype == sub.joints_shapedirs.dtype == torch.float64
    # summed again in float64, not the float32 values widened
    assert not torch.equal(sub.joints_template, template32.double())
    sub.to(torch.float32)
    assert sub.joints_template.dtype == torch.float32 and torch.equal(sub.joints_template, template32)
    assert sub.vertex_index.dtype == torch.long and all(isinstance(p, int) for p in sub.parents)   # a fixed tree


def test_the_kinematic_chain_equals_smplx(body_model):
    """rigid_transforms (the tree as ints, exportable) against smplx's batch_rigid_transform (the tree a tensor)."""
    from smplx.lbs import batch_rigid_transform

    from body.rotations import axis_angle_to_rotmat
    from body.skinning import rigid_transforms

    g = torch.Generator().manual_seed(0)
    rotmats = axis_angle_to_rotmat(0.6 * torch.randn(3, 24, 3, generator=g, dtype=torch.float64))
    joints = torch.randn(3, 24, 3, generator=g, dtype=torch.float64)
    parents = body_model.downsampled_skinning(2).parents
    posed, transforms = rigid_transforms(rotmats, joints, parents)
    want_posed, want = batch_rigid_transform(rotmats, joints, torch.tensor(parents), dtype=torch.float64)
    assert torch.allclose(posed, want_posed, atol=1e-12) and torch.allclose(transforms, want[..., :3, :], atol=1e-12)


def test_downsampled_skinning_keeps_no_state_and_checks_shapes(body_model):
    sub = body_model.downsampled_skinning(2)
    assert sub.state_dict() == {}
    assert sub.num_vertices == 431
    with pytest.raises(ValueError):
        sub(torch.zeros(1, 10), torch.eye(3).expand(1, 23, 3, 3))
    for level in (0, 3):
        with pytest.raises(ValueError):
            body_model.downsampled_skinning(level)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_the_exportable_forward_equals_smplx(body_model, dtype, tol):
    """BodyModel's export path (body/skinning.py's LBS, the tree as ints) against its smplx forward."""
    from body.rotations import axis_angle_to_rotmat

    model = body_model.to(dtype)
    g = torch.Generator().manual_seed(1)
    rotmats = axis_angle_to_rotmat(0.5 * torch.randn(4, 24, 3, generator=g, dtype=torch.float64)).to(dtype)
    betas = torch.randn(4, 10, generator=g, dtype=torch.float64).to(dtype)
    transl = torch.randn(4, 3, generator=g, dtype=torch.float64).to(dtype)
    try:
        want = model(betas, rotmats[:, 1:], rotmats[:, :1], transl)
        model.exportable_forward = True
        got = model(betas, rotmats[:, 1:], rotmats[:, :1], transl)
    finally:
        model.exportable_forward = False
        model.float()
    for name in ("vertices", "joints", "joints54", "keypoints49"):
        assert (getattr(got, name) - getattr(want, name)).abs().max() < tol, name
