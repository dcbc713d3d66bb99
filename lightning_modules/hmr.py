"""``hmr``: the papers' Baseline, HMR's iterative regressor on ResNet-50's global feature (SPIN's setting).

Network: ``nets.regressor.HMRNet`` (3 IEF iterations of one regressor, 6D pose, gradients through the
iterations, as SPIN's and PyMAF's ``models/hmr.py``). Loss: the parametric terms (``parametric.ParametricLoss``)
of the final estimate only (``model.supervise: last``, as PyMAF's trainer treats its ``hmr`` regressor:
``len_loop = 1``), weighted by ``model.loss_weights`` (PyMAF's code's weights, so the Baseline and PyMAF
differ only in their networks). ``supervise: all`` supervises every iteration instead (in neither paper).

PyMAF's Table 4 row "Global" (no pyramid, 1 regressor, each iteration supervised) is not this model but the
``pymaf_t4_global`` ablation row of ``pymaf``: the same forward with the same weights, its estimates detached
between iterations and each one supervised (``tests/lightning_modules/ablations/test_baseline.py``).
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
