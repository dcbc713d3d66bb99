"""Validation protocol of the shared base: mesh ground truth (3DPW-like) and joints-only ground truth (H36M P1/P2)."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from body.joints import J24_PELVIS, J24_TO_LSP14
from lightning_modules.registry import model_class
from metrics.functional import mpjpe, pa_mpjpe


@pytest.fixture(scope="module")
def hmr_and_batch(tiny_data_module):
    dm = tiny_data_module
    batch = next(iter(dm.val_dataloader()[dm.eval_names.index("h36m")]))
    assert batch["has_smpl"].all()
    model_cfg = OmegaConf.to_container(OmegaConf.load("configs/model/hmr.yaml"))
    model_cfg["backbone"]["width"] = 8
    torch.manual_seed(0)
    model = model_class("hmr")(model=model_cfg, optim=model_cfg["optim"], eval_sets=["3dpw", "h36m"]).eval()
    return model, batch


def computed(evaluator) -> dict[str, float]:
    """The row's columns that have a value (the per-iteration errors left out)."""
    return {k: v for k, v in evaluator.row()["columns"].items() if v is not None}


def test_joints_only_ground_truth_gives_the_mesh_protocol_values(hmr_and_batch):
    """H36M-style ground truth (LSP-14 joints + pelvis, no SMPL) equal to the ground-truth mesh's H36M-regressed
    joints must give the same MPJPE / PA-MPJPE as the mesh path, and no PVE."""
    model, batch = hmr_and_batch
    with torch.no_grad():
        out = model(batch)
        model.evaluators[0].update(batch, out)
        h36m = model.body.h36m17(model.decoder.ground_truth_mesh(batch)["vertices"])
        lsp = h36m[:, [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]]   # H36M -> LSP-14, written out here
        joints_only = dict(batch)
        j = torch.zeros_like(batch["joints_3d"])
        j[:, J24_TO_LSP14, :3] = lsp + 0.25        # an offset that the pelvis centring must remove
        j[:, J24_PELVIS, :3] = h36m[:, 0] + 0.25
        j[:, J24_TO_LSP14 + [J24_PELVIS], 3] = 1.0
        joints_only.update(joints_3d=j, has_smpl=torch.zeros_like(batch["has_smpl"]),
                           has_3d=torch.ones_like(batch["has_3d"]))
        model.evaluators[1].update(joints_only, out)
        # independent: pelvis-centred LSP-14 of the prediction's H36M joints vs the same of the ground truth
        pred_h36m = model.body.h36m17(model.decoder.final(out)["vertices"])
        pred = pred_h36m[:, [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]] - pred_h36m[:, :1]
        target = lsp - h36m[:, :1]
    mesh_path, joints_path = computed(model.evaluators[0]), computed(model.evaluators[1])
    assert set(mesh_path) == {"mpjpe", "pa_mpjpe", "pve"} and set(joints_path) == {"mpjpe", "pa_mpjpe"}
    for key in ("mpjpe", "pa_mpjpe"):
        assert joints_path[key] == pytest.approx(mesh_path[key], rel=1e-5), key
    assert mesh_path["mpjpe"] == pytest.approx(float(mpjpe(pred, target).mean()), rel=1e-5)
    assert mesh_path["pa_mpjpe"] == pytest.approx(float(pa_mpjpe(pred, target).mean()), rel=1e-5)
    assert 10.0 < mesh_path["pa_mpjpe"] < mesh_path["mpjpe"]   # an untrained net: far off, millimetres
    for evaluator in model.evaluators:
        evaluator.reset()


def test_samples_without_3d_ground_truth_or_with_missing_joints_are_skipped(hmr_and_batch):
    model, batch = hmr_and_batch
    partial = dict(batch)
    j = batch["joints_3d"].clone()
    j[:, J24_PELVIS, 3] = 0.0                      # no pelvis: cannot be centred as the protocol says
    partial.update(joints_3d=j, has_smpl=torch.zeros_like(batch["has_smpl"]),
                   has_vertices=torch.zeros_like(batch["has_smpl"]))   # no ground-truth mesh either
    with torch.no_grad():
        model.evaluators[0].update(partial, model(batch))
    row = model.evaluators[0].row()
    assert row["samples"] == batch["img"].shape[0] and row["evaluated"] == 0
    assert all(v is None for v in row["columns"].values()) and "per_iteration" not in row
    model.evaluators[0].reset()
