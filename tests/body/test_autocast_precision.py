"""Under bf16 autocast (``trainer.precision=bf16-mixed``) the body model still poses the body in its own
dtype: its outputs equal the float32 computation on the same inputs, bf16 inputs included (they are
widened, not the model narrowed)."""
from __future__ import annotations

import pytest
import torch

from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel.from_config("open")


def _inputs(batch: int = 3):
    g = torch.Generator().manual_seed(7)
    betas = torch.randn(batch, 10, generator=g)
    rotmats = axis_angle_to_rotmat(0.4 * torch.randn(batch, 24, 3, generator=g))
    return betas, rotmats


def _everything(model: BodyModel, betas, rotmats) -> dict[str, torch.Tensor]:
    out = model(betas, rotmats[:, 1:], rotmats[:, :1])
    return {"vertices": out.vertices, "keypoints49": out.keypoints49, "h36m17": model.h36m17(out.vertices),
            "regressed49": model.keypoints49_from_vertices(out.vertices), "rest_joints": model.rest_joints(betas),
            "level2": model.downsampled_skinning(2)(betas, rotmats)}


def _assert_same_float32(got: dict, want: dict) -> None:
    for name in want:
        assert got[name].dtype == torch.float32, name
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)


def test_bf16_autocast_does_not_touch_the_body_model(model):
    betas, rotmats = _inputs()
    want = _everything(model, betas, rotmats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _everything(model, betas, rotmats)
    _assert_same_float32(got, want)


def test_bf16_inputs_are_widened_not_the_model_narrowed(model):
    """A head under autocast may hand the body bf16 parameters: the result is the float32 computation on
    those (rounded) values, not a bf16 computation (which is millimetres off)."""
    betas, rotmats = _inputs()
    b16, r16 = betas.bfloat16(), rotmats.bfloat16()
    want = _everything(model, b16.float(), r16.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _everything(model, b16, r16)
    _assert_same_float32(got, want)


def test_float64_model_stays_float64_under_autocast(model):
    m64 = BodyModel.from_config("open").double()
    betas, rotmats = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _everything(m64, betas.double(), rotmats.double())
    want = _everything(m64, betas.double(), rotmats.double())
    for name in want:
        assert got[name].dtype == torch.float64, name
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
