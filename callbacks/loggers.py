"""The run's logger, by ``logger.name``: ``csv`` (``<run dir>/metrics.csv``), ``wandb`` or ``none``.

The CSV log only grows: a resumed run appends its rows to the file the interrupted run left (Lightning's own
CSV logger deletes it), and a new run in a folder that holds an earlier log first moves that log aside as
``metrics.<n>.csv``, so no run's rows are lost.
"""
from __future__ import annotations

import csv
import os
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
                           offline=offline)
    if name == "none":
        return False
    raise UserError(f"unknown logger {name!r}: valid choices are {', '.join(LOGGERS)}")
