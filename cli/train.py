"""``make train MODEL=bigraph|pymaf|hmr``: compose the config, build data and model, fit, report.

    python -m cli.train model=bigraph [data=bigraph_mix] [trainer=gpu] [key=value ...]

The run directory is ``<out_dir>/<run_name>`` (default ``<ablation or model>-<data>-s<seed>``); it receives
the resolved config (``config.yaml``; a differing earlier one is kept as ``config.<n>.yaml``), the checkpoints
(``checkpoints/last.ckpt``, the best by the first evaluation set's primary metric,
``callbacks.registry.checkpoint_monitor``, and ``hpc_ckpt_<n>.ckpt`` when a signal stopped the run,
``callbacks.preemption``) and the logger's files (``callbacks.loggers``).

Running the same command again resumes: a run directory with checkpoints continues from the newest of them
(by global step) when its saved config equals the composed one, and stops in one line otherwise; the first
lines say which. ``ckpt_path=<file>|last`` resumes from that checkpoint under the composed config;
``init_weights=<ckpt>`` starts a new run from a checkpoint's weights (PyMAF's second stage; not read when
the run resumes); ``experiment=<recipe>`` sets a paper's recipe (configs/experiment/). On real data the run
stops unless it has ImageNet weights and licensed SMPL (configs/guards.py).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from configs.guards import require_paper_setup
from configs.loader import compose
from configs.schema import trainer_kwargs
from runtime import allocator
from runtime.cli import run_cli
from runtime.errors import UserError


def run_name(cfg) -> str:
    """The run directory's name: ``run_name``, else ``<ablation or model>-<data>-s<seed>``."""
    return cfg.run_name or f"{cfg.ablation or cfg.model.name}-{cfg.data.get('name', 'data')}-s{cfg.seed}"


def plain_config(cfg) -> dict:
    """The composed config as plain containers, as the saved config.yaml reads back (a structured config's tuple
    defaults become lists): what :func:`resume_point` compares with it."""
    from lightning_modules.checkpoints import plain_data

    return plain_data(OmegaConf.to_container(cfg, resolve=True), "config")


def first_difference(a, b, where: str = "") -> str | None:
    """The first key (dotted) at which two plain configs differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if a == b else f"{where}: {a!r} -> {b!r}"


def resume_point(plain: dict, run_dir: Path) -> tuple[str | None, str]:
    """(checkpoint to resume from or None, the line that says so): the explicit ``ckpt_path``, else the run
    directory's newest checkpoint when its saved config equals ``plain``; a run directory with checkpoints and
    another config stops the run in one line."""
    from lightning_modules.checkpoints import newest_checkpoint, read_checkpoint

    explicit = plain["ckpt_path"]
    if explicit:
        path = str(run_dir / "checkpoints" / "last.ckpt") if explicit == "last" else explicit
        step = read_checkpoint(path, what="ckpt_path").get("global_step", 0)   # untrusted: weights only
        return path, f"resuming {run_dir} from {path} (step {step}; ckpt_path=)"
    newest = newest_checkpoint(run_dir)
    if newest is None:
        return None, f"new run {run_dir}"
    saved_file = run_dir / "config.yaml"
    saved = OmegaConf.to_container(OmegaConf.load(saved_file), resolve=True) if saved_file.is_file() else {}
    differs = first_difference({**saved, "ckpt_path": None}, {**plain, "ckpt_path": None})
    if differs:
        raise UserError(f"{run_dir} holds checkpoints of a run with another config ({differs}): give the arguments it "
                        "was started with to resume it, run_name=<new name> to start a new run, or ckpt_path=last "
                        "to resume it under this config")
    path, step = newest
    return str(path), f"resuming {run_dir} from {path} (step {step})"


def save_config(plain: dict, run_dir: Path) -> None:
    """``<run dir>/config.yaml`` := the resolved config, written whole (a rank that reads it meanwhile sees the old
    or the new file); a differing earlier one is kept as ``config.<n>.yaml``."""
    saved_file = run_dir / "config.yaml"
    if saved_file.is_file() and first_difference(OmegaConf.to_container(OmegaConf.load(saved_file), resolve=True),
                                                 plain):
        saved_file.replace(run_dir / f"config.{len(list(run_dir.glob('config.*.yaml'))) + 1}.yaml")
    partial = run_dir / f".config.yaml.{os.getpid()}"
    OmegaConf.save(OmegaConf.create(plain), partial)
    partial.replace(saved_file)


def summary_line(summary: dict, steps: int, seconds: float, module) -> str:
    """The run's last line: where it is, how far it got, its primary validation metric, its checkpoint."""
    from callbacks.progress import format_duration
    from callbacks.registry import checkpoint_monitor

    from lightning_modules.mean_pose import mean_pose_counterpart

    monitor, _ = checkpoint_monitor(module)
    value = summary["validation"].get(monitor) if monitor else None
    baseline = mean_pose_counterpart(monitor, summary.get("mean_pose") or {}) if monitor else None
    metric = f"; {monitor} {value:.4g}" if value is not None else ""
    metric += f" (mean pose {baseline:.4g})" if value is not None and baseline is not None else ""
    last = summary["last_checkpoint"] or "no checkpoint"
    return f"done: {summary['run_dir']} at step {steps} after {format_duration(seconds)}{metric}; last: {last}"


