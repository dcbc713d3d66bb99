"""The run's logger, by ``logger.name``: ``csv`` (``<run dir>/metrics.csv``), ``wandb`` (offline unless
credentials are configured; one W&B run per run directory, ``wandb_run_id``) or ``none``.

The CSV log only grows: a resumed run appends its rows to the file the interrupted run left (Lightning's own
CSV logger deletes it), and a new run in a folder that holds an earlier log first moves that log aside as
``metrics.<n>.csv``, so no run's rows are lost.
"""
from __future__ import annotations

import csv
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from runtime.errors import UserError

LOGGERS = ("csv", "wandb", "none")


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps an existing ``metrics.csv`` and appends to it (its header extended
    when new columns appear, as Lightning's writer does within a run)."""

    def _check_log_dir_exists(self) -> None:   # Lightning's deletes the metrics file here
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` writing through :class:`AppendingExperimentWriter` (module docstring)."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def set_aside_earlier_log(run_dir: Path) -> Path | None:
    """Before a new (not resumed) run: move ``metrics.csv`` to the first free ``metrics.<n>.csv``."""
    log = run_dir / "metrics.csv"
    if not log.is_file():
        return None
    n = 1
    while (run_dir / f"metrics.{n}.csv").exists():
        n += 1
    target = run_dir / f"metrics.{n}.csv"
    os.replace(log, target)
    return target


def wandb_run_id(run_dir: Path) -> str:
    """The run's W&B id, kept in ``<run dir>/wandb_run_id`` so that a resumed or requeued job continues the same
    W&B run (offline: each attempt's ``wandb/offline-run-*-<id>`` folder carries it, and ``wandb sync`` puts them
    into that one run). Written by rank 0 only, the rank that logs."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    path = run_dir / "wandb_run_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)   # 8 characters of [0-9a-f], a valid W&B run id
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
    return run_id


def make_logger(cfg: Mapping[str, Any], run_dir: Path):
    """The Lightning logger of ``cfg['logger']`` writing into ``run_dir``, or False for ``none``."""
    name = cfg["logger"]["name"]
    if name == "csv":
        return AppendingCSVLogger(save_dir=str(run_dir), name="", version="")
    if name == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        offline = cfg["logger"].get("offline")
        if offline is None:
            offline = not (os.environ.get("WANDB_API_KEY") or Path.home().joinpath(".netrc").exists())
        return WandbLogger(project=cfg["logger"].get("project"), name=run_dir.name, save_dir=str(run_dir),
                           offline=offline, id=wandb_run_id(run_dir), resume="allow")
    if name == "none":
        return False
    raise UserError(f"unknown logger {name!r}: valid choices are {', '.join(LOGGERS)}")


def finish_logger(logger) -> None:
    """Close the logger's run at the end of ``make train``: W&B keeps a run open until the process exits
    (Lightning does not finish it), so a second run in the same process would log into the first.

    ``wandb.finish`` returns before W&B's service process has written the run's last records to its ``.wandb``
    file (a CI run read a file holding only its header); ``wandb.teardown`` waits for that service to write
    everything and exit. Its own atexit hook would do the same at exit, but W&B documents that hook as unreliable
    next to ``multiprocessing`` (our data workers and forkserver), so the run directory is complete when
    ``make train`` returns, e.g. before a SLURM script copies it."""
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        if wandb.run is None:
            return
        try:
            wandb.finish()
            wandb.teardown()
        except (OSError, ConnectionError) as err:   # its service process was stopped with us (a cluster's signal)
            print(f"note: W&B could not close its run ({type(err).__name__}); the next attempt continues it",
                  flush=True)
