"""``make train MODEL=bigraph|pymaf|hmr``: compose the config, build data and model, fit, report.

    python -m cli.train model=bigraph [data=bigraph_mix] [trainer=gpu] [key=value ...]

The run directory is ``<out_dir>/<run_name>`` (default ``<model>-<data>``); it receives the resolved
config (``config.yaml``), the checkpoints (``checkpoints/last.ckpt`` and the best by the first
evaluation set's primary metric, ``callbacks.registry.checkpoint_monitor``) and the logger's files.
``ckpt_path=last`` resumes the run; ``init_weights=<ckpt>`` starts a new run from a checkpoint's weights
(PyMAF's second stage); ``experiment=<recipe>`` sets a paper's recipe (configs/experiment/). On real data the
run stops unless it has ImageNet weights and licensed SMPL (configs/guards.py).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from configs.guards import require_paper_setup
from configs.loader import compose
from configs.schema import trainer_kwargs
from runtime import allocator
from runtime.cli import run_cli
from runtime.errors import UserError


def make_logger(cfg, run_dir: Path):
    name = cfg.logger.name
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger
        return CSVLogger(save_dir=str(run_dir), name="", version="")
    if name == "wandb":
        import os

        from pytorch_lightning.loggers import WandbLogger
        offline = cfg.logger.offline
        if offline is None:
            offline = not (os.environ.get("WANDB_API_KEY") or Path.home().joinpath(".netrc").exists())
        return WandbLogger(project=cfg.logger.project, name=run_dir.name, save_dir=str(run_dir), offline=offline)
    raise UserError(f"unknown logger {name!r}: valid choices are csv, wandb")


def main(argv: list[str] | None = None) -> dict:
    cfg = compose("train", sys.argv[1:] if argv is None else argv)
    require_paper_setup(OmegaConf.to_container(cfg, resolve=True))
    print(allocator.describe(), flush=True)
    import pytorch_lightning as pl

    from callbacks.registry import build_callbacks
    from datamodules.mixed import MixedDataModule
    from lightning_modules.registry import build_module, load_weights

    pl.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(cfg.out_dir) / (cfg.run_name or f"{cfg.ablation or cfg.model.name}-{cfg.data.get('name', 'data')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")

    data = MixedDataModule(OmegaConf.to_container(cfg.data, resolve=True))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module = build_module(model_cfg, OmegaConf.to_container(cfg.body, resolve=True), data.eval_names, data.img_res)
    if cfg.init_weights:
        if cfg.ckpt_path:
            raise UserError("init_weights and ckpt_path both set: init_weights starts a new run from a checkpoint's "
                            "weights, ckpt_path resumes one; pass one of them")
        load_weights(module, cfg.init_weights)
        print(f"initialised the model from {cfg.init_weights} (weights only; a new run)", flush=True)
    callbacks = build_callbacks(OmegaConf.to_container(cfg, resolve=True), run_dir, module)
    trainer_cfg = trainer_kwargs(OmegaConf.to_container(cfg.trainer, resolve=True))
    trainer_cfg["enable_checkpointing"] = "checkpoint" in callbacks   # no hidden default checkpointing
    trainer = pl.Trainer(**trainer_cfg, default_root_dir=str(run_dir), logger=make_logger(cfg, run_dir),
                         callbacks=list(callbacks.values()))
    ckpt = cfg.ckpt_path
    if ckpt == "last":
        ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    if ckpt:
        from lightning_modules.checkpoints import read_checkpoint
        read_checkpoint(ckpt, what="ckpt_path")   # untrusted: weights only, a one-line refusal otherwise
    trainer.fit(module, datamodule=data, ckpt_path=ckpt, weights_only=True if ckpt else None)
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    checkpoints = callbacks.get("checkpoint")
    summary = {"run_dir": str(run_dir),
               "last_checkpoint": checkpoints.last_model_path if checkpoints else "",
               "best_checkpoint": checkpoints.best_model_path if checkpoints else "",
               "skipped_samples": data.skipped.count,
               "allocator": allocator.active_policy(),
               "validation": metrics}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
