"""Counting skipped samples: :class:`SkipCounter`, shared by the shard reader and the streams.

Split out of :mod:`datamodules.shards` (which re-exports it): the bookkeeping of corrupt samples and
read failures by reason, independent of the sample format.
"""
from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass

from datamodules.schema import CorruptSampleError


@dataclass
class SkipCounter:
    """Counts skipped samples and read failures by reason.

    ``count``: how many were skipped; ``reasons``: Counter of ``"<field>: <problem>"`` categories;
    ``examples``: the first ``max_examples`` full one-line messages. Each DataLoader worker holds its
    own copy (workers are processes); merge them with :meth:`merge` to report totals.
    """

    count: int = 0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: list[str] = dataclasses.field(default_factory=list)
    max_examples: int = 10
    seen: set = dataclasses.field(default_factory=set, repr=False)

    def add(self, error: BaseException | str) -> None:
        """Count one failure: a CorruptSampleError (by its reason) or any exception (by its type)."""
        if isinstance(error, CorruptSampleError):
            reason = error.reason
        elif isinstance(error, BaseException):
            reason = f"read error: {type(error).__name__}"
        else:
            reason = str(error)
        self.count += 1
        self.reasons[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error).splitlines()[0] if str(error) else reason)

    def add_reason(self, reason: str, message: str, ident: tuple | None = None) -> None:
        """Count one failure already categorised elsewhere (e.g. reported by a DataLoader worker).

        With ``ident`` (e.g. (shard, key)), a failure already counted under the same ident is ignored:
        the same corrupt sample met by several workers or passes counts once.
        """
        if ident is not None:
            if ident in self.seen:
                return
            self.seen.add(ident)
        self.count += 1
        self.reasons[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(message)

    def handler(self, exn: Exception) -> bool:
        """A WebDataset ``handler=``: count the exception and continue (a truncated tar, a bad member)."""
        self.add(exn)
        return True

    def merge(self, other: "SkipCounter") -> None:
        self.count += other.count
        self.reasons.update(other.reasons)
        self.examples.extend(other.examples[: max(0, self.max_examples - len(self.examples))])

    def summary(self) -> str:
        """One line: ``skipped N: reason xK, ...``."""
        if not self.count:
            return "skipped 0"
        parts = ", ".join(f"{r} x{n}" for r, n in self.reasons.most_common())
        return f"skipped {self.count}: {parts}"

