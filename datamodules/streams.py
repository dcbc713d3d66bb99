"""Iterable datasets over shards: the mixed training stream and the exactly-once evaluation stream.

Both are ``torch.utils.data.IterableDataset`` objects that batch inside the worker processes (use them
with ``DataLoader(batch_size=None)``) and split their work explicitly, by node (rank) and by worker:

- :class:`MixedTrainStream`: per source an endless stream (pass after pass over the source's shards,
  each pass in a new seeded order); each draw picks a source with the configured weights. Within a
  pass the source's samples are partitioned over all workers of all ranks: by shard when there are at
  least as many shards as workers, otherwise by sample (every worker reads every shard and keeps every
  n-th sample), so no sample repeats within a rank's pass. Each rank yields exactly ``batches_per_rank``
  batches per epoch (workers take batches w, w + W, ...), so every rank runs the same number of steps
  and DDP cannot hang on a missing batch. A resumed run starts the epoch at the checkpoint's batch and
  draws exactly the samples (and augmentations) the uninterrupted run would have (:meth:`MixedTrainStream.resume_at`).
  WebDataset's ``ResampledShards`` draws shards with
  replacement independently per worker, which repeats shards within an epoch and leaves the
  per-rank batch count to ``with_epoch``; the explicit scheme here keeps both guarantees testable.
- :class:`EvalStream`: the samples of one evaluation set, in order, split into contiguous ranges: rank r
  of R takes global indices [r N / R, (r + 1) N / R), and its workers split that range the same way.
  Every sample is read exactly once over all ranks, every rank gets data when N >= R, and a worker
  reads only the shards its range touches (members outside it are not decoded).

A corrupt sample (bad JPEG, NaN annotation, missing member, truncated tar) is skipped and counted; the
counts travel to the main process inside the batches (``batch["skipped"]``: (shard, key, reason,
one-line message) of the samples skipped since the worker's previous batch), so the totals are exact across processes.
The same corrupt sample met again (in a later pass, or by another worker) is counted once per rank.

Batches (:func:`collate`) stack the per-sample tensors of ``augment.prepare_sample`` along a new first
axis; the keys of :data:`UNSTACKED_KEYS` (``mask_original``, ``silhouette_original``: one (H0, W0) uint8
tensor per sample at its original image's size, or None) and non-tensor values (``key``, ``image_id``,
``bigraph_joints_from``) stay lists of length B. ``vertices`` / ``transl`` (ground-truth meshes) are stacked
with zeros for the samples without, and ``has_vertices`` (B,) says which have them. Training batches carry no
``mask_original``, ``silhouette_original`` or ``vertices``; evaluation batches keep every key.
"""
from __future__ import annotations

import dataclasses
import math
import signal
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from datamodules.augment import AugmentConfig, AugmentParams, prepare_sample, sample_augment_params
from datamodules.shards import Sample, SkipCounter, decode_or_skip, iter_shard_members

# Per-sample values that are never stacked: tensors of different sizes per sample, or None.
UNSTACKED_KEYS: tuple[str, ...] = ("mask_original", "silhouette_original")
# Keys of prepare_sample that training batches drop (evaluation-only data).
EVAL_ONLY_KEYS: tuple[str, ...] = ("vertices", "transl", "mask_original", "silhouette_original")


@dataclass(frozen=True)
class SourceShards:
    """One data source: its name, shard paths and mixing weight (normalised by the stream)."""

    name: str
    urls: tuple[str, ...]
    weight: float = 1.0


def worker_slot(rank: int, world_size: int) -> tuple[int, int, int]:
    """(worker id, workers per rank, global worker id) of the calling process (main process: worker 0 of 1)."""
    info = get_worker_info()
    worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
    return worker, workers, rank * workers + worker


