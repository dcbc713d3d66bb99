"""SPIN-format converters: a round trip per dataset (every field vs the input npz), skips and errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from body.model import BodyModel
from datamodules.convert.datasets import DATASET_NAMES, DATASETS
from datamodules.sample import person_crop_affine, safe_key
from datamodules.shards import read_shard
from runtime.errors import UserError
from tests.datamodules.spin_fixtures import (CROP, H36M17_TO_J24_BY_HAND, J24_TO_BIGRAPH12_BY_HAND,
                                             OPENPOSE25_TO_BIGRAPH12_BY_HAND, blob_source, brightness_centroid,
                                             expected_crop_xy, make_spin_file, run, shard_paths)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def open_body():
    return BodyModel.from_config("open").eval()


def expected_keypoints(d: dict, i: int, key: str, scale: float) -> np.ndarray:
    """The npz keypoints of row i in crop pixels, computed from the SPIN convention by hand."""
    kp = np.array(d[key][i], dtype=np.float64)
    kp[:, 2] = np.clip(kp[:, 2], 0, 1)
    out = np.zeros_like(kp)
    vis = kp[:, 2] > 0
    out[vis, :2] = expected_crop_xy(kp[vis, :2], d["center"][i], scale, CROP)
    out[vis, 2] = kp[vis, 2]
    return out


@pytest.mark.parametrize("dataset,scale", [(d, 0.9 if d in ("coco", "h36m", "up3d") else 0.6) for d in DATASET_NAMES])
def test_round_trip_every_field(tmp_path, dataset, scale, open_body):
    d = make_spin_file(tmp_path, dataset, n=4, scale=scale)
    report, samples = run(tmp_path, dataset)
    n = len(d["imgname"])
    assert report["written"] == n and report["skipped"]["count"] == 0 and len(samples) == n
    assert report["dataset"] == dataset and report["source_npz"] == str(tmp_path / f"{dataset}.npz")
    assert (tmp_path / "out" / "convert_report.json").exists()
    assert report["quirks"] == list(DATASETS[dataset].quirks)
    for i, s in enumerate(samples):
        # Identity, bookkeeping.
        assert s.key == safe_key(f"{dataset}_{i:08d}_{d['imgname'][i]}") and s.key.startswith(f"{dataset}_{i:08d}_sub_dir")
        assert s.source == dataset and s.crop_size == (CROP, CROP) and s.crop_context == 1.5
        assert s.image_size.tolist() == [240, 180]
        np.testing.assert_allclose(s.center, d["center"][i], rtol=1e-6)
        assert s.scale == pytest.approx(scale)
        np.testing.assert_allclose(s.crop_to_image, person_crop_affine(d["center"][i], scale, CROP), rtol=1e-6)
        # 2D keypoints: OpenPose first, then the 24 ground-truth joints.
        op = expected_keypoints(d, i, "openpose", scale) if "openpose" in d else np.zeros((25, 3))
        gt = expected_keypoints(d, i, "part", scale) if "part" in d else np.zeros((24, 3))
        np.testing.assert_allclose(s.keypoints_2d, np.concatenate([op, gt]), atol=2e-3)
        # The pixel content: the blob of this row sits where its keypoint was converted to.
        src, j = blob_source(d, i)
        if src is not None:
            kp = s.keypoints_2d[j if src == "openpose" else 25 + j]
            np.testing.assert_allclose(brightness_centroid(s.image), kp[:2], atol=0.35 if scale < 0.8 else 0.5)
        # BiGraph joints: OpenPose detections when the file has them, else none (never the ground truth).
        if "openpose" in d and op[OPENPOSE25_TO_BIGRAPH12_BY_HAND, 2].any():
            np.testing.assert_allclose(s.bigraph_joints_2d, op[OPENPOSE25_TO_BIGRAPH12_BY_HAND], atol=2e-3)
            assert report["bigraph_joints_2d_from"].startswith("OpenPose") and s.bigraph_joints_from == "openpose_npz"
        else:
            assert not s.bigraph_joints_2d.any() and s.bigraph_joints_from == "none"
            if "openpose" not in d:
                assert report["bigraph_joints_2d_from"].startswith("nothing")
        # SMPL.
        if "pose" in d:
            np.testing.assert_array_equal(s.pose, d["pose"][i].astype(np.float32))
            np.testing.assert_array_equal(s.betas, d["shape"][i].astype(np.float32))
            assert s.has_smpl is (bool(d["has_smpl"][i]) if "has_smpl" in d else True)
        else:
            assert not s.has_smpl and not s.pose.any()
        # 3D joints (metres) and vertices.
        if "S" in d:
            np.testing.assert_array_equal(s.joints_3d, d["S"][i].astype(np.float32))
            assert s.has_3d
        elif dataset == "3dpw":
            pose = torch.tensor(d["pose"][i:i + 1], dtype=torch.float32)
            out = open_body(torch.tensor(d["shape"][i:i + 1], dtype=torch.float32), pose[:, 3:], pose[:, :3])
            np.testing.assert_allclose(s.vertices, out.vertices[0].numpy(), atol=1e-5)
            j17 = open_body.h36m17(out.vertices)[0].numpy()
            expect = np.zeros((24, 4), np.float32)
            expect[H36M17_TO_J24_BY_HAND, :3] = j17 - j17[0]
            expect[H36M17_TO_J24_BY_HAND, 3] = 1
            np.testing.assert_allclose(s.joints_3d, expect, atol=1e-5)
            assert s.has_3d
        else:
            assert not s.has_3d and not s.joints_3d.any()
        if dataset != "3dpw":
            assert s.vertices is None
        # Gender.
        expected_gender = {"m": "male", "f": "female"}.get(str(d["gender"][i]), "neutral") if "gender" in d else "neutral"
        assert s.gender == expected_gender
        # Masks.
        assert s.has_mask is ("partname" in d or "maskname" in d)
        if s.has_mask:
            assert s.mask.shape == (CROP, CROP) and set(np.unique(s.mask)) <= {0, 1, 2, 3, 4, 5, 6, 255}


@pytest.mark.parametrize("dataset", ["coco", "lspet"])
def test_pixel_index_convention_to_a_tenth_of_a_pixel(tmp_path, dataset):
    """Upsampled crop (1 original px = 1.3 crop px): SPIN's pixel-index keypoints land on the pixel content,
    which a half-pixel slip (0.64 crop px here) would miss."""
    d = make_spin_file(tmp_path, dataset, n=6, scale=0.25)
    _, samples = run(tmp_path, dataset)
    for i, s in enumerate(samples):
        src, j = blob_source(d, i)
        kp = s.keypoints_2d[j if src == "openpose" else 25 + j]
        np.testing.assert_allclose(brightness_centroid(s.image), kp[:2], atol=0.15)


def test_openpose_and_part_index_maps_with_distinct_coordinates(tmp_path):
    d = make_spin_file(tmp_path, "coco", n=1, scale=1.0)
    d["part"][0] = np.stack([100.0 + np.arange(24), 50.0 + 2 * np.arange(24), np.ones(24)], 1)
    d["openpose"][0] = np.stack([60.0 + np.arange(25), 30.0 + 3 * np.arange(25), np.linspace(0.04, 1, 25)], 1)
    np.savez(tmp_path / "coco.npz", **d)
    _, (s,) = run(tmp_path, "coco")
    k = 1.5 * 200 / CROP
    orig = s.keypoints_2d[:, :2] * k + (d["center"][0] - k * CROP / 2) - 0.5  # back to SPIN pixel indices
    np.testing.assert_allclose(orig[25:], d["part"][0, :, :2], atol=1e-3)
    np.testing.assert_allclose(orig[:25], d["openpose"][0, :, :2], atol=1e-3)
    np.testing.assert_allclose(s.keypoints_2d[:25, 2], np.linspace(0.04, 1, 25), atol=1e-6)  # confidences kept
    bg = s.bigraph_joints_2d[:, :2] * k + (d["center"][0] - k * CROP / 2) - 0.5
    # OpenPose left shoulder is OP joint 5 = (65, 45); BiGraph's first joint is the left shoulder.
    np.testing.assert_allclose(bg[0], [65, 45], atol=1e-3)
    np.testing.assert_allclose(bg, d["openpose"][0, OPENPOSE25_TO_BIGRAPH12_BY_HAND, :2], atol=1e-3)
    # Without openpose, the ground truth on request only: left shoulder is J24 slot 9 = (109, 68).
    del d["openpose"]
    np.savez(tmp_path / "coco.npz", **d)
    _, (s,) = run(tmp_path, "coco", overwrite=True)
    assert not s.bigraph_joints_2d.any() and s.bigraph_joints_from == "none"
    _, (s,) = run(tmp_path, "coco", overwrite=True, detections="ground-truth")
    assert s.bigraph_joints_from == "ground_truth"
    bg = s.bigraph_joints_2d[:, :2] * k + (d["center"][0] - k * CROP / 2) - 0.5
    np.testing.assert_allclose(bg[0], [109, 68], atol=1e-3)
    np.testing.assert_allclose(bg, d["part"][0, J24_TO_BIGRAPH12_BY_HAND, :2], atol=1e-3)
    assert not s.keypoints_2d[:25].any()


def test_missing_and_unreadable_images_are_skipped_counted_and_reported(tmp_path, capsys):
    d = make_spin_file(tmp_path, "mpii", n=5)
    (tmp_path / "images" / str(d["imgname"][1])).unlink()
    (tmp_path / "images" / str(d["imgname"][3])).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    from cli.convert import main

    report = main(["mpii", "--npz", str(tmp_path / "mpii.npz"), "--images", str(tmp_path / "images"),
                   "--out", str(tmp_path / "out"), "--crop-size", "64", "--shard-size", "2"])
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("mpii (train): wrote 3 samples to 2 shard(s)")
    assert "image: missing file x1" in line and "image: unreadable x1" in line
    assert report["written"] == 3 and report["skipped"]["count"] == 2
    assert report["skipped"]["reasons"] == {"image: missing file": 1, "image: unreadable": 1}
    on_disk = json.loads((tmp_path / "out" / "convert_report.json").read_text())
    assert on_disk["skipped"] == report["skipped"] and on_disk["shards"] == ["mpii-000000.tar", "mpii-000001.tar"]
    keys = [s.key for p in shard_paths(tmp_path / "out", "mpii") for s in read_shard(p)]
    assert [int(k.split("_")[1]) for k in keys] == [0, 2, 4]


def test_limit_and_overwrite(tmp_path):
    make_spin_file(tmp_path, "lspet", n=5)
    report, samples = run(tmp_path, "lspet", limit=2)
    assert report["rows_considered"] == 2 and len(samples) == 2 and report["npz_rows"] == 5
    with pytest.raises(UserError, match="already holds 1 lspet-\\*.tar shard"):
        run(tmp_path, "lspet")
    report, samples = run(tmp_path, "lspet", overwrite=True, shard_size=2)
    assert len(samples) == 5 and len(report["shards"]) == 3


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_missing_key_names_the_keys_and_the_dataset(tmp_path, dataset):
    d = make_spin_file(tmp_path, dataset, n=2)
    split = "test" if dataset == "lsp" else "train"
    required = DATASETS[dataset].required_keys(split)
    drop = required[-1]
    np.savez(tmp_path / f"{dataset}.npz", **{k: v for k, v in d.items() if k != drop})
    with pytest.raises(UserError) as info:
        run(tmp_path, dataset)
    msg = str(info.value)
    assert "\n" not in msg and f"{dataset} npz" in msg and f"lacks key(s) {drop}" in msg
    assert ", ".join(required) in msg  # the expected keys


def test_wrong_dataset_says_what_is_missing(tmp_path):
    make_spin_file(tmp_path, "coco", n=2)
    (tmp_path / "coco.npz").rename(tmp_path / "h36m.npz")
    with pytest.raises(UserError, match=r"h36m npz .* lacks key\(s\) S: .* is this the right file"):
        run(tmp_path, "h36m")


def test_cli_user_error_is_one_line_with_exit_status_2(tmp_path):
    make_spin_file(tmp_path, "h36m", n=1, s_factor=1000.0)
    proc = subprocess.run([sys.executable, "-m", "cli.convert", "h36m", "--npz", str(tmp_path / "h36m.npz"),
                           "--images", str(tmp_path / "images"), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: h36m npz")
    assert "looks like millimetres" in proc.stderr and "--s-units mm" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written
