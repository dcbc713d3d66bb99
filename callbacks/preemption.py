"""Saving when the run is told to stop: SIGTERM (a cluster's preemption or time limit, ``kill``, ``scancel``)
and SIGUSR1 (SLURM's early warning, ``--signal=SIGUSR1@90``).

From the start of training the signal handlers only note the signal. At the end of every training step the
ranks agree (an all-reduce of the noted signal), so all of them stop after the same step, through Lightning's
own stop (``SIGTERMException`` once the step's progress and logs are recorded); then every rank saves the full
training state as ``<run dir>/hpc_ckpt_<n>.ckpt``, rank 0 closes the W&B run and requeues the job when SLURM's
SIGUSR1 asked for it (``scontrol requeue``), and ``make train`` exits with 143. The same
command resumes from the newest checkpoint (``lightning_modules.checkpoints.newest_checkpoint``).

Lightning's own handlers save inside the signal handler, which under DDP can run between two collectives on
one rank and not on the other: a save there (a barrier) then waits forever for a peer that is inside a
gradient all-reduce. They are replaced while training runs. Data-loader workers ignore both signals
(``datamodules.streams.ignore_stop_signals``), so a signal sent to the whole process group stops the run
through the trainer, not through a dying worker.

W&B's service process is not ours: a SIGTERM that SLURM sends to every process of the job (preemption without
the early warning) stops it at once, and the rows it had not yet written to the offline file (W&B writes every
15 s) are lost from that attempt's W&B history; metrics.csv (``logger=csv``) and the checkpoint lose nothing.
SIGUSR1, which a job of ``make slurm`` receives before its time limit, has no such loss.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lightning_modules.checkpoints import next_signal_checkpoint

# What a rank noted, as a number the ranks can all-reduce with max: SLURM's warning outranks a plain stop.
NONE, STOP, REQUEUE = 0, 1, 2


class PreemptionCheckpoint(pl.Callback):
    """Note SIGTERM / SIGUSR1; after the step in which one came, on every rank: stop, save, requeue if asked."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.saved: Path | None = None
        self.noted = NONE
        self.stopping = NONE
        self._previous: dict[int, object] = {}

    def _note(self, signum, frame) -> None:
        under_slurm = "SLURM_JOB_ID" in os.environ
        self.noted = max(self.noted, REQUEUE if signum == signal.SIGUSR1 and under_slurm else STOP)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning installed its handlers (at the start of fit): ours replace them while training runs.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in (signal.SIGTERM, signal.SIGUSR1)}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _agreed(self, trainer: pl.Trainer) -> int:
        """The largest note over the ranks (every rank calls this at the same step)."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return self.noted
        flag = torch.tensor([self.noted], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if not self._previous or self.stopping:
            return
        noted = self._agreed(trainer)
        if noted == NONE:
            return
        self.stopping = noted
        # Lightning's own stop flag: it raises SIGTERMException at the end of this step, after the step's progress
        # and logs are recorded, on every rank (all of them set it here, at the same step).
        trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or self.saved is not None:
            return
        self._save(trainer)
        if self.stopping == REQUEUE and trainer.is_global_zero:
            # The requeue stops every process of the job at once, W&B's service with them: close the run first,
            # or the rows it has not yet written to its offline file are lost (a test found the first attempt's
            # history empty).
            from callbacks.loggers import finish_logger

            finish_logger(trainer.logger)
            job = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ["SLURM_JOB_ID"]
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            rank_zero_info(f"requeued SLURM job {job}" if done.returncode == 0 else
                           f"could not requeue SLURM job {job}: {done.stderr.strip()}")
        # Our handlers stay (a SIGTERM that follows, e.g. the requeue's, is only noted); Lightning's teardown
        # then restores the handlers the process had before fit.

    def _save(self, trainer: pl.Trainer) -> None:
        path = next_signal_checkpoint(self.run_dir)
        trainer.save_checkpoint(str(path))
        self.saved = path
        rank_zero_info(f"stopped by a signal after step {trainer.global_step}: saved {path}; the same make train "
                       "command resumes from it")
