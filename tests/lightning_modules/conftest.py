"""Shared fixture of the LightningModule tests: a tiny synthetic data set and its data module, built once."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from datamodules.mixed import MixedDataModule
from datamodules.synthetic.dataset import generate


@pytest.fixture(scope="package")
def tiny_data_module(tmp_path_factory) -> MixedDataModule:
    """The synthetic generator at size 0.01 (10 samples a training source, 1 an evaluation set), no
    augmentation (fixed samples), training batches of 8, evaluation batches of 4, no worker processes."""
    root = tmp_path_factory.mktemp("lightning_modules") / "synthetic"
    generate(root, seed=0, size=0.01, workers=1, log=None)
    cfg = OmegaConf.to_container(OmegaConf.load("configs/data/synthetic.yaml"))
    cfg.update(root=str(root), batch_size=8, eval_batch_size=4, num_workers=0)
    cfg["augment"]["enabled"] = False
    return MixedDataModule(cfg, rank=0, world_size=1)
