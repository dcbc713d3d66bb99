"""Checks of a composed training config against the papers' setup, before anything is built.

The papers train ResNet-50 from ImageNet weights on licensed SMPL; a run on real data that silently starts
from random weights or from the suite's open body model would give numbers that cannot be compared with
theirs. So a training run on real data (any data config but ``synthetic``) stops in one line that says
what to set, unless ``allow_nonpaper_setup=true`` says the difference is intended. The synthetic data
(``make train``'s default) is exempt: it is made with the open body model and trained from scratch.
"""
from __future__ import annotations

from typing import Any, Mapping

from runtime.errors import UserError

SYNTHETIC_DATA = "synthetic"


def is_real_data(data: Mapping[str, Any]) -> bool:
    """Whether a data config names real data (anything but the suite's synthetic set)."""
    return str(data.get("name")) != SYNTHETIC_DATA


def require_paper_setup(cfg: Mapping[str, Any]) -> None:
    """Raise a one-line ``UserError`` when a training run on real data lacks ImageNet weights (and starts from
    no ``init_weights``) or uses the open body model, unless ``allow_nonpaper_setup`` is set."""
    if not is_real_data(cfg["data"]) or cfg.get("allow_nonpaper_setup"):
        return
    data = cfg["data"]["name"]
    if cfg["body"]["name"] != "smpl":
        raise UserError(f"data={data} is real data but body={cfg['body']['name']}: the papers use licensed SMPL, set "
                        "body=smpl body.smpl_dir=/path/to/smpl (README, 'Licensed SMPL'), or allow_nonpaper_setup=true")
    if not cfg["model"]["backbone"]["weights"] and not cfg.get("init_weights"):
        raise UserError(f"data={data} is real data but the ResNet-50 starts from random weights: the papers start "
                        "from ImageNet, set model.backbone.weights=/path/to/resnet50.pth (torchvision format; or "
                        "export IMAGENET_RESNET50 for the experiment configs), or allow_nonpaper_setup=true")
