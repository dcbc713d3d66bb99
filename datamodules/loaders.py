"""DataLoaders over the streams: one that knows the epoch and sums the workers' skip reports, and the training
loader, which also saves and restores its position in the data stream through the checkpoint.

A resumed run draws exactly the samples the uninterrupted run would have drawn: the checkpoint holds the
epoch, the number of batches the epoch loop had processed, the loader layout (ranks x workers) and every
rank's skip counter; the next pass replays the stream up to that batch without decoding
(:meth:`datamodules.streams.MixedTrainStream.resume_at`) and the skip totals continue. Lightning saves the
state of a loader with ``state_dict`` / ``load_state_dict`` in its fit loop (``loops.combined_loader``).

The loaders draw their workers' base seed from their own generator, not from torch's global one: a resumed
run creates its iterators at another point of the run than the uninterrupted one did, and would otherwise shift
the global stream that dropout and the ground-truth joint mixing draw from. The streams seed themselves
(:mod:`datamodules.streams`), so the base seed changes no sample.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader

from datamodules.skips import SkipCounter
from datamodules.streams import ignore_stop_signals
from runtime.ranks import gather_from_ranks


class EpochLoader(DataLoader):
    """A DataLoader over a stream that tells it the epoch and sums the workers' skip reports.

    The epoch comes from ``epoch_fn`` (the trainer's current epoch) when the iterator is created, so a
    resumed run continues with the right random streams. Batches that only carry skip reports are
    swallowed.
    """

    def __init__(self, stream, counter: SkipCounter, epoch_fn: Callable[[], int], **kwargs):
        if kwargs.get("num_workers"):
            kwargs.setdefault("worker_init_fn", ignore_stop_signals)
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))   # module docstring
        super().__init__(stream, batch_size=None, **kwargs)
        self.counter, self.epoch_fn = counter, epoch_fn

    def __len__(self) -> int:
        """The stream's batches with this loader's workers (an evaluation stream's count depends on them)."""
        if hasattr(self.dataset, "batches"):
            return self.dataset.batches(max(1, self.num_workers))
        return super().__len__()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch_fn())
        for batch in super().__iter__():
            for url, key, reason, message in batch.pop("skipped", []):
                self.counter.add_reason(reason, message, ident=(url, key))
            if batch:
                yield batch


def counter_state(counter: SkipCounter) -> dict[str, Any]:
    """A skip counter as plain containers (weights-only loadable): count, reasons, examples, and the (shard,
    key) of every skipped sample."""
    return {"count": counter.count, "reasons": dict(counter.reasons), "examples": list(counter.examples),
            "seen": sorted([str(url), str(key)] for url, key in counter.seen)}


def restore_counter(counter: SkipCounter, state: dict[str, Any]) -> None:
    counter.count = int(state["count"])
    counter.reasons.clear()
    counter.reasons.update({str(k): int(v) for k, v in state["reasons"].items()})
    counter.examples[:] = list(state["examples"])
    counter.seen = {(url, key) for url, key in state["seen"]}


class TrainLoader(EpochLoader):
    """The training loader: an :class:`EpochLoader` whose position in the stream is part of the checkpoint.

    ``position_fn`` returns (epoch, batches the epoch loop has processed in it); ``placement`` is (rank, world
    size). The state (plain containers): ``epoch``, ``batches``, ``world_size``, ``workers`` and ``ranks``, each
    rank's skip counter (:func:`counter_state`).
    """

    def __init__(self, stream, counter: SkipCounter, epoch_fn: Callable[[], int],
                 position_fn: Callable[[], tuple[int, int]], placement: tuple[int, int], **kwargs):
        super().__init__(stream, counter, epoch_fn, **kwargs)
        self.position_fn, self.placement = position_fn, placement
        self._resume: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        epoch, batches = self.position_fn()
        return {"epoch": int(epoch), "batches": int(batches), "world_size": self.placement[1],
                "workers": int(self.num_workers), "ranks": gather_from_ranks(counter_state(self.counter))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rank, world = self.placement
        ranks = state["ranks"]
        if rank < len(ranks):
            restore_counter(self.counter, ranks[rank])
        self._resume = state

    def __iter__(self) -> Iterator[dict[str, Any]]:
        state, self._resume = self._resume, None
        if state is not None and int(state["epoch"]) == int(self.epoch_fn()) and hasattr(self.dataset, "resume_at"):
            layout = (self.placement[1], int(self.num_workers))
            saved = (int(state["world_size"]), int(state["workers"]))
            known_bad = {(url, key) for rank_state in state["ranks"] for url, key in rank_state["seen"]}
            if layout != saved and self.placement[0] == 0:
                print(f"note: the checkpoint's data layout was {saved[0]} rank(s) x {saved[1]} loader worker(s), "
                      f"this run's is {layout[0]} x {layout[1]}: the epoch continues at batch {state['batches']}, "
                      "but not with the exact samples of an uninterrupted run", flush=True)
            self.dataset.resume_at(int(state["batches"]), known_bad)
        try:
            yield from super().__iter__()
        finally:
            if hasattr(self.dataset, "resume_at"):
                self.dataset.resume_at(0)
