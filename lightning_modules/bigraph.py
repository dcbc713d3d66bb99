"""``bigraph``: the bilayer-graph model (Yu, van Baar, Chen) on the shared base; also GraphCMR-like row A.

Network: the shared ResNet-50 (``hmr.build_backbone``) and ``nets.bigraph_net.BiGraphNet`` with the config's
``net`` switches (``BiGraphConfig``: the paper's Tables 4-5). The RoI centres of the skeleton branch are
2D joints: during training a share ``gt_joint_ratio`` of the samples use their ground-truth 2D joints (where
labelled) and the rest BiGraph's detected joints (``bigraph_joints_2d``); ``callbacks.GTJointMixing``
decays the share to zero by the last epoch; validation and prediction use detected joints only.

Outputs: the non-parametric mesh ("np", the graph's vertices, the model's prediction) and the SMPL mesh
("p", from the SMPL-parameter regressor); validation reports the np mesh under the base's keys and the
p mesh's PVE as ``pve_smpl``.

Losses (paper, section 3.4; weights in ``model.loss_weights``, defaults in configs/model/bigraph.yaml):
``vertices`` L1 on the np mesh (has_smpl), ``mesh_joints_3d`` L1 on joints regressed from the np mesh
(has_3d, hip-centred), ``keypoints_2d`` L1 on their projection with the predicted camera, ``skeleton_2d``
L1 on the skeleton branch's projected joints, ``skeleton_3d`` the focal regression loss on its 3D joints
(has_3d, hip-centred; alpha = gamma = 1, weight 5), or L1 with the same weight when
``skeleton_3d_loss: l1`` (Table 5's "w/o FL" row), ``pose`` and ``betas`` MSE on the SMPL regressor's
parameters (has_smpl).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from body.camera import project_to_normalized_crop
from body.joints import J24_TO_BIGRAPH12, SPIN49_TO_BIGRAPH12
from lightning_modules import losses as L
from lightning_modules.base import MeshRecoveryModule
from lightning_modules.hmr import build_backbone
from lightning_modules.nets.bigraph_net import BiGraphConfig, BiGraphNet
from metrics import PVE

BIGRAPH_HIPS = (6, 7)  # left and right hip in BiGraph-12 order
SKELETON_3D_LOSSES = ("focal", "l1")


class BiGraphSystem(nn.Module):
    """Backbone + BiGraph network: forward(image, joints_2d (B, 12, 2) normalised) -> BiGraphNet's dict."""

    def __init__(self, backbone: nn.Module, net: BiGraphNet):
        super().__init__()
        self.backbone, self.graph = backbone, net

    def forward(self, image: Tensor, joints_2d: Tensor | None) -> dict[str, Tensor]:
        return self.graph(self.backbone.forward_features(image), joints_2d)


