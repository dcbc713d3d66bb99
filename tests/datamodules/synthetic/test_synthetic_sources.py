"""Each synthetic source keeps exactly the annotations of the real data set it mirrors; eval sets keep all."""
from __future__ import annotations

import json

import numpy as np
import pytest

from body.joints import SPIN49_NUM_OPENPOSE
from datamodules.shards import iter_shard_members
from datamodules.synthetic.annotate import keypoint_confidence
from datamodules.synthetic.dataset import FORMAT_NAME, FORMAT_VERSION, shard_counts, tasks_for
from datamodules.synthetic.sources import (COCO17_SLOTS, EVAL_SETS, H36M17_SLOTS, LSP14_SLOTS, MPII16_SLOTS,
                                           TRAIN_SOURCES, scaled_count)

EXPECTED_FLAGS = {  # (has_3d, has_smpl, has_mask), the real data sets' annotations
    "h36m": (True, True, False), "up3d": (False, True, False), "lsp": (False, False, True),
    "coco": (False, False, False), "mpii": (False, False, False),
}
EXPECTED_SLOTS = {"h36m": H36M17_SLOTS, "up3d": LSP14_SLOTS, "lsp": LSP14_SLOTS, "coco": COCO17_SLOTS,
                  "mpii": MPII16_SLOTS}


def test_slot_tables_match_spin_converters():
    assert len(H36M17_SLOTS) == 17 and 13 not in H36M17_SLOTS and {14, 16, 17, 18} <= set(H36M17_SLOTS)
    assert LSP14_SLOTS == tuple(range(14)) and MPII16_SLOTS == tuple(range(16))
    assert len(COCO17_SLOTS) == 17 and set(COCO17_SLOTS) == set(range(12)) | set(range(19, 24))
    assert set(TRAIN_SOURCES) == set(EXPECTED_FLAGS)
    assert set(EVAL_SETS) == {"3dpw", "h36m", "up3d", "lsp", "coco"}


@pytest.mark.parametrize("name", sorted(EXPECTED_FLAGS))
def test_training_sources_keep_only_their_annotations(tiny_samples, name):
    spec = TRAIN_SOURCES[name]
    assert (spec.has_3d, spec.has_smpl, spec.has_mask) == EXPECTED_FLAGS[name]
    slots = set(EXPECTED_SLOTS[name])
    fractions = []
    for s in tiny_samples[("train", name)]:
        assert (s.has_3d, s.has_smpl, s.has_mask) == EXPECTED_FLAGS[name]
        assert s.source == name and s.gender == "neutral" and s.vertices is None
        assert s.camera is not None and s.center is not None and s.scale > 0
        conf = s.keypoints_2d[:, 2]
        assert not conf[:SPIN49_NUM_OPENPOSE].any() and not s.keypoints_2d[:SPIN49_NUM_OPENPOSE].any()
        labelled = {j for j in range(24) if conf[SPIN49_NUM_OPENPOSE + j] > 0}
        assert labelled <= slots and labelled
        fractions.append(len(labelled) / len(slots))
        assert set(np.unique(conf)) <= {0.0, 1.0}
        if not s.has_smpl:
            assert not s.pose.any() and not s.betas.any()
        else:
            assert s.pose.any()
        if s.has_3d:
            assert {j for j in range(24) if s.joints_3d[j, 3] > 0} == set(H36M17_SLOTS)
            assert not s.joints_3d[13].any()
        else:
            assert not s.joints_3d.any()
        if s.has_mask:
            assert s.mask.shape == (320, 320) and set(np.unique(s.mask)) <= set(range(7))
            assert (s.mask > 0).sum() > 1000
        else:
            assert s.mask is None
        det = s.bigraph_joints_2d
        assert det.shape == (12, 3) and (det[:, 2] > 0).all() and (det[:, 2] <= 1).all()
    assert np.mean(fractions) > 0.7  # few joints leave the crop (truncation) or are dropped (coco)


@pytest.mark.parametrize("name", sorted(EVAL_SETS))
def test_evaluation_sets_have_full_ground_truth(tiny_samples, name):
    for s in tiny_samples[("eval", name)]:
        assert s.has_3d and s.has_smpl and s.has_mask and s.source == name
        assert (s.joints_3d[:, 3] == 1).all() and s.vertices.shape == (6890, 3)
        assert s.mask is not None and set(np.unique(s.mask)) >= {0, 1, 2}
        kp = s.keypoints_2d
        inside = ((kp[:, :2] >= 0) & (kp[:, :2] < 320)).all(1) & (kp[:, 2] > 0)
        assert inside.sum() == (kp[:, 2] > 0).sum() >= 40  # every visible keypoint, OpenPose part included
        assert s.camera["focal_length"][0] == s.camera["focal_length"][1]


def test_coco_drops_about_ten_percent_of_its_joints():
    rng = np.random.default_rng(0)
    spec = TRAIN_SOURCES["coco"]
    visible = np.ones(49, dtype=bool)
    conf = np.stack([keypoint_confidence(spec, visible, rng) for _ in range(2000)])
    kept = conf[:, [SPIN49_NUM_OPENPOSE + j for j in COCO17_SLOTS]].mean()
    assert abs(kept - 0.9) < 0.01
    assert not conf[:, [SPIN49_NUM_OPENPOSE + j for j in (12, 13, 14, 15, 16, 17, 18)]].any()
    assert (keypoint_confidence(TRAIN_SOURCES["mpii"], visible, rng)[25:41] == 1).all()


def test_manifest_lists_every_shard_with_its_count(tiny_data):
    out, manifest = tiny_data
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (manifest["format"], manifest["version"], manifest["seed"], manifest["size"], manifest["asset_set"]) == \
        (FORMAT_NAME, FORMAT_VERSION, 0, 0.01, "open")
    for split, specs in (("train", TRAIN_SOURCES), ("eval", EVAL_SETS)):
        assert set(manifest[split]) == set(specs)
        for name, entry in manifest[split].items():
            assert entry["count"] == scaled_count(specs[name], 0.01) == sum(entry["shard_counts"])
            assert all(p.startswith(f"{split}/{name}/{name}-") and p.endswith(".tar") for p in entry["shards"])
            for path, n in zip(entry["shards"], entry["shard_counts"]):
                assert sum(1 for _ in iter_shard_members(str(out / path))) == n


def test_default_sizes_cut_into_two_shards_per_training_source():
    assert scaled_count(TRAIN_SOURCES["h36m"], 1.0) == 1000 and scaled_count(EVAL_SETS["3dpw"], 1.0) == 100
    assert shard_counts(1000) == [500, 500] and shard_counts(100) == [100] and shard_counts(501) == [500, 1]
    assert scaled_count(EVAL_SETS["lsp"], 0.001) == 1  # never empty
    tasks = tasks_for(TRAIN_SOURCES["lsp"], 40)
    assert [(t.start, t.count) for t in tasks] == [(0, 16), (16, 16), (32, 8)]
