"""The fixture shared by the ablation-row tests: a real synthetic batch, built once for the package."""
from __future__ import annotations

import pytest
import torch

SAMPLES = [0, 1, 2, 4]  # of the synthetic batch: h36m (3D + SMPL) x 2, mpii (2D only), up3d (SMPL, no 3D)


def subset(batch: dict, index: list[int]) -> dict:
    return {k: v[index] if torch.is_tensor(v) else [v[i] for i in index] for k, v in batch.items()}


@pytest.fixture(scope="package")
def data(tiny_data_module):
    dm = tiny_data_module
    batch = subset(next(iter(dm.train_dataloader())), SAMPLES)
    assert batch["has_3d"].tolist() == [True, True, False, False]
    assert batch["has_smpl"].tolist() == [True, True, False, True]
    return dm, batch, next(iter(dm.val_dataloader()[0]))
