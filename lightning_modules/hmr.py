"""``hmr``: the papers' Baseline, HMR's iterative regressor on ResNet-50's global feature (SPIN's setting).

Network: ``nets.regressor.HMRNet`` (3 IEF iterations of one regressor, 6D pose). Loss: the parametric
terms (``parametric.ParametricLoss``) of every iteration or the last (``model.supervise``), weighted by
``model.loss_weights`` (PyMAF's code's weights by default, so the Baseline and PyMAF differ only in their
networks).
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from lightning_modules.base import MeshRecoveryModule
from lightning_modules.nets.regressor import HMRNet
from lightning_modules.nets.resnet import ResNet50
from lightning_modules.parametric import ModelLoss, ParametricLoss


def build_backbone(cfg: Mapping[str, Any]) -> ResNet50:
    """ResNet-50 from the model config: ``backbone.weights`` (a torchvision-format ImageNet file or null) and
    ``backbone.width`` (64 = ResNet-50; smaller only for quick CPU runs and tests)."""
    return ResNet50(pretrained_path=cfg["backbone"]["weights"], width=int(cfg["backbone"]["width"]))


class HMRModule(MeshRecoveryModule):
    def build_network(self) -> nn.Module:
        return HMRNet(build_backbone(self.model_cfg), self.body, n_iter=int(self.model_cfg["n_iter"]))

    def build_loss(self) -> ModelLoss:
        return ParametricLoss(self.model_cfg, supervise=str(self.model_cfg["supervise"]))
