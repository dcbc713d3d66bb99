"""Training progress as plain lines, and throughput as metrics.

A progress bar redraws one line with carriage returns: fine on a terminal, garbage in a batch job's log file.
``make train`` keeps Lightning's bar when stderr is a terminal and otherwise turns it off (``cli.train``);
this callback then prints, on rank 0 at the trainer's logging interval (``trainer.log_every_n_steps``), one line

    epoch 2/50 step 1200/250000 loss 12.35 | 2,310 samples/s, data 4% | ETA 3h12m

and logs, in either case, ``train/samples_per_s`` (all ranks together), ``train/data_share`` (the part of
the step time spent waiting for the loader) and ``train/lr`` at the trainer's logging interval. Times are wall-clock times
between the hooks of consecutive steps.
"""
from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only


def format_duration(seconds: float) -> str:
    """12 s, 4m05s, 3h12m, 2d05h."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class ProgressLines(pl.Callback):
    """Plain progress lines when there is no progress bar, throughput metrics always (module docstring)."""

    def __init__(self, batch_size: int):
        self.batch_size = int(batch_size)
        self._window: dict[str, float] = {"steps": 0, "data": 0.0, "total": 0.0}
        self._last_end: float | None = None
        self._batch_start: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = time.perf_counter()     # the first fetch of the epoch counts as data time
        self._window = {"steps": 0, "data": 0.0, "total": 0.0}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is not None and self._batch_start is not None:
            self._window["data"] += self._batch_start - self._last_end
            self._window["total"] += now - self._last_end
            self._window["steps"] += 1
        self._last_end = now
        if trainer.global_step % trainer.log_every_n_steps != 0 or not self._window["total"]:
            return
        rates = self.rates(trainer)
        pl_module.log_dict(rates, on_step=True, on_epoch=False, rank_zero_only=True)
        if trainer.progress_bar_callback is None:
            self.print_line(trainer, outputs, rates)
        self._window = {"steps": 0, "data": 0.0, "total": 0.0}

    def rates(self, trainer: pl.Trainer) -> dict[str, float]:
        w = self._window
        rates = {"train/samples_per_s": w["steps"] * self.batch_size * trainer.world_size / w["total"],
                 "train/data_share": w["data"] / w["total"]}
        if trainer.optimizers:
            rates["train/lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        return rates

    @rank_zero_only
    def print_line(self, trainer: pl.Trainer, outputs: Any, rates: dict[str, float]) -> None:
        total = trainer.estimated_stepping_batches
        steps_per_s = self._window["steps"] / self._window["total"]
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss_text = f" loss {float(loss):.4g}" if loss is not None else ""
        eta = f" | ETA {format_duration((total - trainer.global_step) / steps_per_s)}" \
            if total not in (None, float("inf")) and steps_per_s > 0 else ""
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {trainer.global_step}"
              f"/{total if total != float('inf') else '?'}{loss_text} | {rates['train/samples_per_s']:,.0f} samples/s, "
              f"data {100 * rates['train/data_share']:.0f}%{eta}", flush=True)
