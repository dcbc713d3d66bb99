"""``silhouette_original``, ``bigraph_joints_from``, mixed ground-truth meshes in a batch, and the start-of-run
check that a BiGraph evaluation set has detected joints (``MixedDataModule.detections_status``)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from datamodules.augment import AugmentConfig, AugmentParams, prepare_sample
from datamodules.mixed import MixedDataModule
from datamodules.shards import (SILHOUETTE_ORIGINAL_MEMBER, CorruptSampleError, decode_sample, encode_sample,
                                iter_annotations, read_shard, validate, write_shards)
from datamodules.streams import EVAL_ONLY_KEYS, UNSTACKED_KEYS, EvalStream, MixedTrainStream, SourceShards, collate
from runtime.errors import UserError
from tests.datamodules.test_eval_fields import small_sample


def with_silhouette(i: int, **kw):
    s = small_sample(i, **kw)
    return dataclasses.replace(s, silhouette_original=(s.mask_original == 0).astype(np.uint8),
                               bigraph_joints_from="coco_results:hrnet.json")


def test_silhouette_and_detection_source_round_trip(tmp_path):
    samples = [with_silhouette(i) for i in range(3)]
    members = encode_sample(samples[0], "k")
    assert SILHOUETTE_ORIGINAL_MEMBER in members and SILHOUETTE_ORIGINAL_MEMBER == "silhouette_original.png"
    back = decode_sample(members)
    assert np.array_equal(back.silhouette_original, samples[0].silhouette_original)
    assert back.bigraph_joints_from == "coco_results:hrnet.json"
    paths = write_shards(samples, str(tmp_path / "lsp-%06d.tar"))
    back = list(read_shard(paths[0]))
    assert all(np.array_equal(a.silhouette_original, b.silhouette_original) for a, b in zip(samples, back))
    annotations = list(iter_annotations(paths[0]))
    assert [k for k, _ in annotations] == ["lsp_0000", "lsp_0001", "lsp_0002"]
    assert annotations[0][1]["bigraph_joints_from"] == "coco_results:hrnet.json"


def test_a_silhouette_holds_zero_and_one_only():
    bad = dataclasses.replace(with_silhouette(1), silhouette_original=np.full((48, 64), 255, np.uint8))
    with pytest.raises(CorruptSampleError, match="silhouette_original: a silhouette holds 0 .* got 255") as err:
        validate(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(CorruptSampleError, match=r"silhouette_original: shape must be \(48, 64\)"):
        validate(dataclasses.replace(with_silhouette(1), silhouette_original=np.zeros((4, 4), np.uint8)))


def test_inputs_and_batches_keep_the_silhouette_as_a_list_and_training_drops_it(tmp_path):
    item = prepare_sample(with_silhouette(2), AugmentParams(), 16)
    assert item["silhouette_original"].dtype == torch.uint8 and item["bigraph_joints_from"] == "coco_results:hrnet.json"
    assert item["gender"] == "neutral"
    assert "silhouette_original" in UNSTACKED_KEYS and "silhouette_original" in EVAL_ONLY_KEYS
    paths = write_shards([with_silhouette(i) for i in range(4)], str(tmp_path / "lsp-%06d.tar"))
    batch = next(iter(EvalStream("lsp", paths, [4], batch_size=4, out_res=16)))
    assert isinstance(batch["silhouette_original"], list) and len(batch["silhouette_original"]) == 4
    train = MixedTrainStream([SourceShards("lsp", tuple(paths))], batch_size=2, batches_per_rank=1,
                             augment=AugmentConfig(), out_res=16, shuffle_buffer=2)
    assert "silhouette_original" not in next(iter(train))


def test_collate_fills_the_meshes_of_samples_without_and_marks_them():
    items = [prepare_sample(small_sample(i), AugmentParams(), 16) for i in range(3)]
    items[1]["vertices"] = torch.ones(5, 3)
    batch = collate(items, [])
    assert batch["has_vertices"].tolist() == [False, True, False]
    assert batch["vertices"].shape == (3, 5, 3) and batch["vertices"][1].eq(1).all() and not batch["vertices"][0].any()
    assert "has_vertices" not in collate(items[:1], []) and "vertices" not in collate([items[0], items[2]], [])


def data_module(tmp_path, sets: dict, **eval_cfg) -> MixedDataModule:
    for name, samples in sets.items():
        write_shards(samples, str(tmp_path / name / "s-%06d.tar"))
    return MixedDataModule({"root": str(tmp_path), "eval": {name: {"shards": f"{name}/*.tar", **eval_cfg.get(name, {})}
                                                            for name in sets}}, rank=0, world_size=1)


def undetected(i):
    s = small_sample(i)
    return dataclasses.replace(s, bigraph_joints_2d=np.zeros((12, 3), np.float32), bigraph_joints_from="none")


def test_a_set_without_any_detection_fails_in_one_line_unless_allowed(tmp_path):
    detected = [small_sample(i) for i in range(3)]
    assert all(s.bigraph_joints_2d[:, 2].max() == 0 for s in detected)   # small samples have none...
    detected[2] = dataclasses.replace(detected[2], bigraph_joints_2d=np.full((12, 3), 0.5, np.float32))
    dm = data_module(tmp_path, {"h36m_p1": [undetected(i) for i in range(4)], "up3d": detected})
    assert dm.detections_status("up3d") is False                     # one sample with detections is enough
    with pytest.raises(UserError) as err:
        dm.detections_status("h36m_p1")
    message = str(err.value)
    assert "\n" not in message and "'h36m_p1': no sample has a detected 2D joint" in message
    assert "--detections" in message and "data.eval.h36m_p1.allow_missing_detections=true" in message
    allowed = data_module(tmp_path / "b", {"h36m_p1": [undetected(i) for i in range(2)]},
                          h36m_p1={"allow_missing_detections": True})
    assert allowed.detections_status("h36m_p1") is True
