"""Saving when the run is told to stop: SIGTERM (a cluster's preemption or time limit, ``kill``, ``scancel``)
and SIGUSR1 (SLURM's early warning, ``--signal=SIGUSR1@90``).

Lightning turns SIGTERM into a ``SIGTERMException`` at the end of the current training step, on every rank;
this callback then saves the full training state as ``<run dir>/hpc_ckpt_<n>.ckpt`` before the process
exits, and ``make train`` with the same arguments resumes from the newest checkpoint
(``lightning_modules.checkpoints.newest_checkpoint``). Under SLURM with auto-requeue, Lightning's own SIGUSR1
handler saves and requeues the job; elsewhere SIGUSR1 is handled as SIGTERM. Data-loader workers ignore both
signals (``datamodules.mixed``), so a signal sent to the whole process group stops the run through the
trainer, not through a dying worker.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_modules.checkpoints import next_signal_checkpoint


def _as_sigterm(signum, frame) -> None:
    signal.raise_signal(signal.SIGTERM)


class PreemptionCheckpoint(pl.Callback):
    """Save ``hpc_ckpt_<n>.ckpt`` in ``run_dir`` when a signal stops training (module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.saved: Path | None = None
        self._previous_sigusr1 = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lightning_fabric.plugins.environments import SLURMEnvironment

        # Under SLURM Lightning handles SIGUSR1 (save and requeue); leave it to Lightning there.
        if stage == "fit" and not SLURMEnvironment.detect() and threading.current_thread() is threading.main_thread():
            self._previous_sigusr1 = signal.signal(signal.SIGUSR1, _as_sigterm)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._previous_sigusr1 is not None:
            signal.signal(signal.SIGUSR1, self._previous_sigusr1)
            self._previous_sigusr1 = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        path = next_signal_checkpoint(self.run_dir)
        trainer.save_checkpoint(str(path))
        self.saved = path
        rank_zero_info(f"stopped by a signal after step {trainer.global_step}: saved {path}; the same make train "
                       "command resumes from it")
