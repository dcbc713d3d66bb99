"""Linear blend skinning of a vertex subset: the down-sampled body mesh without the full-mesh forward.

PyMAF (paper A.1, "Runtime"; code TODO "use a more sparse SMPL implementation (with 431 vertices)") notes
that its feedback loop only needs the twice-down-sampled mesh (431 vertices), and that most of a loop's
time goes into the full SMPL forward. The mesh hierarchy's down-sampling ``D`` selects vertices (one 1 per
row, ``body.hierarchy``), and every step of LBS is per vertex except the joint regression, which is
linear in the shaped vertices and therefore precomputable:

    J(betas)  = J_regressor (v_template + S betas) = J_template + J_S betas                (24, 3)
    v_i       = sum_k w_ik G_k(theta, J) [v_template_i + S_i betas + P_i pose_feature(theta); 1]

So LBS restricted to the selected vertices (their template, shape and pose blend shapes and skinning
weights) equals ``D @ LBS(full mesh)`` up to float rounding. Measured on 64 random poses and shapes:
<= 4e-7 m in float32, 6e-8 m in float64 (the precomputed joints are stored in float32). For a
down-sampling that averages vertices instead of selecting them the two would differ, because skinning is
not linear in (weights, template) jointly; ``MeshHierarchy`` only stores selections (``down_index``), and
the constructor also refuses a subset that keeps a vertex twice.

Reads the ``smplx.SMPL`` buffers of a ``body.model.BodyModel``; the derived buffers are not saved in
state dicts (they are rebuilt from the body model).
"""
from __future__ import annotations

import torch
from smplx.lbs import batch_rigid_transform
from torch import Tensor, nn


def vertex_subset(hierarchy: nn.Module, level: int) -> Tensor:
    """Indices into the full mesh of the vertices that ``hierarchy.downsample(x, 0, level)`` keeps: (V_level,)."""
    n = hierarchy.num_vertices[0]
    return hierarchy.downsample(torch.arange(n).view(1, n, 1), 0, level).reshape(-1)


def skin_vertices(rotmats: Tensor, betas: Tensor, v_template: Tensor, shapedirs: Tensor, posedirs: Tensor,
                  lbs_weights: Tensor, joints_template: Tensor, joints_shapedirs: Tensor,
                  parents: Tensor) -> Tensor:
    """LBS of N vertices with a precomputed joint regression (the math of ``smplx.lbs.lbs``).

    Args:
        rotmats: (B, 24, 3, 3) joint rotations, root first.
        betas: (B, K).
        v_template: (N, 3); shapedirs: (N, 3, K); posedirs: (207, N * 3); lbs_weights: (N, 24).
        joints_template: (24, 3) = J_regressor @ full v_template.
        joints_shapedirs: (24, 3, K) = J_regressor applied to the full shapedirs.
        parents: (24,) kinematic tree (-1 root).
    Returns:
        (B, N, 3) posed vertices (no translation).
    """
    b = rotmats.shape[0]
    dtype = betas.dtype
    v_shaped = v_template + torch.einsum("bl,nkl->bnk", betas, shapedirs)
    joints = joints_template + torch.einsum("bl,jkl->bjk", betas, joints_shapedirs)
    ident = torch.eye(3, dtype=dtype, device=rotmats.device)
    pose_feature = (rotmats[:, 1:] - ident).reshape(b, -1)
    v_posed = v_shaped + (pose_feature @ posedirs).view(b, -1, 3)
    _, transforms = batch_rigid_transform(rotmats, joints, parents, dtype=dtype)    # (B, 24, 4, 4)
    per_vertex = torch.einsum("nj,bjrc->bnrc", lbs_weights, transforms)              # (B, N, 4, 4)
    return torch.einsum("bnrc,bnc->bnr", per_vertex[..., :3, :3], v_posed) + per_vertex[..., :3, 3]


class DownsampledBody(nn.Module):
    """The body model's vertices at one level of its mesh hierarchy, skinned directly.

    Args:
        body_model: a ``BodyModel``.
        level: hierarchy level (2: ~431 vertices, PyMAF's sampling points).

    ``forward(betas (B, 10), rotmats (B, 24, 3, 3))`` -> (B, V_level, 3), equal (to float rounding) to
    ``body_model.hierarchy.downsample(body_model(betas, rotmats[:, 1:], rotmats[:, :1]).vertices, 0, level)``.
    """

    def __init__(self, body_model: nn.Module, level: int = 2) -> None:
        super().__init__()
        smpl = body_model.smpl
        idx = vertex_subset(body_model.hierarchy, level)
        if idx.unique().numel() != idx.numel():
            raise ValueError("the hierarchy's down-sampling keeps a vertex twice; subset skinning needs a selection")
        n_full = smpl.v_template.shape[0]
        p = smpl.posedirs.shape[0]
        regressor, dtype = smpl.J_regressor.double(), smpl.v_template.dtype
        buffers = {
            "v_template": smpl.v_template[idx],
            "shapedirs": smpl.shapedirs[idx],
            "posedirs": smpl.posedirs.view(p, n_full, 3)[:, idx].reshape(p, -1),
            "lbs_weights": smpl.lbs_weights[idx],
            # the joint regression over the full mesh, summed in float64 then stored in the model's dtype
            "joints_template": (regressor @ smpl.v_template.double()).to(dtype),
            "joints_shapedirs": torch.einsum("jv,vkl->jkl", regressor, smpl.shapedirs.double()).to(dtype),
            "parents": smpl.parents.clone(),
            "vertex_index": idx,
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.detach().clone(), persistent=False)
        self.level = level

    @property
    def num_vertices(self) -> int:
        return int(self.vertex_index.numel())

    def forward(self, betas: Tensor, rotmats: Tensor) -> Tensor:
        if rotmats.dim() != 4 or rotmats.shape[1:] != (24, 3, 3):
            raise ValueError(f"rotmats must have shape (B, 24, 3, 3), got {tuple(rotmats.shape)}")
        dt = betas.dtype
        return skin_vertices(rotmats.to(dt), betas, self.v_template.to(dt), self.shapedirs.to(dt),
                             self.posedirs.to(dt), self.lbs_weights.to(dt), self.joints_template.to(dt),
                             self.joints_shapedirs.to(dt), self.parents)
