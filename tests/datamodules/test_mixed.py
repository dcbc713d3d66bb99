"""MixedDataModule: mixing shares, exact per-rank batch counts, exactly-once evaluation, corrupt samples."""
from __future__ import annotations

import io
import os
import tarfile
from collections import Counter
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from datamodules.mixed import MixedDataModule
from datamodules.sample import Sample, person_crop_affine
from datamodules.shards import write_shards
from runtime.errors import UserError

WEIGHTS = {"h36m": 0.3, "up3d": 0.2, "lsp": 0.1, "coco": 0.2, "mpii": 0.2}


def tiny_sample(source: str, i: int, size: int = 32) -> Sample:
    """A small but valid sample (a 32 px crop), cheap to decode: for counting tests."""
    rng = np.random.default_rng(abs(hash((source, i))) % 2**32)
    kp = np.concatenate([rng.uniform(0, size, (49, 2)), np.ones((49, 1))], 1)
    return Sample.build(image=rng.integers(0, 255, (size, size, 3), dtype=np.uint8), source=source,
                        image_size=[640, 480], crop_to_image=person_crop_affine([320, 240], 1.0, size),
                        keypoints_2d=kp, key=f"{source}_{i:05d}")


def write_set(root: Path, sizes: dict[str, int], split: str = "train", per_shard: int = 10) -> None:
    for name, n in sizes.items():
        write_shards((tiny_sample(name, i) for i in range(n)), str(root / split / name / f"{name}-%06d.tar"),
                     max_count=per_shard)


