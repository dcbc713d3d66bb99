"""Fixtures shared across the test packages."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_5_per_set(tmp_path_factory):
    """Synthetic data with 5 samples per evaluation set (so each of two ranks validates some), built once."""
    from datamodules.synthetic.dataset import generate

    root = tmp_path_factory.mktemp("synthetic_5") / "synthetic"
    generate(root, seed=3, size=0.05, workers=1, log=None)
    return root
