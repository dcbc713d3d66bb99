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
- :meth:`evaluation_targets` the 3D protocols' ground truth of a batch, as PyMAF's / SPIN's ``eval.py``:
  * the mesh (PVE): the sample's stored ``vertices`` where it has them (3DPW: the converter poses the
    male / female body model by the person's gender), else the body model on its pose and shape
    (GraphCMR's UP-3D and PyMAF's H36M-P2-MoSh PVE use the neutral model);
  * the joints (MPJPE, PA-MPJPE; LSP-14, pelvis-centred): from the sample's 3D joints ``S`` whenever it has
    them (LSP-14 of ``joints_3d`` minus its pelvis: H36M P1/P2, even where the sample also has a MoSh fit),
    else the H36M-regressed joints of that mesh; with ``joints_from_mesh`` (the 3DPW protocol) always those
    of the mesh (PyMAF regresses 3DPW's joints from the gendered mesh with the H36M regressor).
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
from runtime.errors import UserError


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

    def ground_truth_vertices(self, batch: Mapping[str, Any], index: Tensor) -> Tensor:
        """The ground-truth mesh (n, V, 3) of the samples ``index`` (n,): stored ``vertices`` where
        ``has_vertices``, else the body model on ``pose`` / ``betas``."""
        stored = batch.get("vertices")
        if stored is None or index.numel() == 0:
            return self.ground_truth_mesh({k: batch[k][index] for k in ("pose", "betas")})["vertices"]
        if stored.shape[1] != self.body.num_vertices:
            raise UserError(f"ground-truth vertices of the evaluation set have {stored.shape[1]} vertices, the "
                            f"model's body model {self.body.num_vertices}: convert the set with the model's body "
                            "(make convert ... ARGS='--body smpl --smpl-dir DIR' for an SMPL-bodied model)")
        has = batch["has_vertices"][index].bool() if "has_vertices" in batch else \
            torch.ones_like(index, dtype=torch.bool)
        if bool(has.all()):
            return stored[index]
        vertices = self.ground_truth_mesh({k: batch[k][index] for k in ("pose", "betas")})["vertices"]
        return torch.where(has[:, None, None], stored[index].to(vertices), vertices)

    def evaluation_targets(self, batch: Mapping[str, Any], joints_from_mesh: bool = False) -> dict[str, Tensor] | None:
        """Ground truth of the 3D protocols for a batch (module docstring), or None when no sample has any.

        Args:
            joints_from_mesh: joints from the ground-truth mesh even where the sample has 3D joints (3DPW).
        Returns:
            ``index`` (n,) the evaluated samples, those with 3D-joint ground truth first; ``joints`` (n, 14, 3)
            their protocol joints; ``smpl_index`` (m,) the samples with a ground-truth mesh and ``vertices``
            (m, V, 3) that mesh (m may be 0).
        Raises:
            UserError: with ``joints_from_mesh``, a male / female sample without stored ``vertices`` (its mesh
                would come from the evaluation's neutral body model), or stored vertices of another body.
        """
        has_vertices = batch["has_vertices"].bool() if "has_vertices" in batch else \
            torch.full_like(batch["has_smpl"].bool(), "vertices" in batch)
        has_mesh = batch["has_smpl"].bool() | has_vertices
        joints_3d = batch["joints_3d"]
        has_joints = batch["has_3d"].bool() & (joints_3d[:, J24_TO_LSP14 + [J24_PELVIS], 3] > 0).all(-1)
        if joints_from_mesh:
            has_joints = torch.zeros_like(has_joints)
            gendered = [g in ("male", "female") for g in batch.get("gender", [""] * len(has_mesh))]
            bad = [i for i, g in enumerate(gendered) if g and bool(has_mesh[i]) and not bool(has_vertices[i])]
            if bad:
                raise UserError(f"sample {batch['key'][bad[0]] if 'key' in batch else bad[0]!r} is "
                                f"{batch['gender'][bad[0]]} but has no ground-truth vertices: the 3DPW protocol "
                                "scores against the gendered body model's mesh; convert the set with make convert "
                                "(it stores them)")
        mesh_joints = has_mesh & ~has_joints
        if not bool(has_joints.any() or mesh_joints.any()):
            return None
        joints_index, mesh_index = has_joints.nonzero().squeeze(1), has_mesh.nonzero().squeeze(1)
        vertices = self.ground_truth_vertices(batch, mesh_index) if mesh_index.numel() else \
            joints_3d.new_zeros(0, self.body.num_vertices, 3)
        j = joints_3d[joints_index]
        parts = [j[:, J24_TO_LSP14, :3] - j[:, J24_PELVIS, None, :3]]
        from_mesh = mesh_joints[mesh_index]
        if bool(from_mesh.any()):
            parts.append(self.protocol_joints(vertices[from_mesh]))
        return {"index": torch.cat([joints_index, mesh_index[from_mesh]]), "joints": torch.cat(parts),
                "smpl_index": mesh_index, "vertices": vertices}