def data_cfg(root: Path, **over) -> dict:
    cfg = {
        "root": str(root), "batch_size": 8, "eval_batch_size": 5, "num_workers": 0, "img_res": 16,
        "shuffle_buffer": 16, "seed": 0,
        "train": {"epoch_samples": 160, "sources": {n: {"shards": f"train/{n}/*.tar", "weight": w}
                                                    for n, w in WEIGHTS.items()}},
        "eval": {"3dpw": {"shards": "eval/3dpw/*.tar"}, "lsp": {"shards": "eval/lsp/*.tar"}},
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    write_set(root, {"h36m": 60, "up3d": 40, "lsp": 20, "coco": 40, "mpii": 40})
    write_set(root, {"3dpw": 23, "lsp": 7}, split="eval", per_shard=4)
    return root


def test_source_shares_follow_the_weights(data_root):
    dm = MixedDataModule(data_cfg(data_root, train={"epoch_samples": 20000, "sources": data_cfg(data_root)["train"]["sources"]},
                                  batch_size=100))
    counts = Counter()
    batches = 0
    for batch in dm.train_dataloader():
        counts.update(dm.source_names[i] for i in batch["source"].tolist())
        assert all(k.startswith(dm.source_names[i]) for k, i in zip(batch["key"], batch["source"].tolist()))
        batches += 1
    assert batches == 200
    total = sum(counts.values())
    assert total == 20000
    for name, w in WEIGHTS.items():
        assert abs(counts[name] / total - w) < 0.015, (name, counts[name] / total)


def test_no_sample_repeats_within_a_pass(data_root):
    """An epoch no longer than a source's size reads each of its samples at most once."""
    cfg = data_cfg(data_root, train={"epoch_samples": 40, "sources": {"h36m": {"shards": "train/h36m/*.tar"}}})
    keys = [k for b in MixedDataModule(cfg, rank=0, world_size=1).train_dataloader() for k in b["key"]]
    assert len(keys) == 40 and len(set(keys)) == 40


def test_epochs_differ_and_are_seeded(data_root):
    def keys(seed, epoch):
        dm = MixedDataModule(data_cfg(data_root, seed=seed))
        stream = dm.train_stream()
        stream.set_epoch(epoch)
        return [k for b in stream for k in b["key"]]
    assert keys(0, 0) == keys(0, 0)
    assert keys(0, 0) != keys(0, 1)
    assert keys(0, 0) != keys(1, 0)


def test_eval_loader_reads_every_sample_once_in_order(data_root):
    dm = MixedDataModule(data_cfg(data_root, num_workers=2))
    loaders = dm.val_dataloader()
    keys = [k for b in loaders[0] for k in b["key"]]
    assert sorted(keys) == [f"3dpw_{i:05d}" for i in range(23)]
    assert len([k for b in loaders[1] for k in b["key"]]) == 7


def _rank_main(rank: int, world: int, root: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    dm = MixedDataModule(data_cfg(Path(root), num_workers=2))  # rank and world from torch.distributed
    train = [len(b["key"]) for b in dm.train_dataloader()]
    train_keys = [k for b in dm.train_dataloader() for k in b["key"]]
    val = {name: [k for b in loader for k in b["key"]] for name, loader in zip(dm.eval_names, dm.val_dataloader())}
    gathered: list = [None] * world
    dist.all_gather_object(gathered, {"train": train, "train_keys": train_keys, "val": val})
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


def test_two_ranks_same_batches_and_exactly_once_validation(data_root, tmp_path):
    out = str(tmp_path / "ranks.pt")
    port = 29500 + os.getpid() % 1000
    mp.start_processes(_rank_main, args=(2, str(data_root), port, out), nprocs=2, start_method="spawn")
    ranks = torch.load(out, weights_only=False)
    assert len(ranks[0]["train"]) == len(ranks[1]["train"]) == 160 // (2 * 8)
    assert all(n == 8 for r in ranks for n in r["train"])
    assert ranks[0]["train_keys"] != ranks[1]["train_keys"]  # the ranks read different data
    for name, n in (("3dpw", 23), ("lsp", 7)):
        per_rank = [r["val"][name] for r in ranks]
        assert all(len(keys) > 0 for keys in per_rank)
        union = per_rank[0] + per_rank[1]
        assert len(union) == n and len(set(union)) == n


# ----------------------------------------------------------------------------------------------
# Corrupt samples
# ----------------------------------------------------------------------------------------------
def _rewrite(path: Path, edit) -> None:
    """Rewrite a tar, passing each (name, bytes) through ``edit`` (return None to drop a member)."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            data = edit(name, data)
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def inject_faults(root: Path, split: str, name: str) -> None:
    shards = sorted((root / split / name).glob("*.tar"))
    assert len(shards) >= 4

    def bad_jpeg(member, data):
        return b"\xff\xd8garbage" if member.endswith(".jpg") and "00001" in member else data

    def nan_annotation(member, data):
        if member.endswith(".ann.msgpack") and member.startswith(f"{name}_00005"):
            ann = msgpack.unpackb(data, raw=False)
            pose = np.frombuffer(ann["pose"]["bytes"], "<f4").copy()
            pose[4] = np.nan
            ann["pose"]["bytes"] = pose.tobytes()
            return msgpack.packb(ann, use_bin_type=True)
        return data

    def missing_key(member, data):
        if member.endswith(".ann.msgpack") and member.startswith(f"{name}_00009"):
            ann = msgpack.unpackb(data, raw=False)
            del ann["betas"]
            return msgpack.packb(ann, use_bin_type=True)
        return data

    _rewrite(shards[0], bad_jpeg)
    _rewrite(shards[1], nan_annotation)
    _rewrite(shards[2], missing_key)
    raw = shards[3].read_bytes()
    shards[3].write_bytes(raw[: len(raw) // 2 + 700])  # cut inside a member


def test_injected_faults_are_skipped_and_counted_exactly(tmp_path):
    write_set(tmp_path, {"h36m": 16}, split="eval", per_shard=4)
    inject_faults(tmp_path, "eval", "h36m")
    cfg = data_cfg(tmp_path, eval={"h36m": {"shards": "eval/h36m/*.tar"}}, train={"sources": {}})
    dm = MixedDataModule(cfg, rank=0, world_size=1)
    keys = [k for b in dm.val_dataloader()[0] for k in b["key"]]
    assert dm.skipped.count == 4, dm.skipped.summary()
    assert len(keys) >= 16 - 4 - 2 and len(set(keys)) == len(keys)
    reasons = " ".join(dm.skipped.reasons)
    for word in ("jpg", "NaN", "missing", "truncated"):
        assert word in reasons, dm.skipped.summary()


def test_training_carries_on_over_faults_and_counts_each_once(tmp_path):
    write_set(tmp_path, {"h36m": 16}, per_shard=4)
    inject_faults(tmp_path, "train", "h36m")
    cfg = data_cfg(tmp_path, num_workers=2, shuffle_buffer=4,
                   train={"epoch_samples": 96, "sources": {"h36m": {"shards": "train/h36m/*.tar"}}})
    dm = MixedDataModule(cfg, rank=0, world_size=1)
    batches = list(dm.train_dataloader())  # several passes over the 16 samples
    assert len(batches) == 12
    assert dm.skipped.count == 4, dm.skipped.summary()


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


@pytest.mark.parametrize("start", ["forkserver", "fork"])
def test_workers_start_from_the_forkserver_not_as_forks(data_root, start):
    """By default loader workers are children of the forkserver (they share none of the trainer's heap);
    ``worker_start: fork`` makes them the trainer's own forks; both deliver the same samples."""
    dm = MixedDataModule(data_cfg(data_root, num_workers=2, worker_start=start), rank=0, world_size=1)
    iterator = torch.utils.data.DataLoader.__iter__(dm.val_dataloader()[0])   # the worker pool itself
    # Read the parents before taking a batch: a worker whose share runs out is shut down by the loader
    # as soon as the trainer sees its end, so after the first batch its /proc entry may be gone.
    parents = {_parent_pid(w.pid) for w in iterator._workers}
    keys = [k for b in iterator for k in b["key"]]
    assert sorted(keys) == [f"3dpw_{i:05d}" for i in range(23)]
    if start == "fork":
        assert parents == {os.getpid()}
    else:
        assert len(parents) == 1 and os.getpid() not in parents
        assert "forkserver" in Path(f"/proc/{parents.pop()}/cmdline").read_text()


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="no shards match.*make data"):
        MixedDataModule(data_cfg(tmp_path)).train_dataloader()
    with pytest.raises(UserError, match="unknown keys.*valid keys"):
        MixedDataModule({"batchsize": 3})
    with pytest.raises(UserError, match="weight must be > 0"):
        MixedDataModule({"train": {"sources": {"h36m": {"shards": "x", "weight": 0}}}})
    with pytest.raises(UserError, match="augment.*flip_prob"):
        MixedDataModule({"augment": {"flip_prob": 2}})
    with pytest.raises(UserError, match="worker_start 'thread': valid choices are forkserver, spawn, fork"):
        MixedDataModule({"worker_start": "thread"})
    with pytest.raises(UserError, match="unknown evaluation set 'x'"):
        MixedDataModule(data_cfg(tmp_path)).eval_stream("x")


def test_an_evaluation_set_smaller_than_the_process_count_stops_in_one_line(data_root):
    """7 LSP evaluation samples on 8 processes: one would have no batch; the error says so, not Lightning's."""
    dm = MixedDataModule(data_cfg(data_root), rank=0, world_size=8)
    with pytest.raises(UserError) as err:
        dm.eval_dataloader("lsp")
    assert "7 sample(s) for 8 processes" in str(err.value) and "\n" not in str(err.value)
    assert len(list(MixedDataModule(data_cfg(data_root), rank=6, world_size=7).eval_dataloader("lsp"))) == 1


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_lightning_validates_every_evaluation_sample_whatever_the_worker_count(data_root, workers):
    """23 samples in batches of 5: two workers read 11 + 12 (3 + 3 batches, one more than 23 / 5 rounds up to).
    The loader's length counts them, so Lightning's validation loop, which stops after that many batches,
    sees every sample (with the one-worker count it dropped the last batch: make eval scored fewer samples)."""
    import pytorch_lightning as pl

    class KeyCounter(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.keys = []
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.keys.extend(batch["key"])

    dm = MixedDataModule(data_cfg(data_root, num_workers=workers, eval={"3dpw": {"shards": "eval/3dpw/*.tar"}}),
                         rank=0, world_size=1)
    loader = dm.val_dataloader()[0]
    assert len(loader) == len(list(loader)) == {0: 5, 2: 6, 3: 6}[workers]
    module = KeyCounter()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, dataloaders=dm.val_dataloader(), verbose=False)
    assert sorted(module.keys) == [f"3dpw_{i:05d}" for i in range(23)]
