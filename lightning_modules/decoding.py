"""``BodyDecoder``: a network's ``Prediction`` or the batch's ground truth -> meshes, joints and keypoints.

Losses and evaluation metrics share it, so both see the same decoded quantities:

- :meth:`decode` an ``Estimate`` -> ``vertices`` (B, V, 3), ``keypoints49_3d`` (B, 49, 3), ``joints_3d``
  (B, 24, 3) (SPIN's 24 ground-truth joints), ``keypoints_2d`` (B, 49, 2) in normalised crop coordinates
  (``body.camera.project_to_normalized_crop``: f = 5000, ``img_res`` px), and the estimate's ``pose_rotmat``,
  ``betas``, ``cam``.
- :meth:`final` the model's final output: the decoded last estimate, or, for a network with a
  non-parametric mesh (BiGraph), that mesh with its regressed keypoints projected by the predicted camera.
- :meth:`evaluated_meshes` the meshes the 3D protocols score: ``{"": final}``, or ``{"_np", "_p"}``.
- :meth:`ground_truth_mesh` the body model on the batch's ground-truth pose and shape.
- :meth:`evaluation_targets` the 3D protocols' ground truth of a batch (SPIN / PyMAF evaluation): joints
  from the ground-truth mesh where the sample has SMPL ground truth (as SPIN does for 3DPW), otherwise from
  the sample's 3D joints (LSP-14 of ``joints_3d`` centred on its pelvis, as SPIN does for H36M P1/P2).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from body.camera import project_to_normalized_crop
from body.joints import J24_PELVIS, J24_TO_LSP14
from body.rotations import axis_angle_to_rotmat
from lightning_modules.prediction import Estimate, Prediction
from metrics.functional import protocol_joints


class BodyDecoder:
    """Decoding with one body model at one input size (module docstring).

    Args:
        body: a ``body.model.BodyModel`` (owned and moved between devices by the LightningModule).
        img_res: the network's input side in pixels.
    """

    def __init__(self, body, img_res: int):
        self.body, self.img_res = body, int(img_res)

    def decode(self, estimate: Estimate) -> dict[str, Tensor]:
        rotmat = estimate.pose_rotmat
        out = self.body(betas=estimate.betas, body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1])
        kp3d = out.keypoints49
        return {"vertices": out.vertices, "keypoints49_3d": kp3d, "joints_3d": kp3d[:, 25:],
                "keypoints_2d": project_to_normalized_crop(kp3d, estimate.cam, self.img_res),
                "pose_rotmat": rotmat, "betas": estimate.betas, "cam": estimate.cam}

    def final(self, prediction: Prediction) -> dict[str, Tensor]:
        """The model's final output (module docstring), keyed as :meth:`decode`'s."""
        last = prediction.final
        if prediction.vertices_np is None:
            return self.decode(last)
        kp3d = self.body.keypoints49_from_vertices(prediction.vertices_np)
        return {"vertices": prediction.vertices_np, "keypoints49_3d": kp3d, "joints_3d": kp3d[:, 25:],
                "keypoints_2d": project_to_normalized_crop(kp3d, last.cam, self.img_res),
                "pose_rotmat": last.pose_rotmat, "betas": last.betas, "cam": last.cam}

    def evaluated_meshes(self, prediction: Prediction) -> dict[str, Tensor]:
        """suffix -> (B, V, 3) mesh, for ``prediction.mesh_suffixes``."""
        if prediction.vertices_np is None:
            return {"": self.decode(prediction.final)["vertices"]}
        return {"_np": prediction.vertices_np, "_p": self.decode(prediction.final)["vertices"]}

    def ground_truth_mesh(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Body-model output of the batch's ground-truth ``pose`` (B, 72) and ``betas`` (meaningful where
        has_smpl): ``vertices`` (B, V, 3), ``keypoints49_3d`` (B, 49, 3), ``joints_3d`` (B, 24, 3)."""
        rotmat = axis_angle_to_rotmat(batch["pose"].reshape(-1, 24, 3))
        out = self.body(betas=batch["betas"], body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1])
        return {"vertices": out.vertices, "keypoints49_3d": out.keypoints49, "joints_3d": out.keypoints49[:, 25:]}

    def protocol_joints(self, vertices: Tensor) -> Tensor:
        """(B, V, 3) -> (B, 14, 3) the 3D protocols' joints (LSP-14 of the H36M regressor, pelvis-centred)."""
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