def main(argv: list[str] | None = None) -> dict:
    cfg = compose("train", sys.argv[1:] if argv is None else argv)
    require_paper_setup(OmegaConf.to_container(cfg, resolve=True))
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    leader = rank_zero_only.rank == 0   # from the launcher's environment (DDP, SLURM): side effects on rank 0 only
    if leader:
        print(allocator.describe(), flush=True)
    import pytorch_lightning as pl

    from callbacks.loggers import finish_logger, make_logger, set_aside_earlier_log
    from callbacks.registry import build_callbacks
    from datamodules.mixed import MixedDataModule
    from lightning_modules.registry import build_module, load_weights
    from runtime.ranks import close_process_group

    pl.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(cfg.out_dir) / run_name(cfg)
    plain = plain_config(cfg)
    ckpt, how = resume_point(plain, run_dir)
    if leader:
        print(how, flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and (earlier := set_aside_earlier_log(run_dir)) is not None:
            print(f"an earlier run's metrics.csv was moved to {earlier}", flush=True)
        save_config(plain, run_dir)

    data = MixedDataModule(OmegaConf.to_container(cfg.data, resolve=True))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module = build_module(model_cfg, OmegaConf.to_container(cfg.body, resolve=True), data.eval_names, data.img_res)
    if cfg.init_weights and not ckpt:
        load_weights(module, cfg.init_weights)
    if cfg.init_weights and leader:
        print(f"init_weights={cfg.init_weights} is not read: the run resumes, its checkpoint holds the weights"
              if ckpt else f"initialised the model from {cfg.init_weights} (weights only; a new run)", flush=True)
    callbacks = build_callbacks(plain, run_dir, module)
    trainer_cfg = trainer_kwargs(OmegaConf.to_container(cfg.trainer, resolve=True))
    trainer_cfg["enable_checkpointing"] = "checkpoint" in callbacks   # no hidden default checkpointing
    if trainer_cfg.get("enable_progress_bar") is None:   # a bar on a terminal; plain lines in a log file
        trainer_cfg["enable_progress_bar"] = sys.stderr.isatty()
    logger = make_logger(plain, run_dir)
    if logger:
        logger.log_hyperparams({"config": plain})   # the resolved config (no secrets: none is a config value)
    trainer = pl.Trainer(**trainer_cfg, default_root_dir=str(run_dir), logger=logger,
                         callbacks=[c for made in callbacks.values() for c in made])
    from pytorch_lightning.utilities.exceptions import SIGTERMException
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt, weights_only=True if ckpt else None)
    except SIGTERMException:   # callbacks.preemption saved the state; 128 + SIGTERM, as a killed process
        finish_logger(logger)
        if leader:
            print(f"stopped by a signal after step {trainer.global_step}; run the same command to resume", flush=True)
        close_process_group()
        raise SystemExit(143) from None
    finish_logger(logger)
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    # The mean-pose baseline on the same validation batches (lightning_modules/mean_pose.py), on every process.
    from lightning_modules.mean_pose import mean_pose_rows

    mean_pose = mean_pose_rows(module, data.val_dataloader(), list(trainer.num_val_batches or [])) if metrics else {}
    made = callbacks.get("checkpoint", [])
    monitored = [c for c in made if getattr(c, "monitor", None)]
    last = run_dir / "checkpoints" / "last.ckpt"
    summary = {"run_dir": str(run_dir),
               "last_checkpoint": str(last) if made and last.is_file() else "",
               "best_checkpoint": monitored[0].best_model_path if monitored else "",
               "skipped_samples": data.skipped.count,
               "allocator": allocator.active_policy(),
               "validation": metrics,
               "mean_pose": {f"val/{name}/{k}": v for name, row in mean_pose.items() for k, v in row.items()}}
    if leader:
        print(json.dumps(summary, indent=2))
        print(summary_line(summary, trainer.global_step, time.perf_counter() - started, module), flush=True)
    close_process_group()
    return summary


if __name__ == "__main__":
    run_cli(main)
