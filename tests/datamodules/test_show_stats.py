"""make show-data and make data-stats: the mesh overlay sits on the body; the stats count what was drawn."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from body.camera import normalized_to_pixels
from cli.show_data import data_grid, mesh_layer, source_batch
from datamodules.mixed import MixedDataModule
from datamodules.shards import write_shards
from datamodules.stats import draw_stats

from .conftest import camera_sample

SOURCES = ("h36m", "up3d", "lsp", "coco")


@pytest.fixture(scope="module")
def root(tmp_path_factory, body_model) -> Path:
    root = tmp_path_factory.mktemp("showdata")
    for k, src in enumerate(SOURCES):
        samples = []
        for i in range(8):
            s = camera_sample(body_model, 1000 * k + i, source=src, mask=src == "lsp")
            if src == "up3d":
                s = dataclasses.replace(s, has_3d=False)      # SMPL fit, no 3D joints
            if src == "coco":
                s = dataclasses.replace(s, has_smpl=False, has_3d=False)
            samples.append(dataclasses.replace(s, key=f"{src}_{i:03d}"))
        write_shards(samples, str(root / "train" / src / f"{src}-%06d.tar"), max_count=4)
    return root


def cfg(root: Path) -> dict:
    return {"root": str(root), "batch_size": 8, "num_workers": 0, "seed": 3,
            "train": {"sources": {s: {"shards": f"train/{s}/*.tar", "weight": 1.0} for s in SOURCES}}}


@pytest.mark.parametrize("source", ["h36m", "up3d"])
def test_mesh_overlay_covers_the_body_keypoints(root, body_model, source):
    """Placed with 3D joints (h36m) or with a translation fitted to the 2D keypoints (up3d)."""
    dm = MixedDataModule(cfg(root), rank=0, world_size=1)
    batch = source_batch(dm, source, 4)
    rgb, alpha = mesh_layer(body_model, batch, dm.img_res)
    kp = normalized_to_pixels(batch["keypoints_2d"][:, 25:, :2], dm.img_res)
    for i in range(4):
        for j in (2, 3, 14):  # right hip, left hip, pelvis: inside the body's silhouette
            x, y = kp[i, j].floor().long().tolist()
            if 0 <= x < dm.img_res and 0 <= y < dm.img_res:
                assert alpha[i, 0, y, x] == 1.0, (i, j)
    assert alpha.mean() > 0.02


def test_no_mesh_without_smpl(root, body_model):
    dm = MixedDataModule(cfg(root), rank=0, world_size=1)
    rgb, alpha = mesh_layer(body_model, source_batch(dm, "coco", 4), dm.img_res)
    assert alpha.sum() == 0


def test_grid_has_one_row_per_source(root, body_model):
    dm = MixedDataModule(cfg(root), rank=0, world_size=1)
    grid = data_grid(dm, body_model, 3)
    assert grid.shape == (len(SOURCES) * (18 + 224), 3 * 224, 3) and grid.dtype == np.uint8


def test_stats_count_every_draw(root):
    dm = MixedDataModule(cfg(root), rank=0, world_size=1)
    stats = draw_stats(dm, 400)
    assert stats["draws"] == 400 and stats["batches"] == 50
    assert sum(s["count"] for s in stats["sources"].values()) == 400
    assert all(abs(s["share"] - 0.25) < 0.08 for s in stats["sources"].values())
    assert stats["max_abs_diff_points"] == max(abs(s["diff_points"]) for s in stats["sources"].values())
    assert stats["skipped"] == 0
    torch.testing.assert_close(sum(s["weight"] for s in stats["sources"].values()), 1.0)
