"""The training loader resumes its stream mid-epoch: the batches after the checkpoint's position are the
uninterrupted epoch's, sample for sample and pixel for pixel (augmentation included), with loader workers, over
corrupt samples met before the checkpoint, and the skip count continues."""
from __future__ import annotations

import itertools

import pytest
import torch

from datamodules.loaders import counter_state
from datamodules.mixed import MixedDataModule
from tests.datamodules.test_mixed import data_cfg, inject_faults, write_set

BATCHES = 12


@pytest.fixture(scope="module")
def faulty_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    write_set(root, {"h36m": 16, "lsp": 12}, per_shard=4)
    inject_faults(root, "train", "h36m")        # a bad JPEG, a NaN, a missing field, a truncated shard
    return root


def _module(root, workers: int) -> MixedDataModule:
    cfg = data_cfg(root, num_workers=workers, shuffle_buffer=4, augment={"enabled": True},
                   train={"epoch_samples": 8 * BATCHES, "sources": {"h36m": {"shards": "train/h36m/*.tar"},
                                                                      "lsp": {"shards": "train/lsp/*.tar"}}})
    return MixedDataModule(cfg, rank=0, world_size=1)


def _assert_same_batches(got: list[dict], want: list[dict]) -> None:
    assert [b["key"] for b in got] == [b["key"] for b in want]
    for g, w in zip(got, want):
        assert torch.equal(g["img"], w["img"]) and torch.equal(g["keypoints_2d"], w["keypoints_2d"])


@pytest.mark.parametrize("workers,stop", [(0, 5), (2, 5), (2, 6)])
def test_a_resumed_epoch_continues_with_the_uninterrupted_batches(faulty_root, workers, stop):
    whole_module = _module(faulty_root, workers)
    whole = list(whole_module.train_dataloader())
    assert len(whole) == BATCHES and whole_module.skipped.count >= 1

    first = _module(faulty_root, workers)
    before = list(itertools.islice(first.train_dataloader(), stop))
    _assert_same_batches(before, whole[:stop])
    state = {"epoch": 0, "batches": stop, "world_size": 1, "workers": workers, "ranks": [counter_state(first.skipped)]}

    resumed = _module(faulty_root, workers)                # a new process: nothing but the checkpoint's state
    loader = resumed.train_dataloader()
    loader.load_state_dict(state)
    after = list(loader)
    _assert_same_batches(after, whole[stop:])
    assert resumed.skipped.count == whole_module.skipped.count, resumed.skipped.summary()
    assert len(list(loader)) == BATCHES                     # the next pass is a whole epoch again


def test_the_state_needs_the_skipped_samples_to_replay_exactly(faulty_root):
    """The replay passes over the samples that failed before the checkpoint without decoding them: without the
    checkpoint's skip list it would count them as drawn, and the batches after the position would shift."""
    whole = list(_module(faulty_root, 0).train_dataloader())
    first = _module(faulty_root, 0)
    before = list(itertools.islice(first.train_dataloader(), 6))
    assert first.skipped.count >= 1                         # a corrupt sample was met before the stop
    forgetful = {"epoch": 0, "batches": 6, "world_size": 1, "workers": 0, "ranks": [counter_state(_module(
        faulty_root, 0).skipped)]}
    loader = _module(faulty_root, 0).train_dataloader()
    loader.load_state_dict(forgetful)
    assert [b["key"] for b in loader] != [b["key"] for b in whole[len(before):]]
