"""The body model: one class over ``smplx.SMPL`` that every other part of the suite uses.

    model = BodyModel.from_config(name="open")          # or name="smpl", smpl_dir=...
    out = model(betas, body_pose, global_orient)        # rotation matrices or axis-angle
    out.vertices (B, V, 3), out.joints (B, 24, 3), out.keypoints49 (B, 49, 3)
    model.h36m17(out.vertices) (B, 17, 3); model.coco17(out.vertices) (B, 17, 3)
    model.mesh_hierarchy.downsample(out.vertices, 0, 2) (B, 431, 3)
    model.downsampled_skinning(2)(betas, rotmats (B, 24, 3, 3)) (B, 431, 3), without the full mesh

Precision: every computation here runs in the body model's dtype (float32, or float64 after ``.double()``;
an input of a wider dtype widens it) with autocast off, so a network trained under ``bf16-mixed`` still
poses the body in full precision. Under CPU bf16 autocast the smplx forward was off by 3.6 mm mean and
17 mm max on the vertices and 2.4 mm on the protocol joints, the size of the papers' ablation gains.

The ``smplx.SMPL`` instance, the asset set and the hierarchy module are private (``_smpl``, ``_assets``,
``_hierarchy``): the rest of the suite uses the public methods and buffers below, and no module outside
``body/`` imports smplx (``tests/body/test_boundary.py`` checks both).

Export: smplx walks the kinematic tree by indexing with a tensor, which ``torch.export`` (ONNX export) cannot
trace. While exporting (``torch.compiler.is_exporting()``), or with ``exportable_forward = True``, a rotation-matrix
forward poses the body with ``body/skinning.py``'s LBS instead (the same math, the tree as Python ints); a test
holds the two paths equal (``tests/body/test_skinning.py``).
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
from body.iuv_mesh import load_iuv_mesh
from body.joints import SPIN49_FROM_BODY_MODEL
from body.skinning import DownsampledSkinning, skin

def full_precision(module_dtype: torch.dtype, *tensors: torch.Tensor | None):
    """(dtype, tensors cast to it): the wider of ``module_dtype`` and the tensors' floating dtypes, so a
    bf16 input from an autocast region is computed in float32 and a float64 one stays float64."""
    dtype = module_dtype
    for t in tensors:
        if t is not None and t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype, tuple(None if t is None else (t.to(dtype) if t.is_floating_point() else t) for t in tensors)


# State-dict prefixes renamed when the internals became private: old checkpoints load through the migration.
_RENAMED_PREFIXES = {"smpl.": "_smpl."}


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

    Per-vertex buffers (non-persistent, on the model's device): ``vertex_iuv`` (V, 3) float (part index
    1..24, U, V; ``body/parts.py``), ``vertex_part24`` (V,) long (0..23), ``vertex_part_lsp6`` (V,) long
    (1..6), ``faces`` (F, 3) long; the mean parameters ``mean_pose`` (144,) 6D, ``mean_shape`` (10,),
    ``mean_cam`` (3,). ``vertex_ids``: the named vertices (smplx's extra joints + ``head_top``).
    The IUV mesh PyMAF's targets are rendered from (``body/iuv_mesh.py``; V' chart vertices, F' faces):
    ``iuv_vertex_map`` (V',) long body vertex of each chart vertex, ``iuv_faces`` (F', 3) long, ``iuv_face_iuv``
    (F', 3) float per-face part 1..24 and mean U, V, ``iuv_coarse_of_part`` (25,) long part -> 15-class coarse
    index; ``iuv_source`` "densepose" | "charts".
    """

    def __init__(self, assets: AssetSet):
        super().__init__()
        self._assets = assets
        vertex_ids = {k: v for k, v in assets.vertex_ids.items() if k != "head_top"}
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 betas
            self._smpl = smplx.SMPL(
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
        self.register_buffer("vertex_iuv", f32(assets.iuv), persistent=False)
        self.register_buffer("vertex_part24", torch.as_tensor(assets.part24, dtype=torch.long), persistent=False)
        self.register_buffer("vertex_part_lsp6", torch.as_tensor(assets.part_lsp6, dtype=torch.long), persistent=False)
        iuv_mesh = load_iuv_mesh(assets)
        long = lambda x: torch.as_tensor(np.asarray(x, dtype=np.int64))  # noqa: E731
        self.iuv_source = iuv_mesh.source
        self.register_buffer("iuv_vertex_map", long(iuv_mesh.vertex_map), persistent=False)
        self.register_buffer("iuv_faces", long(iuv_mesh.faces), persistent=False)
        self.register_buffer("iuv_face_iuv", f32(iuv_mesh.face_iuv()), persistent=False)
        self.register_buffer("iuv_coarse_of_part", long(iuv_mesh.coarse_of_part), persistent=False)
        self._hierarchy = MeshHierarchy(assets.hierarchy)
        self._parents = tuple(int(p) for p in self._smpl.parents.tolist())
        self.exportable_forward = False      # module docstring, "Export"

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Checkpoints written before the internals became private name ``smpl.*``: read them as ``_smpl.*``."""
        for old, new in _RENAMED_PREFIXES.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @classmethod
    def from_config(cls, name: str = "open", gender: str = "neutral", smpl_dir: str | None = None) -> "BodyModel":
        return cls(load_asset_set(name, gender=gender, smpl_dir=smpl_dir))

    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) long."""
        return self.faces_tensor

    @property
    def num_vertices(self) -> int:
        return self._assets.num_vertices

    @property
    def vertex_ids(self) -> dict[str, int]:
        """Named vertices (a copy): smplx's 21 extra joints (nose, eyes, ears, toes, heels, fingertips) and
        ``head_top``."""
        return dict(self._assets.vertex_ids)

    @property
    def mesh_hierarchy(self) -> MeshHierarchy:
        """The mesh hierarchy (levels of ~6,890 / 1,723 / 431 vertices): ``downsample``, ``upsample``,
        ``faces(level)``, ``normalized_adjacency(level)``, ``vertex_index(level)``, ``num_vertices``."""
        return self._hierarchy

    def downsampled_skinning(self, level: int) -> DownsampledSkinning:
        """A module that skins only the vertices of hierarchy level ``level`` (``body/skinning.py``).

        Built in this model's current dtype and device; it holds copies (non-persistent buffers), so a network
        may own it without adding to its state dict. ``module(betas (B, 10), rotmats (B, 24, 3, 3))`` ->
        (B, V_level, 3) equals ``mesh_hierarchy.downsample(self(betas, rotmats[:, 1:], rotmats[:, :1]).vertices,
        0, level)`` to float rounding (float64: ~1e-15 m).
        """
        if not 0 < level < self._hierarchy.num_levels:
            raise ValueError(f"level must be in [1, {self._hierarchy.num_levels}), got {level}")
        return DownsampledSkinning(self._smpl, self._hierarchy.vertex_index(level), level)

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
        _, (betas, body_pose, global_orient, transl) = full_precision(self._smpl.v_template.dtype, betas, body_pose,
                                                                      global_orient, transl)
        with torch.autocast(betas.device.type, enabled=False):
            if rotmats and (self.exportable_forward or torch.compiler.is_exporting()):
                vertices, joints45 = self._pose_by_skinning(betas, torch.cat([global_orient, body_pose], 1), transl)
            else:
                out = self._smpl(betas=betas, body_pose=body_pose, global_orient=global_orient, transl=transl,
                                 pose2rot=not rotmats)
                vertices, joints45 = out.vertices, out.joints
            extra = torch.einsum("kv,bvd->bkd", self.J_regressor_extra.to(vertices.dtype), vertices)
        joints54 = torch.cat([joints45, extra], dim=1)
        return BodyOutput(
            vertices=vertices,
            joints=joints45[:, :24],
            joints54=joints54,
            keypoints49=joints54.index_select(1, self.spin49_index),
        )

    def _pose_by_skinning(self, betas: torch.Tensor, rotmats: torch.Tensor,
                          transl: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """smplx's forward on (B, 24, 3, 3) rotations by ``body.skinning.skin`` (module docstring, "Export"):
        (B, V, 3) vertices and smplx's (B, 45, 3) joints (24 posed joints, then its selected vertices)."""
        smpl, dt = self._smpl, betas.dtype
        regressor = smpl.J_regressor.to(dt)
        vertices, joints = skin(rotmats, betas, smpl.v_template.to(dt), smpl.shapedirs.to(dt), smpl.posedirs.to(dt),
                                smpl.lbs_weights.to(dt), regressor @ smpl.v_template.to(dt),
                                torch.einsum("jv,vkl->jkl", regressor, smpl.shapedirs.to(dt)), self._parents)
        joints45 = torch.cat([joints, vertices.index_select(1, smpl.vertex_joint_selector.extra_joints_idxs)], dim=1)
        if transl is not None:
            vertices, joints45 = vertices + transl[:, None], joints45 + transl[:, None]
        return vertices, joints45

    def _regress(self, regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
        dtype, (vertices,) = full_precision(self._smpl.v_template.dtype, vertices)
        with torch.autocast(vertices.device.type, enabled=False):
            return torch.einsum("kv,bvd->bkd", regressor.to(dtype), vertices)

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
        joints24 = self._regress(self._smpl.J_regressor, vertices)
        selected = vertices.index_select(1, self._smpl.vertex_joint_selector.extra_joints_idxs).to(joints24.dtype)
        extra = self._regress(self.J_regressor_extra, vertices)
        return torch.cat([joints24, selected, extra], dim=1).index_select(1, self.spin49_index)

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 10) -> (B, 24, 3) skeleton joints of the shaped body in rest pose."""
        dtype, (betas,) = full_precision(self._smpl.v_template.dtype, betas)
        with torch.autocast(betas.device.type, enabled=False):
            v = self._smpl.v_template.to(dtype) + torch.einsum("bk,vdk->bvd", betas, self._smpl.shapedirs.to(dtype))
            return torch.einsum("jv,bvd->bjd", self._smpl.J_regressor.to(dtype), v)
