"""``make train MODEL=bigraph|pymaf|hmr``: compose the config, build data and model, fit, report.

    python -m lightning_modules.train model=bigraph [data=bigraph_mix] [trainer=gpu] [key=value ...]

The run directory is ``<out_dir>/<run_name>`` (default ``<model>-<data>``); it receives the resolved
config (``config.yaml``), the checkpoints (``checkpoints/last.ckpt`` and the best by the first
evaluation set's PA-MPJPE) and the logger's files. ``ckpt_path=last`` resumes the run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from body.cli import run_cli
from body.errors import UserError
from configs.loader import compose

MODELS = ("hmr", "pymaf", "bigraph")


def model_class(name: str):
    """The LightningModule class of a model name (imports only the one needed)."""
    if name == "hmr":
        from lightning_modules.hmr import HMRModule
        return HMRModule
    if name == "pymaf":
        from lightning_modules.pymaf import PyMAFModule
        return PyMAFModule
    if name == "bigraph":
        from lightning_modules.bigraph import BiGraphModule
        return BiGraphModule
    raise UserError(f"unknown model {name!r}: valid choices are {', '.join(MODELS)}")


def build_module(model_cfg: dict, body_cfg: dict, eval_sets, img_res: int):
    """The LightningModule of a model config; an invalid switch value becomes a one-line ``UserError``."""
    cls = model_class(model_cfg["name"])
    try:
        return cls(model=model_cfg, optim=model_cfg.get("optim"), body=body_cfg, eval_sets=eval_sets, img_res=img_res)
    except ValueError as e:   # the networks validate their switches with ValueError naming the choices
        raise UserError(f"model config ({model_cfg['name']}): {e}") from e


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
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from callbacks import GTJointMixing
    from datamodules.mixed import MixedDataModule

    pl.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(cfg.out_dir) / (cfg.run_name or f"{cfg.ablation or cfg.model.name}-{cfg.data.get('name', 'data')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")

    data = MixedDataModule(OmegaConf.to_container(cfg.data, resolve=True))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module = build_module(model_cfg, OmegaConf.to_container(cfg.body, resolve=True), data.eval_names, data.img_res)
    monitor = f"val/{data.eval_names[0]}/pa_mpjpe" if data.eval_names else None
    checkpoints = ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), save_last=True, monitor=monitor,
                                  mode="min", save_top_k=1 if monitor else 0,
                                  filename="best-{epoch:03d}")
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), default_root_dir=str(run_dir),
                         logger=make_logger(cfg, run_dir), callbacks=[checkpoints, GTJointMixing()])
    ckpt = cfg.ckpt_path
    if ckpt == "last":
        ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    metrics = {k: round(float(v), 3) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    summary = {"run_dir": str(run_dir), "last_checkpoint": checkpoints.last_model_path,
               "best_checkpoint": checkpoints.best_model_path, "skipped_samples": data.skipped.count,
               "validation": metrics}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
