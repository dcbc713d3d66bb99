"""Skinning the down-sampled mesh directly equals down-sampling the full mesh (the hierarchy selects vertices)."""
from __future__ import annotations

import copy

import pytest
import torch

from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat
from lightning_modules.nets.downsampled_body import DownsampledBody, vertex_subset


@pytest.fixture(scope="module")
def body_model():
    model = BodyModel.from_config("open")
    # The open model has no pose blend shapes; give it some so the test covers that term as SMPL needs it.
    model = copy.deepcopy(model)
    torch.manual_seed(0)
    with torch.no_grad():
        model.smpl.posedirs.normal_(0.0, 1e-3)
    return model


def _pose(batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    betas = torch.randn(batch, 10, generator=g)
    rotmats = axis_angle_to_rotmat(0.6 * torch.randn(batch, 24, 3, generator=g))
    return betas, rotmats


def test_vertex_subset_is_the_hierarchy_selection(body_model):
    idx = vertex_subset(body_model.hierarchy, 2)
    assert idx.shape == (body_model.hierarchy.num_vertices[2],) == (431,)
    assert idx.unique().numel() == 431
    v = torch.randn(1, body_model.num_vertices, 3)
    assert torch.equal(body_model.hierarchy.downsample(v, 0, 2)[0], v[0, idx])


@pytest.mark.parametrize("level", [1, 2])
def test_downsampled_skinning_equals_full_forward_then_downsampling(body_model, level):
    sub = DownsampledBody(body_model, level)
    betas, rotmats = _pose(8, level)
    full = body_model(betas, rotmats[:, 1:], rotmats[:, :1]).vertices
    ref = body_model.hierarchy.downsample(full, 0, level)
    out = sub(betas, rotmats)
    assert out.shape == ref.shape == (8, body_model.hierarchy.num_vertices[level], 3)
    # float32 summation order only (measured ~3e-7 m on bodies of ~1.7 m).
    assert (out - ref).abs().max() < 2e-6
    # In float64 the two agree to rounding.
    sub64, model64 = copy.deepcopy(sub).double(), copy.deepcopy(body_model).double()
    ref64 = model64.hierarchy.downsample(model64(betas.double(), rotmats[:, 1:].double(),
                                                 rotmats[:, :1].double()).vertices, 0, level)
    assert (sub64(betas.double(), rotmats.double()) - ref64).abs().max() < 1e-7


def test_downsampled_body_keeps_no_state_and_checks_shapes(body_model):
    sub = DownsampledBody(body_model, 2)
    assert sub.state_dict() == {}
    with pytest.raises(ValueError):
        sub(torch.zeros(1, 10), torch.eye(3).expand(1, 23, 3, 3))
