"""The global random states of every rank in each checkpoint, restored when training resumes.

Dropout and BiGraph's ground-truth joint mixing (``lightning_modules.base.RoIJointSource``) draw from torch's
global generator; Lightning's checkpoints do not hold it, and a resumed run re-seeds from ``seed`` at its start,
so its draws after the resume differ from an uninterrupted run's. With this callback a resumed run continues
each rank's torch, CUDA, NumPy and Python streams where they were when the checkpoint was written, and its
weights match the uninterrupted run's bitwise (``tests/lightning_modules/test_resume_equivalence.py``).

The states are stored as tensors and plain lists (a checkpoint loads weights-only) under
``checkpoint["random_states"]``, one entry per rank (all ranks save together, so gathering them is a
collective). They are put back at ``on_train_start``, after everything a resumed run does before its first
step; a run on another number of ranks restores the ranks it has and says so.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from runtime.ranks import gather_from_ranks


def capture_random_states() -> dict[str, Any]:
    """This process's global random states as tensors and plain lists."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_random_states`."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomStatesInCheckpoint(pl.Callback):
    """Save every rank's global random states in checkpoints; restore this rank's when training resumes."""

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["random_states"] = gather_from_ranks(capture_random_states())

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get("random_states")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        states, self._pending = self._pending, None
        if not states:
            return
        rank = trainer.global_rank
        if len(states) != trainer.world_size and rank == 0:
            print(f"note: the checkpoint holds the random states of {len(states)} rank(s), this run has "
                  f"{trainer.world_size}: ranks without a saved state keep their seeded one", flush=True)
        if rank < len(states):
            restore_random_states(states[rank])