class _Skips:
    """Per-worker skip bookkeeping: counts each (shard, key) once; :meth:`take` hands out the new ones."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []  # (shard, key, reason, one-line message)
        self.seen: set[tuple[str, str]] = set()
        self.reported = 0

    def add_from(self, local: SkipCounter, url: str, key: str) -> None:
        """Record the failures in ``local`` (a fresh counter used for one read) once per (url, key)."""
        if local.count and (url, key) not in self.seen:
            self.seen.add((url, key))
            reasons = [r for r, n in local.reasons.items() for _ in range(n)]
            messages = local.examples + reasons[len(local.examples):]
            self.events.extend((url, key, r, m) for r, m in zip(reasons, messages))

    def pending(self) -> bool:
        return self.reported < len(self.events)

    def take(self) -> list[tuple[str, str, str, str]]:
        new = self.events[self.reported:]
        self.reported = len(self.events)
        return new


def _decode(members: dict, skips: _Skips):
    local = SkipCounter()
    sample = decode_or_skip(members, local)
    skips.add_from(local, members.get("__url__", ""), members.get("__key__", ""))
    return sample


def _members(url: str, skips: _Skips) -> Iterator[dict]:
    local = SkipCounter()
    yield from iter_shard_members(url, local)
    skips.add_from(local, url, "<shard>")


def collate(items: Sequence[dict[str, Any]], skipped: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """Stack per-sample dicts (``augment.prepare_sample``) into a batch.

    Tensors are stacked to (B, ...); the keys of :data:`UNSTACKED_KEYS` and non-tensor values (str, None)
    become lists of length B. ``vertices`` present in some items only: zeros for the others, and
    ``has_vertices`` (B,) bool marks the real ones (always set when any item has vertices).
    ``skipped`` is attached as it is.
    """
    batch: dict[str, Any] = {}
    with_vertices = [item.get("vertices") is not None for item in items]
    if any(with_vertices):
        first = next(item for item, has in zip(items, with_vertices) if has)
        fill = {k: torch.zeros_like(first[k]) for k in ("vertices", "transl") if k in first}
        items = [item if has else {**item, **fill} for item, has in zip(items, with_vertices)]
        batch["has_vertices"] = torch.tensor(with_vertices)
    for key in items[0]:
        values = [item[key] for item in items]
        stack = key not in UNSTACKED_KEYS and isinstance(values[0], torch.Tensor)
        batch[key] = torch.stack(values) if stack else values
    batch["skipped"] = skipped
    return batch


class MixedTrainStream(IterableDataset):
    """Endless weighted mixture of sources, cut into ``batches_per_rank`` batches per epoch.

    Batch keys: those of ``augment.prepare_sample`` but :data:`EVAL_ONLY_KEYS` (ground-truth ``vertices``
    and ``mask_original`` are dropped), plus ``source`` (B,) int64 index into ``source_names``, ``key``
    (list of str) and ``skipped``.
    """

    def __init__(self, sources: Sequence[SourceShards], batch_size: int, batches_per_rank: int,
                 augment: AugmentConfig, out_res: int = 224, seed: int = 0, shuffle_buffer: int = 256,
                 rank: int = 0, world_size: int = 1):
        weights = np.array([s.weight for s in sources], dtype=np.float64)
        if not len(sources) or (weights <= 0).any():
            raise ValueError("MixedTrainStream needs at least one source and positive weights")
        self.sources = list(sources)
        self.source_names = [s.name for s in sources]
        self.probs = weights / weights.sum()
        self.batch_size, self.batches_per_rank = int(batch_size), int(batches_per_rank)
        self.augment, self.out_res, self.seed = augment, int(out_res), int(seed)
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.start_batch, self.known_bad = 0, frozenset()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_rank

    def _pass_members(self, s: int, pass_index: int, gid: int, total: int, skips: _Skips) -> Iterator[dict]:
        """The members of source ``s`` that belong to global worker ``gid`` in one pass."""
        urls = list(self.sources[s].urls)
        order = np.random.default_rng([self.seed, self.epoch, s, pass_index, 7]).permutation(len(urls))
        urls = [urls[i] for i in order]
        if len(urls) >= total:
            for url in urls[gid::total]:
                yield from _members(url, skips)
        else:
            index = 0
            for url in urls:
                for members in _members(url, skips):
                    if index % total == gid:
                        yield members
                    index += 1

    def resume_at(self, batch: int, known_bad: Iterable[tuple[str, str]] = ()) -> None:
        """Start the next pass over this epoch at batch ``batch`` of the rank, exactly where an uninterrupted run
        would be (a resumed run: :class:`datamodules.loaders.TrainLoader` calls it with the checkpoint's position).

        The batches before it are replayed without decoding or augmenting: the shards' members are read, the
        shuffle buffers and the random streams advance as they did, and the members in ``known_bad`` ((shard,
        key) of every sample skipped before the checkpoint) are passed over as their decoding failed then.
        Worker w then makes the batches ``batch + w, batch + w + W, ...``, the order in which the DataLoader
        collects them, with the random streams of the worker that made them in the uninterrupted run."""
        self.start_batch = max(0, int(batch))
        self.known_bad = frozenset(tuple(k) for k in known_bad)

    def _source_members(self, s: int, gid: int, total: int, rng: np.random.Generator, skips: _Skips) -> Iterator[dict]:
        """Endless raw members of source ``s`` for this worker, through a shuffle buffer (not decoded)."""
        buffer: list[dict] = []
        pass_index, empty_passes = 0, 0
        while True:
            got = 0
            for members in self._pass_members(s, pass_index, gid, total, skips):
                got += 1
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(members)
                    continue
                i = int(rng.integers(len(buffer)))
                members, buffer[i] = buffer[i], members
                yield members
            pass_index += 1
            empty_passes = 0 if got else empty_passes + 1
            if empty_passes >= 2 and not buffer:
                raise RuntimeError(f"source {self.source_names[s]!r} has no readable samples for worker {gid} "
                                   f"of {total}: every shard is empty or damaged")
            rng.shuffle(buffer)
            while len(buffer) > self.shuffle_buffer // 2:  # keep half, so passes mix at their border
                yield buffer.pop()

    def _next_sample(self, members: Iterator[dict], skips: _Skips, replay: bool) -> Sample | None:
        """The next decodable sample of a source (None while replaying: it is passed over, not decoded)."""
        for group in members:
            if replay:
                if (group.get("__url__", ""), group.get("__key__", "")) not in self.known_bad:
                    return None
                continue
            sample = _decode(group, skips)
            if sample is not None:
                return sample
        raise RuntimeError("a source stream ended")   # unreachable: source streams are endless

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers, _ = worker_slot(self.rank, self.world_size)
        start = self.start_batch
        logical = (worker + start) % workers      # the worker that made this one's next batch when uninterrupted
        gid, total = self.rank * workers + logical, workers * self.world_size
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, logical, 11])
        skips = _Skips()
        streams = [self._source_members(s, gid, total, np.random.default_rng([self.seed, self.epoch, gid, s, 13]),
                                        skips)
                   for s in range(len(self.sources))]
        for index in range(logical, self.batches_per_rank, workers):
            replay = index < start
            items = []
            for s in rng.choice(len(self.sources), size=self.batch_size, p=self.probs):
                sample = self._next_sample(streams[s], skips, replay)
                params = sample_augment_params(rng, self.augment)
                if replay:
                    continue
                item = prepare_sample(_for_training(sample), params, self.out_res)
                for key in EVAL_ONLY_KEYS:
                    item.pop(key, None)
                item["source"] = torch.tensor(int(s))
                item["key"] = sample.key
                items.append(item)
            if not replay:
                yield collate(items, skips.take())


def _for_training(sample: Sample) -> Sample:
    """Training uses neither ground-truth meshes (it cannot mirror them) nor original-resolution masks or
    silhouettes; drop them before augmenting."""
    if sample.vertices is None and sample.mask_original is None and sample.silhouette_original is None:
        return sample
    return dataclasses.replace(sample, vertices=None, transl=None, mask_original=None, silhouette_original=None)


class EvalStream(IterableDataset):
    """One evaluation set, every sample exactly once over all ranks and workers, in shard order.

    ``counts[i]`` is the number of samples in ``urls[i]`` (see :func:`shard_sample_counts`). Batches may
    be smaller at the end of each worker's range. Keys as :class:`MixedTrainStream` (``source`` is 0), and
    every evaluation key kept (``vertices`` when the samples have them, ``mask_original`` as a list).
    """

    def __init__(self, name: str, urls: Sequence[str], counts: Sequence[int], batch_size: int,
                 out_res: int = 224, rank: int = 0, world_size: int = 1):
        if len(urls) != len(counts):
            raise ValueError("EvalStream needs one sample count per shard")
        self.name, self.urls, self.counts = name, list(urls), [int(c) for c in counts]
        self.batch_size, self.out_res = int(batch_size), int(out_res)
        self.rank, self.world_size = int(rank), int(world_size)

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    def rank_range(self, rank: int) -> tuple[int, int]:
        n = self.num_samples
        return rank * n // self.world_size, (rank + 1) * n // self.world_size

    def worker_range(self, worker: int, workers: int) -> tuple[int, int]:
        """[lo, hi) of the samples one of this rank's ``workers`` loader workers reads."""
        lo, hi = self.rank_range(self.rank)
        return lo + worker * (hi - lo) // workers, lo + (worker + 1) * (hi - lo) // workers

    def batches(self, workers: int = 1) -> int:
        """Batches this rank yields when ``workers`` loader workers share its range (each ends with a partial
        batch, so W workers may yield up to W - 1 more than one). ``EpochLoader`` reports it as its length:
        Lightning stops a validation after that many batches, so a smaller count would drop samples."""
        spans = (self.worker_range(w, workers) for w in range(max(1, int(workers))))
        return sum(math.ceil((hi - lo) / self.batch_size) for lo, hi in spans)

    def __len__(self) -> int:
        """Batches this rank yields with one worker (see :meth:`batches`)."""
        return self.batches(1)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers, _ = worker_slot(self.rank, self.world_size)
        lo, hi = self.worker_range(worker, workers)
        skips = _Skips()
        items: list[dict[str, Any]] = []
        start = 0
        for url, count in zip(self.urls, self.counts):
            end, first = start + count, start
            start = end
            if end <= lo or first >= hi:
                continue
            for index, members in enumerate(_members(url, skips), start=first):
                if index >= hi:
                    break
                if index < lo:
                    continue
                sample = _decode(members, skips)
                if sample is None:
                    continue
                item = prepare_sample(sample, AugmentParams(), self.out_res)
                item["source"] = torch.tensor(0)
                item["key"] = sample.key
                items.append(item)
                if len(items) == self.batch_size:
                    yield collate(items, skips.take())
                    items = []
        if items:
            yield collate(items, skips.take())
        elif skips.pending():
            yield {"skipped": skips.take()}  # nothing left to batch, but the skips must still be reported


def shard_sample_counts(urls: Sequence[str]) -> list[int]:
    """Number of samples (distinct keys) in each shard, reading only the tar headers.

    A damaged shard counts the samples before the damage (the reader will skip and report the rest).
    """
    import tarfile

    from datamodules.shards import _MEMBER_RE

    counts = []
    for url in urls:
        keys: set[str] = set()
        try:
            with tarfile.open(url, mode="r:") as tar:
                for info in tar:
                    match = _MEMBER_RE.match(info.name)
                    if info.isreg() and match:
                        keys.add(match.group(1))
        except (tarfile.TarError, OSError, EOFError):
            pass
        counts.append(len(keys))
    return counts


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers (and their forkserver, ``datamodules.forkserver_preload``) ignore SIGTERM and SIGUSR1: a
    cluster signals the whole process group, and the trainer saves and stops on them
    (``callbacks.preemption``) and then shuts its workers down; a worker that died of the signal first would
    end the run in a loader traceback instead."""
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)


def forkserver_started() -> None:
    """Nothing: the process ``MixedDataModule.setup`` forks once to know its forkserver is up."""
