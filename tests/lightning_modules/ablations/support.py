"""Rows, constants and helpers shared by the ablation-row tests (``configs/ablations.yaml``).

Each row is built as its LightningModule with reduced widths (``build``); the checks compare with an
independent computation in their test file or with a contrasting row.
"""
from __future__ import annotations

import contextlib

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from configs.loader import ablation_rows, compose
from lightning_modules.registry import model_class

ROWS = ablation_rows()
ROW_NAMES = list(ROWS)
PYMAF_ROWS = [n for n in ROW_NAMES if ROWS[n]["model"] == "pymaf"]
BIGRAPH_ROWS = [n for n in ROW_NAMES if ROWS[n]["model"] == "bigraph"]
FULL_BIGRAPH = "bigraph_t4_d_full"
N_LEVELS = 3


def row_model_config(overrides: list[str]) -> dict:
    """The composed model config with the reduced test widths."""
    cfg = OmegaConf.to_container(compose("train", overrides).model)
    cfg["backbone"]["width"] = 8
    if cfg["name"] == "pymaf":
        cfg["deconv_channels"] = 32
    if cfg["name"] == "bigraph":
        cfg["net"]["width"] = 0.125
    return cfg


def build_from(overrides: list[str], eval_sets, seed: int = 0) -> pl.LightningModule:
    cfg = row_model_config(overrides)
    torch.manual_seed(seed)
    return model_class(cfg["name"])(model=cfg, optim=cfg["optim"], eval_sets=eval_sets)


def build(name: str, eval_sets, seed: int = 0) -> pl.LightningModule:
    return build_from([f"model={ROWS[name]['model']}", f"ablation={name}"], eval_sets, seed)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def hooks(*handles):
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_eval(module, batch):
    module.eval()
    with torch.no_grad():
        return module(batch)


def max_diff(a, b) -> float:
    return float((a - b).abs().max())
