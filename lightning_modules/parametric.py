"""A model's loss (``ModelLoss``) and the loss of parametric estimates (``ParametricLoss``: HMR; PyMAF's base).

A model's loss is a callable ``loss(batch, prediction, decoder) -> {term: weighted value}`` (the sum is
optimised, each term is logged): ``ModelLoss`` computes the unweighted ``terms`` and multiplies each by its
weight in ``model.loss_weights``; a term with weight 0 is dropped, a term without a weight is an error.

Parametric terms (HMR, PyMAF, BiGraph's SMPL branch), summed over the supervised estimates.

SPIN's / PyMAF's set, per estimate: 2D keypoints (confidence-weighted MSE on the 49 keypoints, OpenPose
part weighted by ``openpose_weight``), 3D joints (hip-centred, on samples with ``has_3d``), SMPL pose
(MSE on rotation matrices) and betas (MSE) on samples with ``has_smpl``, and the camera-scale term
exp(-10 s)^2. PyMAF's code adds each level's terms (every level is supervised: ``supervise="all"``); its
trainer supervises the HMR Baseline's final estimate only (``len_loop = 1``: ``supervise="last"``, the ``hmr``
model's default; its gradients still reach the earlier iterations through the later ones).
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from lightning_modules import losses as L
from lightning_modules.decoding import BodyDecoder
from lightning_modules.prediction import Prediction

SUPERVISE = ("all", "last")


def weight_terms(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> dict[str, Tensor]:
    """Multiply each named term by its weight; terms with weight 0 are dropped."""
    out = {}
    for name, value in terms.items():
        if name not in weights:
            raise KeyError(f"loss term {name!r} has no weight in model.loss_weights "
                           f"(configured: {', '.join(sorted(weights))})")
        if weights[name] != 0.0:
            out[name] = weights[name] * value
    return out


class ModelLoss:
    """Base of a model's loss (module docstring). ``model_cfg``: the model config (``loss_weights`` and the
    loss's own settings)."""

    def __init__(self, model_cfg: Mapping[str, Any]):
        self.cfg = model_cfg
        self.weights = {k: float(v) for k, v in model_cfg["loss_weights"].items()}

    def terms(self, batch: Mapping[str, Any], prediction: Prediction, decoder: BodyDecoder) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement terms()")

    def __call__(self, batch: Mapping[str, Any], prediction: Prediction, decoder: BodyDecoder) -> dict[str, Tensor]:
        return weight_terms(self.terms(batch, prediction, decoder), self.weights)


class ParametricLoss(ModelLoss):
    """:func:`parametric_terms` with ``model.openpose_weight``, of every estimate (``supervise="all"``, PyMAF's
    levels) or only the last (``"last"``, the HMR Baseline; ``hmr``'s ``model.supervise`` chooses)."""

    def __init__(self, model_cfg: Mapping[str, Any], supervise: str = "all"):
        super().__init__(model_cfg)
        if supervise not in SUPERVISE:
            raise ValueError(f"supervise must be one of {SUPERVISE}, got {supervise!r}")
        self.supervise = supervise

    def terms(self, batch: Mapping[str, Any], prediction: Prediction, decoder: BodyDecoder) -> dict[str, Tensor]:
        return parametric_terms(decoder.decode, batch, prediction.iterations,
                                openpose_weight=float(self.cfg["openpose_weight"]),
                                supervise=self.supervise)


def parametric_terms(decode, batch: Mapping[str, Any], estimates, openpose_weight: float = 0.0,
                     supervise: str = "all") -> dict[str, Tensor]:
    """Unweighted terms ``keypoints_2d``, ``joints_3d``, ``pose``, ``betas``, ``cam``, summed over estimates.

    Args:
        decode: ``Estimate`` -> decoded dict (``BodyDecoder.decode``).
        batch: the batch (``keypoints_2d`` (B, 49, 3) normalised, ``joints_3d`` (B, 24, 4), ``pose``,
            ``betas``, ``has_smpl``, ``has_3d``).
        estimates: per-iteration ``Estimate`` s.
        supervise: "all" sums the terms of every estimate, "last" takes the final estimate's only.
    """
    if supervise not in SUPERVISE:
        raise ValueError(f"supervise must be one of {SUPERVISE}, got {supervise!r}")
    chosen = list(estimates) if supervise == "all" else list(estimates)[-1:]
    terms: dict[str, Tensor] = {}
    for estimate in chosen:
        pred = decode(estimate)
        step = {
            "keypoints_2d": L.keypoint_2d_loss(pred["keypoints_2d"], batch["keypoints_2d"], openpose_weight=openpose_weight),
            "joints_3d": L.joints_3d_loss(pred["joints_3d"], batch["joints_3d"], batch["has_3d"]),
            "pose": L.smpl_pose_loss(pred["pose_rotmat"], batch["pose"], batch["has_smpl"]),
            "betas": L.smpl_betas_loss(pred["betas"], batch["betas"], batch["has_smpl"]),
            "cam": L.camera_scale_loss(pred["cam"]),
        }
        for name, value in step.items():
            terms[name] = terms[name] + value if name in terms else value
    return terms
