"""The validation overlays: the mesh drawn where the protocols project it, on the input, and a side view."""
from __future__ import annotations

import torch

from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat
from callbacks.overlays import MESH_COLOUR, overlay_grid
from cli import train

RES = 224


def oracle_in_crop_camera(batch, body):
    """The ground-truth mesh expressed for the networks' crop camera (f = 5000 px at the crop centre) by the
    projective change of tests/lightning_modules/test_evaluate.py, with a camera (s huge, 0, 0) that adds no
    translation: what a perfect model would predict."""
    rotmat = axis_angle_to_rotmat(batch["pose"].reshape(-1, 24, 3))
    with torch.no_grad():
        verts = body(batch["betas"], rotmat[:, 1:], rotmat[:, :1]).vertices + batch["transl"][:, None]
    f, p = batch["focal_length"][:, None], batch["principal_point"][:, None]
    c = 5000.0 / f[..., :1]
    xy = (f * verts[..., :2] + (p - RES / 2) * verts[..., 2:]) * c / 5000.0
    return torch.cat([xy, verts[..., 2:] * c], dim=-1), torch.tensor([1e6, 0.0, 0.0]).expand(len(verts), 3)


def test_a_perfect_prediction_covers_the_person(tiny_data_module, tmp_path):
    body = BodyModel.from_config("open")
    batch = next(iter(tiny_data_module.eval_dataloader("3dpw")))
    keep = batch["has_smpl"].bool() & batch["has_mask"].bool()
    assert keep.any()
    batch = {k: v[keep] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    vertices, cam = oracle_in_crop_camera(batch, body)
    grid = torch.from_numpy(overlay_grid(batch["img"], vertices, cam, body.faces, RES)).float()
    n = len(vertices)
    cells = grid.reshape(n, RES, 3, RES, 3)
    photo, drawn, side = cells[:, :, 0], cells[:, :, 1], cells[:, :, 2]
    torch.testing.assert_close(photo, batch["img"].permute(0, 2, 3, 1).float(), rtol=0, atol=0)   # the input as is
    covered = (drawn - photo).abs().sum(-1) > 1.0                                               # where the mesh is
    person = (batch["mask"] > 0) & (batch["mask"] != 255)
    iou = (covered & person).sum((1, 2)).float() / (covered | person).sum((1, 2)).float()
    assert bool((iou > 0.85).all()), iou
    white = (side == 255).all(-1)
    assert bool(((~white).float().mean((1, 2)) > 0.01).all())                                    # a figure is there
    bluish = side[~white]
    assert bool((bluish[:, 2] >= bluish[:, 0]).float().mean() > 0.9) and MESH_COLOUR[2] > MESH_COLOUR[0]


def test_training_writes_an_overlay_after_each_validation(tiny_data_module, tmp_path):
    summary = train.main(["model=hmr", "model.backbone.width=8", f"data.root={tiny_data_module.root}",
                          "data.batch_size=4", "data.eval_batch_size=4", "data.num_workers=0",
                          "data.train.epoch_samples=4", "trainer.max_epochs=2", "trainer.limit_val_batches=1",
                          f"out_dir={tmp_path}"])
    from PIL import Image
    written = sorted((tmp_path / "hmr-synthetic-s0" / "overlays").glob("*.png"))
    assert [p.name for p in written] == ["epoch-000.png", "epoch-001.png"] and summary["run_dir"]
    assert Image.open(written[0]).size == (3 * 224, 224)   # one sample in the tiny 3DPW set: one row
