"""``bigraph``: the bilayer-graph model (Yu, van Baar, Chen) on the shared base; also GraphCMR-like row A.

Network: the shared ResNet-50 (``hmr.build_backbone``) and ``nets.bigraph_net.BiGraphNet`` with the config's
``net`` switches (``BiGraphConfig``: the paper's Tables 4-5). The RoI centres of the skeleton branch are
2D joints: during training a share ``gt_joint_ratio`` of the samples use their ground-truth 2D joints (where
labelled) and the rest BiGraph's detected joints (``bigraph_joints_2d``; ``base.RoIJointSource``);
``callbacks.GTJointMixing`` decays the share to zero by the last epoch; validation and prediction use
detected joints only.

Outputs: the non-parametric mesh ("np", the graph's vertices, the model's prediction) and the SMPL mesh
("p", the body model on the SMPL-parameter regressor's estimate); validation and ``make eval`` report both,
with the key suffixes ``_np`` and ``_p`` (``mpjpe_np``, ``pve_p``, ...).

Losses (paper, section 4.4, eq. (6) and "Focal loss for regression"; weights in ``model.loss_weights``,
defaults in configs/model/bigraph.yaml): ``vertices`` L_m, L1 on the np mesh (has_smpl); ``mesh_joints_3d``
L_m^j3d, L1 on joints regressed from the np mesh (has_3d, hip-centred); ``keypoints_2d`` L_m^j2d, L1 on their
projection with the predicted camera; ``skeleton_3d`` L_s, L1 on the skeleton branch's 3D joints (has_3d,
hip-centred); ``skeleton_2d`` L_s^j2d, L1 on their projection; ``skeleton_focal`` the focal regression loss
on the same joints (alpha = gamma = 1, coefficient 5), or, with ``skeleton_3d_loss: l1`` (Table 5's "w/o FL"
row), the plain per-joint error in its place with the same weight; ``pose`` L_theta and ``betas`` L_beta,
MSE on the SMPL regressor's parameters (has_smpl; lambda = 0.1 as GraphCMR's trainer).

OUR READING of the skeleton terms: eq. (6) lists L_s and section 4.4 adds "the focal loss ... to the
estimated 3D pose from Mesh-GCN (V_s)" with coefficient 5.0; we keep both, so the "w/o FL" row changes the
shape of the added term (focal vs plain error L, the per-joint Euclidean distance in metres) and not the
strength of the supervision (``losses.focal_regression_loss``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from body.camera import project_to_normalized_crop
from body.joints import J24_TO_BIGRAPH12, SPIN49_TO_BIGRAPH12
from lightning_modules import losses as L
from lightning_modules.base import MeshRecoveryModule
from lightning_modules.decoding import BodyDecoder
from lightning_modules.hmr import build_backbone
from lightning_modules.nets.bigraph_net import BiGraphConfig, BiGraphNet
from lightning_modules.parametric import ModelLoss
from lightning_modules.prediction import Prediction

BIGRAPH_HIPS = (6, 7)  # left and right hip in BiGraph-12 order
SKELETON_3D_LOSSES = ("focal", "l1")


class BiGraphSystem(nn.Module):
    """Backbone + BiGraph graph network: forward(image, joints_2d (B, 12, 2) normalised[, missing (B, 12) bool])
    -> ``Prediction``.

    Missing detections (``missing``, given outside training; ``base.RoIJointSource``): a first pass with them
    at the box centre gives the skeleton branch's estimate of every joint; each missing joint moves to the
    projection of that estimate with the pass's camera (the box centre where it is not finite), and a second
    pass on the same backbone features is the prediction. Our choice: the paper always has a detector's joints.
    """

    takes_joints_2d = True

    def __init__(self, backbone: nn.Module, net: BiGraphNet):
        super().__init__()
        self.backbone, self.graph = backbone, net

    def forward(self, image: Tensor, joints_2d: Tensor | None, missing: Tensor | None = None) -> Prediction:
        features = self.backbone.forward_features(image)
        prediction = self.graph(features, joints_2d)
        if missing is None or joints_2d is None or prediction.skeleton_joints is None:
            return prediction
        estimate = project_to_normalized_crop(prediction.skeleton_joints, prediction.final.cam,
                                              self.graph.config.image_size).to(joints_2d.dtype)
        estimate = torch.where(torch.isfinite(estimate).all(-1, keepdim=True), estimate, torch.zeros_like(estimate))
        return self.graph(features, torch.where(missing[..., None], estimate, joints_2d))


class BiGraphLoss(ModelLoss):
    """The paper's terms (module docstring) on the final output (``BodyDecoder.final``: the np mesh)."""

    def __init__(self, model_cfg: Mapping[str, Any]):
        super().__init__(model_cfg)
        if str(model_cfg["skeleton_3d_loss"]) not in SKELETON_3D_LOSSES:
            raise ValueError(f"model.skeleton_3d_loss {model_cfg['skeleton_3d_loss']!r}: valid choices are "
                             f"{', '.join(SKELETON_3D_LOSSES)}")

    def terms(self, batch: Mapping[str, Any], prediction: Prediction, decoder: BodyDecoder) -> dict[str, Tensor]:
        cfg = self.cfg
        pred = decoder.final(prediction)
        has_smpl, has_3d = batch["has_smpl"].bool(), batch["has_3d"].bool()
        with torch.no_grad():
            gt_vertices = decoder.ground_truth_mesh(batch)["vertices"]
        terms = {
            "vertices": L.vertex_loss(pred["vertices"], gt_vertices, has_smpl),
            "mesh_joints_3d": L.joints_3d_loss(pred["joints_3d"], batch["joints_3d"], has_3d, criterion="l1"),
            "keypoints_2d": L.keypoint_2d_loss(pred["keypoints_2d"], batch["keypoints_2d"], criterion="l1",
                                               openpose_weight=float(cfg["openpose_weight"])),
            "pose": L.smpl_pose_loss(pred["pose_rotmat"], batch["pose"], has_smpl),
            "betas": L.smpl_betas_loss(pred["betas"], batch["betas"], has_smpl),
        }
        if prediction.skeleton_joints is not None:
            joints = prediction.skeleton_joints
            gt2d = batch["keypoints_2d"][:, SPIN49_TO_BIGRAPH12]
            terms["skeleton_2d"] = L.keypoint_2d_loss(project_to_normalized_crop(joints, pred["cam"], decoder.img_res),
                                                      gt2d, criterion="l1")
            gt3d = batch["joints_3d"][:, J24_TO_BIGRAPH12]
            hips = list(BIGRAPH_HIPS)
            centred_pred = joints - joints[:, hips].mean(1, keepdim=True)
            centred_gt = gt3d[..., :3] - gt3d[:, hips, :3].mean(1, keepdim=True)
            valid = has_3d[:, None] & (gt3d[..., 3] > 0)
            terms["skeleton_3d"] = L.vertex_loss(centred_pred, centred_gt, valid, criterion="l1")
            if str(cfg["skeleton_3d_loss"]) == "focal":
                terms["skeleton_focal"] = L.focal_regression_loss(centred_pred, centred_gt, valid,
                                                                  alpha=float(cfg["focal_alpha"]),
                                                                  gamma=float(cfg["focal_gamma"]))
            else:
                terms["skeleton_focal"] = L.point_distance_loss(centred_pred, centred_gt, valid)
        return terms


class BiGraphModule(MeshRecoveryModule):
    final_mesh_suffix = "_np"   # the graph's non-parametric mesh is the model's prediction

    def build_network(self) -> nn.Module:
        net_cfg = dict(self.model_cfg["net"])
        if "roi_stages" in net_cfg:
            net_cfg["roi_stages"] = tuple(net_cfg["roi_stages"])
        backbone = build_backbone(self.model_cfg)
        # Facts of the backbone and the input, not settings: always those of this module.
        net_cfg["feature_channels"] = dict(backbone.out_channels)
        net_cfg["image_size"] = self.img_res
        return BiGraphSystem(backbone, BiGraphNet(BiGraphConfig(**net_cfg), self.body))

    def build_loss(self) -> ModelLoss:
        return BiGraphLoss(self.model_cfg)
