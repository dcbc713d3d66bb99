"""``MeshRecoveryModule``: what HMR, PyMAF and BiGraph share, so that a model is a network plus its losses.

The base owns the body model, input normalisation, the decoding of parametric estimates into meshes and
keypoints, the optimiser, validation with the metrics package on every evaluation set, and the prediction
step. A subclass implements two methods:

    build_network() -> nn.Module     the network; its forward is called through ``run_network(batch)``
    compute_losses(batch, out) -> dict[str, Tensor]   the weighted loss terms (their sum is optimised)

and may override ``final_prediction(out)`` (default: the last estimate of ``out["iterations"]``).

Network output contract: ``{"iterations": [estimate, ...], ...extras}``, each estimate a dict with
``pose_rotmat`` (B, 24, 3, 3), ``betas`` (B, 10), ``cam`` (B, 3) weak-perspective (s, tx, ty); the last is the
final one. :meth:`decode` turns an estimate into ``vertices`` (B, V, 3), ``keypoints49_3d`` (B, 49, 3),
``joints_3d`` (B, 24, 3) (SPIN's 24 ground-truth joints) and ``keypoints_2d`` (B, 49, 2) in normalised crop
coordinates (``body.camera.project_to_normalized_crop``: f = 5000, 224 px).

Batches come from ``datamodules.mixed.MixedDataModule`` (``datamodules.augment.prepare_sample``): uint8
images, normalised here on the model's device with ImageNet's mean and std.

Validation (per evaluation set, the set's name in the metric keys): MPJPE and PA-MPJPE on the 14 LSP
joints from the H36M regressor, pelvis-centred (SPIN / PyMAF eval protocol, ``metrics.functional``), and
PVE without alignment on body-model vertices without translation (3DPW protocol). The ground-truth joints
come from the ground-truth mesh (the body model on the ground-truth pose and shape) where the sample has
SMPL ground truth, as SPIN does for 3DPW; otherwise from the sample's 3D joints (``joints_3d``: LSP-14 =
``J24_TO_LSP14``, centred on the stored pelvis, slot 14), as SPIN does for H36M P1/P2, whose ground truth
is joints only; samples with neither are skipped. PVE needs SMPL ground truth. Plus MPJPE per iteration
(PyMAF's Table 6) when the network returns several estimates.
"""
from __future__ import annotations

from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from body.camera import IMAGENET_MEAN, IMAGENET_STD, IMG_RES, project_to_normalized_crop
from body.joints import J24_PELVIS, J24_TO_LSP14
from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat
from metrics import MPJPE, PAMPJPE, PVE, PerIterationMPJPE
from metrics.functional import protocol_joints

OPTIMIZERS = ("adam", "adamw")


