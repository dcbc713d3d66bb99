"""metrics.seeds: mean ± standard error over seeds and the two-standard-error rule of the reproduction's claims."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.seeds import compare_independent, compare_paired, seed_estimate


def test_seed_estimate_is_the_mean_and_the_standard_error_of_the_mean():
    values = [71.3, 74.9, 69.2]
    est = seed_estimate(values)
    assert est.mean == pytest.approx(np.mean(values))
    assert est.se == pytest.approx(np.std(values, ddof=1) / math.sqrt(3))
    assert est.n == 3 and str(est) == f"{np.mean(values):.1f} ± {est.se:.1f}"
    assert seed_estimate([5.0]).se == 0.0
    with pytest.raises(ValueError):
        seed_estimate([])


def test_independent_comparison_adds_the_variances():
    low, high = [1.0, 2.0, 3.0], [5.0, 7.0, 9.0]          # se 1/sqrt(3) and 2/sqrt(3)
    c = compare_independent(low, high)
    assert c.gap == pytest.approx(5.0)
    assert c.se == pytest.approx(math.sqrt(1 / 3 + 4 / 3))
    assert c.holds and c.ratio == pytest.approx(5.0 / math.sqrt(5 / 3))
    assert not compare_independent(high, low).holds       # the reverse claim fails
    # a gap of exactly two standard errors does not hold; just over it does
    assert not compare_independent([0.0, 2.0], [2.0 * math.sqrt(2), 2.0 + 2.0 * math.sqrt(2)]).holds
    assert compare_independent([0.0, 2.0], [2.01 * math.sqrt(2), 2.0 + 2.01 * math.sqrt(2)]).holds


def test_paired_comparison_uses_the_per_seed_differences():
    """Seeds that move two quantities together: large unpaired spread, but every seed has M3 below M1 by ~2."""
    m1, m3 = [100.0, 150.0, 200.0], [98.0, 148.1, 197.9]
    paired = compare_paired(m3, m1)
    diffs = np.subtract(m1, m3)
    assert paired.gap == pytest.approx(diffs.mean())
    assert paired.se == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(3))
    assert paired.holds and not compare_independent(m3, m1).holds
    with pytest.raises(ValueError):
        compare_paired([1.0], [1.0, 2.0])
