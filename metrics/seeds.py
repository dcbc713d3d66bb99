"""Statistics over training seeds: a metric's mean and standard error, and whether a difference is resolved.

A result over ``n`` seeds is reported as mean +- standard error (sample standard deviation / sqrt(n)). A claim
"A is lower than B" holds when the difference of the seed means exceeds twice the difference's standard error:
for two models (independent runs) sqrt(se_A^2 + se_B^2); for two quantities of the same runs (PyMAF's M1 and M3
of one model, seed by seed) the standard error of the per-seed differences (paired).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class SeedEstimate:
    """mean +- se over ``n`` seeds."""

    mean: float
    se: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.1f} ± {self.se:.1f}"


def seed_estimate(values: Sequence[float]) -> SeedEstimate:
    """Mean and standard error of per-seed values (se = 0 for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return SeedEstimate(mean, 0.0, 1)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return SeedEstimate(mean, math.sqrt(variance / n), n)


@dataclass(frozen=True)
class Comparison:
    """``lower`` minus ``higher`` expected negative: ``gap`` = mean(higher) - mean(lower), its standard error,
    and whether the claim "lower < higher" holds (gap > 2 se)."""

    gap: float
    se: float

    @property
    def holds(self) -> bool:
        return self.gap > 2.0 * self.se

    @property
    def ratio(self) -> float:
        """The gap in standard errors (inf where se is 0 and the gap positive)."""
        if self.se == 0.0:
            return math.inf if self.gap > 0 else (0.0 if self.gap == 0 else -math.inf)
        return self.gap / self.se


def compare_independent(lower: Sequence[float], higher: Sequence[float]) -> Comparison:
    """Claim: ``lower``'s seed mean is below ``higher``'s (two models, independent runs)."""
    a, b = seed_estimate(lower), seed_estimate(higher)
    return Comparison(b.mean - a.mean, math.sqrt(a.se ** 2 + b.se ** 2))


def compare_paired(lower: Sequence[float], higher: Sequence[float]) -> Comparison:
    """Claim: ``lower`` is below ``higher``, seed by seed (two quantities of the same runs)."""
    if len(lower) != len(higher):
        raise ValueError(f"paired values need equal counts, got {len(lower)} and {len(higher)}")
    gaps = seed_estimate([h - l for l, h in zip(lower, higher)])
    return Comparison(gaps.mean, gaps.se)