class MeshRecoveryModule(pl.LightningModule):
    """Shared LightningModule (module docstring).

    Args:
        model: the model config (``configs/model/*.yaml``): at least ``loss_weights`` (name -> weight) and
            the network's settings, read by the subclass.
        optim: ``{"name": "adam", "lr": ..., "weight_decay": 0, "betas": [0.9, 0.999]}``.
        body: ``{"name": "open"|"smpl", "gender": "neutral", "smpl_dir": null}``.
        eval_sets: names of the validation loaders, in order (``MixedDataModule.eval_names``).
        img_res: network input side in pixels.
    """

    def __init__(self, model: Mapping[str, Any], optim: Mapping[str, Any] | None = None,
                 body: Mapping[str, Any] | None = None, eval_sets: list[str] | tuple[str, ...] = (),
                 img_res: int = IMG_RES):
        super().__init__()
        self.save_hyperparameters()
        self.model_cfg = dict(model)
        self.optim_cfg = dict(optim or {"name": "adam", "lr": 5e-5})
        body = dict(body or {"name": "open"})
        self.body = BodyModel.from_config(body.get("name", "open"), body.get("gender", "neutral"),
                                          body.get("smpl_dir"))
        self.body.requires_grad_(False)
        self.img_res = int(img_res)
        self.loss_weights = {k: float(v) for k, v in dict(self.model_cfg.get("loss_weights", {})).items()}
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.net = self.build_network()
        self.eval_sets = list(eval_sets)
        self.val_metrics = nn.ModuleList([self._metrics_for_set() for _ in self.eval_sets])

    # ------------------------------------------------------------------------------------------
    # To implement
    # ------------------------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must implement build_network()")

    def compute_losses(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses()")

    def run_network(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The network on a batch (default: on the normalised image only)."""
        return self.net(self.normalize(batch["img"]))

    def final_prediction(self, out: Mapping[str, Any]) -> dict[str, Tensor]:
        """The decoded final estimate: vertices, joints, keypoints, SMPL parameters and camera."""
        return self.decode(out["iterations"][-1])

    # Suffixes of the meshes ``evaluated_meshes`` returns (the evaluation row's 3D column suffixes).
    EVALUATED_MESHES: tuple[str, ...] = ("",)

    def evaluated_meshes(self, out: Mapping[str, Any]) -> dict[str, Tensor]:
        """The (B, V, 3) meshes the 3D protocols score, keyed by ``EVALUATED_MESHES`` (default: the final one)."""
        return {"": self.final_prediction(out)["vertices"]}

    # ------------------------------------------------------------------------------------------
    # Shared pieces
    # ------------------------------------------------------------------------------------------
    def normalize(self, img: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 (or float in [0, 255]) -> ImageNet-normalised float."""
        return (img.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def decode(self, estimate: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A parametric estimate -> its mesh and keypoints (module docstring), plus the estimate itself."""
        rotmat = estimate["pose_rotmat"]
        body = self.body(betas=estimate["betas"], body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1])
        kp3d = body.keypoints49
        return {"vertices": body.vertices, "keypoints49_3d": kp3d, "joints_3d": kp3d[:, 25:],
                "keypoints_2d": project_to_normalized_crop(kp3d, estimate["cam"], self.img_res),
                "pose_rotmat": rotmat, "betas": estimate["betas"], "cam": estimate["cam"]}

    def ground_truth_mesh(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Body-model output of the batch's ground-truth pose and shape (meaningful where has_smpl)."""
        rotmat = axis_angle_to_rotmat(batch["pose"].reshape(-1, 24, 3))
        body = self.body(betas=batch["betas"], body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1])
        return {"vertices": body.vertices, "keypoints49_3d": body.keypoints49, "joints_3d": body.keypoints49[:, 25:]}

    def weighted(self, terms: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Multiply each named term by its configured weight; terms with weight 0 are dropped."""
        out = {}
        for name, value in terms.items():
            if name not in self.loss_weights:
                raise KeyError(f"loss term {name!r} has no weight in model.loss_weights "
                               f"(configured: {', '.join(sorted(self.loss_weights))})")
            if self.loss_weights[name] != 0.0:
                out[name] = self.loss_weights[name] * value
        return out

    # ------------------------------------------------------------------------------------------
    # Lightning hooks
    # ------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return self.run_network(batch)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        out = self.run_network(batch)
        terms = self.compute_losses(batch, out)
        loss = torch.stack(list(terms.values())).sum()
        bs = batch["img"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), batch_size=bs)
        return loss

    def _metrics_for_set(self) -> nn.ModuleDict:
        return nn.ModuleDict({"mpjpe": MPJPE(), "pa_mpjpe": PAMPJPE(), "pve": PVE(alignment="none")})

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.update_val_metrics(batch, self.run_network(batch), self.val_metrics[dataloader_idx])

    def protocol_joints(self, vertices: Tensor) -> Tensor:
        """(B, V, 3) vertices -> (B, 14, 3) the 3D protocols' joints (LSP-14 of the H36M regressor, pelvis-centred)."""
        return protocol_joints(self.body.h36m17(vertices))

    def evaluation_targets(self, batch: Mapping[str, Any]) -> dict[str, Tensor] | None:
        """Ground truth of the 3D protocols for a batch (module docstring), or None when no sample has any.

        Returns:
            ``index`` (n,) the evaluated samples, those with SMPL ground truth first; ``joints`` (n, 14, 3)
            their protocol joints; ``smpl_index`` (m,) the samples with SMPL ground truth and ``vertices``
            (m, V, 3) their ground-truth mesh (m may be 0).
        """
        has_smpl = batch["has_smpl"].bool()
        joints_3d = batch["joints_3d"]
        has_joints = batch["has_3d"].bool() & ~has_smpl & (joints_3d[:, J24_TO_LSP14 + [J24_PELVIS], 3] > 0).all(-1)
        if not bool(has_smpl.any() or has_joints.any()):
            return None
        smpl_index, joints_index = has_smpl.nonzero().squeeze(1), has_joints.nonzero().squeeze(1)
        parts, vertices = [], joints_3d.new_zeros(0, self.body.num_vertices, 3)
        if smpl_index.numel():
            vertices = self.ground_truth_mesh({k: batch[k][smpl_index] for k in ("pose", "betas")})["vertices"]
            parts.append(self.protocol_joints(vertices))
        if joints_index.numel():
            j = joints_3d[joints_index]
            parts.append(j[:, J24_TO_LSP14, :3] - j[:, J24_PELVIS, None, :3])
        return {"index": torch.cat([smpl_index, joints_index]), "joints": torch.cat(parts),
                "smpl_index": smpl_index, "vertices": vertices}

    def update_val_metrics(self, batch: Mapping[str, Any], out: Mapping[str, Any],
                           metrics: nn.ModuleDict) -> dict[str, Tensor] | None:
        """Accumulate one batch's errors (module docstring).

        Returns the batch's :meth:`evaluation_targets` (for subclasses adding metrics), or None.
        """
        targets = self.evaluation_targets(batch)
        if targets is None:
            return None
        index, gt_joints = targets["index"], targets["joints"]
        pred = self.final_prediction(out)
        pred_joints = self.protocol_joints(pred["vertices"])[index]
        metrics["mpjpe"].update(pred_joints, gt_joints)
        metrics["pa_mpjpe"].update(pred_joints, gt_joints)
        if targets["smpl_index"].numel():
            metrics["pve"].update(pred["vertices"][targets["smpl_index"]], targets["vertices"])
        iterations = out.get("iterations", [])
        if len(iterations) > 1:
            if "per_iteration" not in metrics:
                metrics["per_iteration"] = PerIterationMPJPE(len(iterations)).to(self.device)
            metrics["per_iteration"].update(
                [self.protocol_joints(self.decode(e)["vertices"])[index] for e in iterations], gt_joints)
        return targets

    def on_validation_epoch_end(self) -> None:
        for name, metrics in zip(self.eval_sets, self.val_metrics):
            for key, metric in metrics.items():
                if not metric.update_called:
                    continue
                value = metric.compute()
                if value.dim() == 0:
                    self.log(f"val/{name}/{key}", value.float(), sync_dist=False)
                else:
                    for i, v in enumerate(value):
                        self.log(f"val/{name}/{key}_it{i}", v.float(), sync_dist=False)
                metric.reset()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """vertices (B, V, 3), joints_3d (B, 24, 3), keypoints_2d (B, 49, 2) normalised, pose_rotmat
        (B, 24, 3, 3), betas (B, 10), cam (B, 3), all detached."""
        out = self.run_network(batch)
        return {k: v.detach() for k, v in self.final_prediction(out).items() if k != "keypoints49_3d"}

    def configure_optimizers(self):
        cfg = self.optim_cfg
        name = str(cfg.get("name", "adam")).lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"optim.name {name!r}: valid choices are {', '.join(OPTIMIZERS)}")
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        params = [p for p in self.parameters() if p.requires_grad]
        return cls(params, lr=float(cfg.get("lr", 5e-5)), weight_decay=float(cfg.get("weight_decay", 0.0)),
                   betas=tuple(cfg.get("betas", (0.9, 0.999))))