class BiGraphModule(MeshRecoveryModule):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gt_joint_ratio = float(self.model_cfg.get("gt_joint_ratio", 1.0))
        self.skeleton_3d_loss = str(self.model_cfg.get("skeleton_3d_loss", "focal"))
        if self.skeleton_3d_loss not in SKELETON_3D_LOSSES:
            raise ValueError(f"model.skeleton_3d_loss {self.skeleton_3d_loss!r}: valid choices are "
                             f"{', '.join(SKELETON_3D_LOSSES)}")

    def build_network(self) -> nn.Module:
        net_cfg = dict(self.model_cfg.get("net", {}) or {})
        if "roi_stages" in net_cfg:
            net_cfg["roi_stages"] = tuple(net_cfg["roi_stages"])
        backbone = build_backbone(self.model_cfg)
        net_cfg.setdefault("feature_channels", dict(backbone.out_channels))
        net_cfg.setdefault("image_size", self.img_res)
        return BiGraphSystem(backbone, BiGraphNet(BiGraphConfig(**net_cfg), self.body))

    def roi_joints(self, batch: Mapping[str, Any]) -> Tensor:
        """(B, 12, 2) RoI centres: detected joints, or ground truth for a ``gt_joint_ratio`` share in training."""
        detected = batch["bigraph_joints_2d"][..., :2]
        if not self.training or self.gt_joint_ratio <= 0.0:
            return detected
        gt = batch["keypoints_2d"][:, SPIN49_TO_BIGRAPH12]
        pick = torch.rand(detected.shape[0], 1, device=detected.device) < self.gt_joint_ratio
        use_gt = pick & (gt[..., 2] > 0)
        return torch.where(use_gt[..., None], gt[..., :2], detected)

    def run_network(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = self.net(self.normalize(batch["img"]), self.roi_joints(batch))
        out["iterations"] = [{"pose_rotmat": out["pose_rotmat"], "betas": out["betas"], "cam": out["cam"]}]
        return out

    def final_prediction(self, out: Mapping[str, Any]) -> dict[str, Tensor]:
        """The non-parametric mesh, its regressed keypoints and their projection with the predicted camera."""
        kp3d = self.body.keypoints49_from_vertices(out["vertices"])
        return {"vertices": out["vertices"], "keypoints49_3d": kp3d, "joints_3d": kp3d[:, 25:],
                "keypoints_2d": project_to_normalized_crop(kp3d, out["cam"], self.img_res),
                "pose_rotmat": out["pose_rotmat"], "betas": out["betas"], "cam": out["cam"]}

    # BiGraph's tables report the graph's non-parametric mesh (np) and the body model on the regressed
    # parameters (p).
    EVALUATED_MESHES: tuple[str, ...] = ("_np", "_p")

    def evaluated_meshes(self, out: Mapping[str, Any]) -> dict[str, Tensor]:
        return {"_np": out["vertices"], "_p": self.decode(out["iterations"][-1])["vertices"]}

    def compute_losses(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, Tensor]:
        pred = self.final_prediction(out)
        has_smpl, has_3d = batch["has_smpl"].bool(), batch["has_3d"].bool()
        with torch.no_grad():
            gt_vertices = self.ground_truth_mesh(batch)["vertices"]
        terms = {
            "vertices": L.vertex_loss(pred["vertices"], gt_vertices, has_smpl),
            "mesh_joints_3d": L.joints_3d_loss(pred["joints_3d"], batch["joints_3d"], has_3d, criterion="l1"),
            "keypoints_2d": L.keypoint_2d_loss(pred["keypoints_2d"], batch["keypoints_2d"], criterion="l1",
                                               openpose_weight=float(self.model_cfg.get("openpose_weight", 0.0))),
            "pose": L.smpl_pose_loss(out["pose_rotmat"], batch["pose"], has_smpl),
            "betas": L.smpl_betas_loss(out["betas"], batch["betas"], has_smpl),
        }
        if "skeleton_joints" in out:
            joints = out["skeleton_joints"]
            gt2d = batch["keypoints_2d"][:, SPIN49_TO_BIGRAPH12]
            terms["skeleton_2d"] = L.keypoint_2d_loss(project_to_normalized_crop(joints, out["cam"], self.img_res),
                                                      gt2d, criterion="l1")
            gt3d = batch["joints_3d"][:, J24_TO_BIGRAPH12]
            hips = list(BIGRAPH_HIPS)
            centred_pred = joints - joints[:, hips].mean(1, keepdim=True)
            centred_gt = gt3d[..., :3] - gt3d[:, hips, :3].mean(1, keepdim=True)
            valid = has_3d[:, None] & (gt3d[..., 3] > 0)
            if self.skeleton_3d_loss == "focal":
                terms["skeleton_3d"] = L.focal_regression_loss(
                    centred_pred, centred_gt, valid, alpha=float(self.model_cfg.get("focal_alpha", 1.0)),
                    gamma=float(self.model_cfg.get("focal_gamma", 1.0)))
            else:
                terms["skeleton_3d"] = L.vertex_loss(centred_pred, centred_gt, valid, criterion="l1")
        return self.weighted(terms)

    def _metrics_for_set(self) -> nn.ModuleDict:
        metrics = super()._metrics_for_set()
        metrics["pve_smpl"] = PVE(alignment="none")
        return metrics

    def update_val_metrics(self, batch: Mapping[str, Any], out: Mapping[str, Any],
                           metrics: nn.ModuleDict) -> dict[str, Tensor] | None:
        targets = super().update_val_metrics(batch, out, metrics)
        if targets is not None and targets["smpl_index"].numel():
            smpl_mesh = self.decode(out["iterations"][-1])["vertices"][targets["smpl_index"]]
            metrics["pve_smpl"].update(smpl_mesh, targets["vertices"])
        return targets
