"""The body model: one class over ``smplx.SMPL`` that every other part of the suite uses.

    model = BodyModel.from_config(name="open")          # or name="smpl", smpl_dir=...
    out = model(betas, body_pose, global_orient)        # rotation matrices or axis-angle
    out.vertices (B, V, 3), out.joints (B, 24, 3), out.keypoints49 (B, 49, 3)
    model.h36m17(out.vertices) (B, 17, 3); model.coco17(out.vertices) (B, 17, 3)
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import smplx
import torch

from body.assets import AssetSet, load_asset_set
from body.hierarchy import MeshHierarchy
from body.joints import SPIN49_FROM_BODY_MODEL


@dataclass
class BodyOutput:
    """Posed body. vertices (B, V, 3); joints (B, 24, 3) skeleton joints; joints54 (B, 54, 3) the 45
    joints of ``smplx.SMPL`` followed by the 9 of ``J_regressor_extra``; keypoints49 (B, 49, 3) the
    SPIN/PyMAF training keypoints (25 OpenPose + 24 ground-truth joints)."""

    vertices: torch.Tensor
    joints: torch.Tensor
    joints54: torch.Tensor
    keypoints49: torch.Tensor


class BodyModel(torch.nn.Module):
    """SMPL-format body model (``smplx.SMPL``) fed by an asset set, plus the field's regressors.

    Device- and dtype-agnostic: move it with ``.to()``; inputs decide the batch size.
    """

    def __init__(self, assets: AssetSet):
        super().__init__()
        self.assets = assets
        vertex_ids = {k: v for k, v in assets.vertex_ids.items() if k != "head_top"}
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 betas
            self.smpl = smplx.SMPL(
                model_path=str(assets.root), data_struct=assets.smplx_struct(), vertex_ids=vertex_ids,
                num_betas=10, create_betas=False, create_body_pose=False, create_global_orient=False,
                create_transl=False,
            )
        f32 = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        self.register_buffer("J_regressor_extra", f32(assets.J_regressor_extra), persistent=False)
        self.register_buffer("J_regressor_h36m", f32(assets.J_regressor_h36m), persistent=False)
        self.register_buffer("J_regressor_coco", f32(assets.J_regressor_coco), persistent=False)
        self.register_buffer("spin49_index", torch.as_tensor(SPIN49_FROM_BODY_MODEL, dtype=torch.long), persistent=False)
        self.register_buffer("faces_tensor", torch.as_tensor(assets.faces, dtype=torch.long), persistent=False)
        self.register_buffer("mean_pose", f32(assets.mean_pose), persistent=False)
        self.register_buffer("mean_shape", f32(assets.mean_shape), persistent=False)
        self.register_buffer("mean_cam", f32(assets.mean_cam), persistent=False)
        self.hierarchy = MeshHierarchy(assets.hierarchy)

    @classmethod
    def from_config(cls, name: str = "open", gender: str = "neutral", smpl_dir: str | None = None) -> "BodyModel":
        return cls(load_asset_set(name, gender=gender, smpl_dir=smpl_dir))

    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) long."""
        return self.faces_tensor

    @property
    def num_vertices(self) -> int:
        return self.assets.num_vertices

    def forward(
        self,
        betas: torch.Tensor,
        body_pose: torch.Tensor,
        global_orient: torch.Tensor,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Pose and shape the body.

        Args:
            betas: (B, 10).
            body_pose: (B, 23, 3, 3) rotation matrices, or (B, 69) / (B, 23, 3) axis-angle.
            global_orient: (B, 1, 3, 3) / (B, 3, 3) rotation matrix, or (B, 3) axis-angle.
            transl: optional (B, 3).
        """
        b = betas.shape[0]
        rotmats = body_pose.shape[-2:] == (3, 3)
        if rotmats:
            body_pose = body_pose.reshape(b, 23, 3, 3)
            global_orient = global_orient.reshape(b, 1, 3, 3)
        else:
            body_pose = body_pose.reshape(b, 69)
            global_orient = global_orient.reshape(b, 3)
        if betas.shape[-1] != 10:
            raise ValueError(f"betas must be (B, 10), got {tuple(betas.shape)}")
        out = self.smpl(betas=betas, body_pose=body_pose, global_orient=global_orient, transl=transl,
                        pose2rot=not rotmats)
        extra = torch.einsum("kv,bvd->bkd", self.J_regressor_extra.to(out.vertices.dtype), out.vertices)
        joints54 = torch.cat([out.joints, extra], dim=1)
        return BodyOutput(
            vertices=out.vertices,
            joints=out.joints[:, :24],
            joints54=joints54,
            keypoints49=joints54.index_select(1, self.spin49_index),
        )

    def _regress(self, regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kv,bvd->bkd", regressor.to(vertices.dtype), vertices)

    def h36m17(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) -> (B, 17, 3) Human3.6M joints (SPIN's regressor order)."""
        return self._regress(self.J_regressor_h36m, vertices)

    def coco17(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) -> (B, 17, 3) COCO keypoints."""
        return self._regress(self.J_regressor_coco, vertices)

    def keypoints49_from_vertices(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) any mesh (e.g. a non-parametric prediction) -> (B, 49, 3) SPIN keypoints, regressed.

        The 24 skeleton joints come from the joint regressor applied to the mesh (GraphCMR's
        ``get_joints``), the rest as in :meth:`forward` (selected vertices, ``J_regressor_extra``). For a
        posed body-model mesh this differs from :meth:`forward`'s kinematic joints by the regressor's
        error on posed meshes (a few mm).
        """
        joints24 = self._regress(self.smpl.J_regressor, vertices)
        selected = vertices.index_select(1, self.smpl.vertex_joint_selector.extra_joints_idxs)
        extra = self._regress(self.J_regressor_extra, vertices)
        return torch.cat([joints24, selected, extra], dim=1).index_select(1, self.spin49_index)

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 10) -> (B, 24, 3) skeleton joints of the shaped body in rest pose."""
        v = self.smpl.v_template + torch.einsum("bk,vdk->bvd", betas, self.smpl.shapedirs)
        return torch.einsum("jv,bvd->bjd", self.smpl.J_regressor, v)
