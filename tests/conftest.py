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


@pytest.fixture(scope="session")
def checkpoints(synthetic_5_per_set, tmp_path_factory) -> dict[str, str]:
    """A briefly trained checkpoint of each model (two steps of make train; narrow networks), built once."""
    from cli import train

    out = tmp_path_factory.mktemp("demo_runs")
    made = {}
    for model in ("hmr", "pymaf", "bigraph"):
        extra = ["model.net.width=0.125"] if model == "bigraph" else []
        summary = train.main([f"model={model}", "model.backbone.width=8", *extra, f"data.root={synthetic_5_per_set}",
                              "data.batch_size=2", "data.num_workers=0", "data.train.epoch_samples=4",
                              "trainer.max_epochs=1", "trainer.limit_val_batches=0", "logger=none",
                              "callbacks=[checkpoint]", f"out_dir={out}"])
        made[model] = summary["last_checkpoint"]
    return made
