"""The callbacks a run uses, by the names its config lists (``callbacks:`` in configs/train.yaml and in a
model config, e.g. BiGraph's ``gt_joint_mixing``).

Each factory takes the composed training config, the run directory and the LightningModule (its
evaluation sets and their protocols), and returns a Lightning callback built from the config's values
(defaults live in the YAML).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import pytorch_lightning as pl

from runtime.errors import UserError


def checkpoint_monitor(module: pl.LightningModule) -> tuple[str | None, str]:
    """The metric best checkpoints are chosen by, and its mode: the first evaluation set's primary metric
    (``lightning_modules.evaluation.primary_metric``: PA-MPJPE of the final mesh for 3D sets, BiGraph's
    ``pa_mpjpe_np``), or None without evaluation sets."""
    from lightning_modules.evaluation import primary_metric

    if not module.eval_sets:
        return None, "min"
    key, mode = primary_metric(module.evaluators[0].protocol, module.final_mesh_suffix)
    return f"val/{module.eval_sets[0]}/{key}", mode


def checkpointing(cfg: Mapping[str, Any], run_dir: Path, module: pl.LightningModule) -> list[pl.Callback]:
    """``checkpoints/last.ckpt`` after every epoch (and every ``checkpoint_minutes`` of training), plus
    ``best-epoch=<e>.ckpt`` by :func:`checkpoint_monitor` (none without evaluation sets); every checkpoint holds
    the run's resolved config (``run_config``). Separate callbacks, because Lightning's ``save_last`` rewrites
    last.ckpt only when a top-k checkpoint was saved at that step: a run whose best epoch was 0 would resume
    from epoch 0. The first is the epoch-end ``last.ckpt``, the second (if any) the best."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from datetime import timedelta

    folder = str(run_dir / "checkpoints")
    latest = ModelCheckpoint(dirpath=folder, filename="last", monitor=None, save_top_k=1, save_last=False,
                             enable_version_counter=False)
    monitor, mode = checkpoint_monitor(module)
    made = [latest]
    if monitor is not None:
        made.append(ModelCheckpoint(dirpath=folder, monitor=monitor, mode=mode, save_top_k=1, save_last=False,
                                    filename="best-{epoch:03d}"))
    if cfg.get("checkpoint_minutes"):   # last.ckpt also within epochs, by training time
        made.append(ModelCheckpoint(dirpath=folder, filename="last", monitor=None, save_top_k=1, save_last=False,
                                    enable_version_counter=False,
                                    train_time_interval=timedelta(minutes=float(cfg["checkpoint_minutes"]))))
    from callbacks.random_states import RandomStatesInCheckpoint

    made += [ConfigInCheckpoint(cfg), RandomStatesInCheckpoint()]
    return made


class ConfigInCheckpoint(pl.Callback):
    """Store the run's resolved config (plain containers: weights-only loadable) as ``checkpoint["run_config"]``."""

    def __init__(self, cfg: Mapping[str, Any]):
        from lightning_modules.checkpoints import plain_data

        self.cfg = plain_data(dict(cfg), "run config")

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["run_config"] = self.cfg


def gt_joint_mixing(cfg: Mapping[str, Any], run_dir: Path, module: pl.LightningModule) -> pl.Callback:
    """BiGraph's ground-truth share of RoI joints, from ``model.gt_joint_ratio`` at epoch 0 to 0 at the last."""
    from callbacks.gt_joint_mixing import GTJointMixing

    return GTJointMixing(start=float(cfg["model"]["gt_joint_ratio"]))


def preemption(cfg: Mapping[str, Any], run_dir: Path, module: pl.LightningModule) -> pl.Callback:
    """Save ``<run dir>/hpc_ckpt_<n>.ckpt`` when SIGTERM or SIGUSR1 stops the run (``callbacks.preemption``)."""
    from callbacks.preemption import PreemptionCheckpoint

    return PreemptionCheckpoint(run_dir)


def progress(cfg: Mapping[str, Any], run_dir: Path, module: pl.LightningModule) -> pl.Callback:
    """Plain progress lines in batch jobs and throughput metrics (``callbacks.progress``)."""
    from callbacks.progress import ProgressLines

    return ProgressLines(batch_size=int(cfg["data"]["batch_size"]))


def overlays(cfg: Mapping[str, Any], run_dir: Path, module: pl.LightningModule) -> pl.Callback:
    """The predicted mesh on a few validation samples after each validation (``callbacks.overlays``)."""
    from callbacks.overlays import MeshOverlays

    return MeshOverlays(run_dir)


CALLBACKS: dict[str, Callable[[Mapping[str, Any], Path, pl.LightningModule], pl.Callback | list[pl.Callback]]] = {
    "checkpoint": checkpointing,
    "preemption": preemption,
    "progress": progress,
    "overlays": overlays,
    "gt_joint_mixing": gt_joint_mixing,
}


def callback_names(cfg: Mapping[str, Any]) -> list[str]:
    """The run's callbacks: the training config's list, then the model config's, each name once."""
    names: list[str] = []
    for where, listed in (("callbacks", cfg.get("callbacks")), ("model.callbacks", cfg["model"].get("callbacks"))):
        for name in listed or []:
            if name not in CALLBACKS:
                raise UserError(f"{where}: unknown callback {name!r}; valid choices are {', '.join(CALLBACKS)}")
            if name not in names:
                names.append(name)
    return names


def build_callbacks(cfg: Mapping[str, Any], run_dir: Path, module: pl.LightningModule) -> dict[str, list[pl.Callback]]:
    """name -> the callbacks of every name the config lists (:func:`callback_names`)."""
    built = {name: CALLBACKS[name](cfg, run_dir, module) for name in callback_names(cfg)}
    return {name: list(made) if isinstance(made, list) else [made] for name, made in built.items()}
