"""``hmr``: the papers' Baseline, HMR's iterative regressor on ResNet-50's global feature (SPIN's setting).

Network: ``nets.regressor.HMRNet`` (3 IEF iterations of one regressor, 6D pose). Losses: the parametric
terms (``parametric``), weighted by ``model.loss_weights`` (PyMAF's code's weights by default, so the
Baseline and PyMAF differ only in their networks).
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

from lightning_modules.base import MeshRecoveryModule
from lightning_modules.nets.regressor import HMRNet
from lightning_modules.nets.resnet import ResNet50
from lightning_modules.parametric import parametric_terms


def build_backbone(cfg: Mapping[str, Any]) -> ResNet50:
    """ResNet-50 from the model config: ``backbone.weights`` (a torchvision-format ImageNet file or null) and
    ``backbone.width`` (64 = ResNet-50; smaller only for quick CPU runs and tests)."""
    b = dict(cfg.get("backbone", {}) or {})
    return ResNet50(pretrained_path=b.get("weights"), width=int(b.get("width", 64)))


class HMRModule(MeshRecoveryModule):
    def build_network(self) -> nn.Module:
        return HMRNet(build_backbone(self.model_cfg), self.body, n_iter=int(self.model_cfg.get("n_iter", 3)))

    def compute_losses(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, Tensor]:
        terms = parametric_terms(self.decode, batch, out["iterations"],
                                 openpose_weight=float(self.model_cfg.get("openpose_weight", 0.0)),
                                 supervise=str(self.model_cfg.get("supervise", "all")))
        return self.weighted(terms)
