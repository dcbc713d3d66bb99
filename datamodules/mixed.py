"""``MixedDataModule``: training on a weighted mixture of sharded sources, evaluation per data set.

The data config (``configs/data/*.yaml``) reads like the papers' data sections::

    root: data/synthetic                # shard paths are relative to it
    train:
      epoch_samples: 20000              # samples per epoch, all ranks together
      sources:                          # BiGraph's mixture (paper, section 4.1)
        h36m: {shards: "train/h36m/*.tar", weight: 0.3}
        up3d: {shards: "train/up3d/*.tar", weight: 0.2}
        ...
    eval:
      3dpw: {shards: "eval/3dpw/*.tar"}
      h36m_p1: {shards: "h36m_p1/*.tar", allow_missing_detections: false}   # BiGraph: see detections_status
    batch_size: 64
    eval_batch_size: 64
    num_workers: 4
    worker_start: forkserver            # how loader workers start (forkserver | spawn | fork); see below
    img_res: 224
    shuffle_buffer: 256
    seed: 0
    augment: {enabled: true, rotation_deg: 30, rotation_zero_prob: 0.6, scale: 0.25, noise: 0.4, flip_prob: 0.5}

Loader workers start from a small server process (``forkserver``, preloaded with torch and the stream
code), not as forks of the trainer: a forked worker shares the trainer's multi-GB heap copy-on-write, so
every page the trainer writes afterwards is copied by the kernel (on CPU that was most of a run's system
time), and each fork copies the trainer's page tables. ``worker_start: fork`` restores the forks.

Shard patterns are globs or WebDataset brace ranges (``h36m-{000000..000311}.tar``). Streams and their
guarantees: :mod:`datamodules.streams`. Skipped samples of every worker are summed in the main process in
:attr:`MixedDataModule.skipped` (a ``SkipCounter``); the training module logs the count.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Iterator, Mapping

import pytorch_lightning as pl
import torch

from datamodules.augment import AugmentConfig
from datamodules.loaders import EpochLoader, TrainLoader
from datamodules.shards import SkipCounter, iter_annotations
from datamodules.streams import EvalStream, MixedTrainStream, SourceShards, forkserver_started, shard_sample_counts
from runtime.errors import UserError

_TOP_KEYS = {"root", "train", "eval", "batch_size", "eval_batch_size", "num_workers", "worker_start", "img_res",
             "shuffle_buffer", "seed", "augment", "name"}
WORKER_STARTS = ("forkserver", "spawn", "fork")
# What the forkserver imports once (torch, the streams) and its stop-signal policy.
_FORKSERVER_PRELOAD = ["datamodules.forkserver_preload"]
_HINT = "run 'make data' for the synthetic set, or convert a data set with 'make convert'"


def expand_shards(pattern: str, root: str, where: str) -> list[str]:
    """Shard paths of a glob or brace pattern under ``root``; a clear error when none exist."""
    from braceexpand import braceexpand

    full = pattern if os.path.isabs(pattern) else os.path.join(root, pattern)
    paths: list[str] = []
    for expanded in braceexpand(full):
        matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
        paths.extend(p for p in matches if os.path.isfile(p))
    if not paths:
        raise UserError(f"{where}: no shards match {full!r}; {_HINT}")
    return paths


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise UserError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


class MixedDataModule(pl.LightningDataModule):
    """Training mixture and evaluation sets from a data config (module docstring).

    ``rank``/``world_size`` default to the trainer's (or torch.distributed's) when the loaders are made.
    """

    def __init__(self, cfg: Mapping, rank: int | None = None, world_size: int | None = None):
        super().__init__()
        cfg = dict(_mapping(cfg, "data config"))
        unknown = set(cfg) - _TOP_KEYS
        if unknown:
            raise UserError(f"data config: unknown keys {sorted(unknown)}; valid keys are {sorted(_TOP_KEYS)}")
        self.root = str(cfg.get("root", "."))
        self.batch_size = int(cfg.get("batch_size", 64))
        self.eval_batch_size = int(cfg.get("eval_batch_size", self.batch_size))
        self.num_workers = int(cfg.get("num_workers", 0))
        self.worker_start = str(cfg.get("worker_start", "forkserver"))
        if self.worker_start not in WORKER_STARTS:
            raise UserError(f"data.worker_start {self.worker_start!r}: valid choices are {', '.join(WORKER_STARTS)}")
        self.img_res = int(cfg.get("img_res", 224))
        self.shuffle_buffer = int(cfg.get("shuffle_buffer", 256))
        self.seed = int(cfg.get("seed", 0))
        augment = dict(_mapping(cfg.get("augment", {}), "data.augment"))
        try:
            self.augment = AugmentConfig(**augment)
        except TypeError:
            valid = sorted(AugmentConfig.__dataclass_fields__)
            raise UserError(f"data.augment: unknown keys {sorted(set(augment) - set(valid))}; valid keys are {valid}") from None
        except ValueError as err:
            raise UserError(f"data.augment: {err}") from None
        train = dict(_mapping(cfg.get("train", {}), "data.train"))
        self.epoch_samples = int(train.get("epoch_samples", 10000))
        self.train_cfg = {name: dict(_mapping(v, f"data.train.sources.{name}"))
                          for name, v in _mapping(train.get("sources", {}), "data.train.sources").items()}
        self.eval_cfg = {name: dict(_mapping(v, f"data.eval.{name}"))
                         for name, v in _mapping(cfg.get("eval", {}) or {}, "data.eval").items()}
        for name, src in self.train_cfg.items():
            if "shards" not in src:
                raise UserError(f"data.train.sources.{name}: missing 'shards' (a glob or brace pattern)")
            if float(src.get("weight", 1.0)) <= 0:
                raise UserError(f"data.train.sources.{name}.weight must be > 0, got {src.get('weight')}")
        if self.batch_size < 1 or self.epoch_samples < 1:
            raise UserError("data.batch_size and data.train.epoch_samples must be >= 1")
        self._rank, self._world = rank, world_size
        self.skipped = SkipCounter(max_examples=50)
        self._eval_counts: dict[str, list[int]] = {}
        self._detections_seen: set[str] = set()
        self._coco_areas_seen: set[str] = set()

    # ------------------------------------------------------------------------------------------
    @property
    def source_names(self) -> list[str]:
        return list(self.train_cfg)

    @property
    def eval_names(self) -> list[str]:
        return list(self.eval_cfg)

    def _placement(self) -> tuple[int, int]:
        if self._rank is not None:
            return self._rank, self._world or 1
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def batches_per_rank(self, world_size: int) -> int:
        return max(1, self.epoch_samples // (world_size * self.batch_size))

    def train_stream(self) -> MixedTrainStream:
        rank, world = self._placement()
        sources = [SourceShards(name, tuple(expand_shards(str(src["shards"]), self.root, f"data.train.sources.{name}")),
                                float(src.get("weight", 1.0)))
                   for name, src in self.train_cfg.items()]
        if not sources:
            raise UserError(f"data.train.sources is empty; list at least one source ({_HINT})")
        return MixedTrainStream(sources, self.batch_size, self.batches_per_rank(world), self.augment, self.img_res,
                                self.seed, self.shuffle_buffer, rank, world)

    def eval_stream(self, name: str) -> EvalStream:
        if name not in self.eval_cfg:
            raise UserError(f"unknown evaluation set {name!r}: configured sets are {', '.join(self.eval_cfg) or 'none'}")
        rank, world = self._placement()
        src = self.eval_cfg[name]
        if "shards" not in src:
            raise UserError(f"data.eval.{name}: missing 'shards' (a glob or brace pattern)")
        urls = expand_shards(str(src["shards"]), self.root, f"data.eval.{name}")
        if name not in self._eval_counts:
            self._eval_counts[name] = shard_sample_counts(urls)
        samples = sum(self._eval_counts[name])
        if samples < world:   # a process without a sample would have no batch (Lightning: "zero length")
            raise UserError(f"evaluation set {name!r} has {samples} sample(s) for {world} processes, and every process "
                            "needs at least one: evaluate it on fewer processes (trainer.devices=...) or leave it out")
        return EvalStream(name, urls, self._eval_counts[name], self.eval_batch_size, self.img_res, rank, world)

    def detections_status(self, name: str) -> bool:
        """For a model that reads detected 2D joints (BiGraph), when a run starts: whether evaluation set
        ``name`` may have every detected joint missing (``data.eval.<name>.allow_missing_detections``, the
        override the row records). Without the override, a set in which no sample has a detected joint
        (every ``bigraph_joints_2d`` confidence 0) stops the run in one line. The scan reads annotations
        only and stops at the first sample with a detection."""
        if name not in self.eval_cfg:
            raise UserError(f"unknown evaluation set {name!r}: configured sets are "
                            f"{', '.join(self.eval_cfg) or 'none'}")
        src = self.eval_cfg[name]
        allowed = bool(src.get("allow_missing_detections", False))
        if allowed or name in self._detections_seen:
            return allowed
        urls = expand_shards(str(src.get("shards", "")), self.root, f"data.eval.{name}")
        for url in urls:
            for _, fields in iter_annotations(url):
                joints = fields.get("bigraph_joints_2d")
                if joints is not None and joints.shape == (12, 3) and bool((joints[:, 2] > 0).any()):
                    self._detections_seen.add(name)
                    return allowed
        raise UserError(f"evaluation set {name!r}: no sample has a detected 2D joint (bigraph_joints_2d all "
                        "confidence 0), which BiGraph's skeleton branch reads; convert the set with detections "
                        "(make convert ... ARGS='--detections <OpenPose JSON folder | COCO results .json>') or set "
                        f"data.eval.{name}.allow_missing_detections=true to evaluate with the model's own estimates")

    def coco_annotations(self, name: str) -> str | None:
        """For an evaluation set scored by the COCO protocol, when a run starts: its official annotation file
        (``data.eval.<name>.annotations``, COCO's person_keypoints_val2014.json: every person and crowd region
        of each image, what COCOeval scores against), or None when its samples carry their own ground truth
        (every sample has the person's ``area``, as the synthetic sets do). A set with neither (a converted
        SPIN-format COCO file has no areas) stops the run in one line. The scan reads annotations only and stops
        at the first sample without an area."""
        if name not in self.eval_cfg:
            raise UserError(f"unknown evaluation set {name!r}: configured sets are "
                            f"{', '.join(self.eval_cfg) or 'none'}")
        src = self.eval_cfg[name]
        if src.get("annotations"):
            return str(src["annotations"])
        if name not in self._coco_areas_seen:
            for url in expand_shards(str(src.get("shards", "")), self.root, f"data.eval.{name}"):
                for _, fields in iter_annotations(url):
                    if fields.get("area") is None:
                        raise UserError(
                            f"evaluation set {name!r} (COCO keypoint AP): its samples have no person areas, so the "
                            f"ground truth must come from COCO's own file: set data.eval.{name}.annotations="
                            "<person_keypoints_val2014.json> (or $COCO_ANNOTATIONS; https://cocodataset.org/#download, "
                            "'Train/Val annotations')")
            self._coco_areas_seen.add(name)
        return None

    def _worker_context(self):
        """The multiprocessing context loader workers start in (module docstring), or None without workers."""
        if not self.num_workers:
            return None
        import multiprocessing

        ctx = multiprocessing.get_context(self.worker_start)
        if self.worker_start == "forkserver":
            ctx.set_forkserver_preload(_FORKSERVER_PRELOAD)
        return ctx

    def setup(self, stage: str) -> None:
        """Before a run (Lightning calls it before it installs its signal handlers): start the workers'
        forkserver and wait until it has run its preload, so that from the first step on it ignores the
        stop signals (``datamodules.forkserver_preload``); a forkserver still starting when SIGTERM came would
        die of it and take the workers with it."""
        ctx = self._worker_context()
        if ctx is not None and self.worker_start == "forkserver":
            ready = ctx.Process(target=forkserver_started, name="forkserver-check")
            ready.start()
            ready.join()

    def _loader_options(self) -> dict[str, Any]:
        workers = self.num_workers
        return dict(num_workers=workers, persistent_workers=False, pin_memory=torch.cuda.is_available(),
                    prefetch_factor=4 if workers else None, multiprocessing_context=self._worker_context())

    def _train_position(self) -> tuple[int, int]:
        """(epoch, batches the trainer's epoch loop has processed in it): where a checkpoint leaves the stream."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 0
        return int(trainer.current_epoch), int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def train_dataloader(self) -> TrainLoader:
        """The mixture's loader; its position in the stream travels in the checkpoint (``datamodules.loaders``)."""
        return TrainLoader(self.train_stream(), self.skipped, self._epoch, self._train_position, self._placement(),
                           **self._loader_options())

    def eval_dataloader(self, name: str) -> EpochLoader:
        """The loader of one evaluation set (every sample once; ``make eval``)."""
        return EpochLoader(self.eval_stream(name), self.skipped, self._epoch, **self._loader_options())

    def val_dataloader(self) -> list[EpochLoader]:
        return [self.eval_dataloader(name) for name in self.eval_cfg]

    def test_dataloader(self) -> list[EpochLoader]:
        return self.val_dataloader()
