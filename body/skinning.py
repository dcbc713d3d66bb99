"""Linear blend skinning of a vertex subset: the down-sampled body mesh without the full-mesh forward.

PyMAF (paper A.1, "Runtime"; code TODO "use a more sparse SMPL implementation (with 431 vertices)") notes
that its feedback loop only needs the twice-down-sampled mesh (431 vertices), and that most of a loop's
time goes into the full SMPL forward. The mesh hierarchy's down-sampling ``D`` selects vertices (one 1 per
row, ``body/hierarchy.py``), and every step of LBS is per vertex except the joint regression, which is
linear in the shaped vertices and therefore precomputable:

    J(betas)  = J_regressor (v_template + S betas) = J_template + J_S betas                (24, 3)
    v_i       = sum_k w_ik G_k(theta, J) [v_template_i + S_i betas + P_i pose_feature(theta); 1]

So LBS restricted to the selected vertices (their template, shape and pose blend shapes and skinning
weights) equals ``D @ LBS(full mesh)`` up to float rounding (summation order): measured on random poses
and shapes, <= 4e-7 m in float32 and ~1e-15 m in float64 (``tests/body/test_skinning.py``). For a
down-sampling that averages vertices instead of selecting them the two would differ, because skinning is
not linear in (weights, template) jointly; ``MeshHierarchy`` only stores selections, and the constructor
also refuses a subset that keeps a vertex twice.

Built by ``body.model.BodyModel.downsampled_skinning(level)`` in the body model's dtype and device. The
joint regression (``joints_template``, ``joints_shapedirs``) is summed in float64 and stored in the
module's dtype, and summed again after every ``.to()`` / ``.double()`` / ``.float()`` (``_apply``): a
module converted to float64 after construction is as exact as one built in float64. All buffers are
non-persistent: they come from the body model, not from checkpoints.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def rigid_transforms(rotmats: Tensor, joints: Tensor, parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The kinematic chain (the math of ``smplx.lbs.batch_rigid_transform``), with the tree as Python ints.

    smplx walks the chain by indexing with its ``parents`` tensor, which ``torch.export`` (and so ONNX export)
    cannot trace (a data-dependent index); here the tree is fixed when the graph is built.

    Args:
        rotmats: (B, J, 3, 3) joint rotations relative to the parent, root first.
        joints: (B, J, 3) rest-pose joint locations.
        parents: (J,) parent of each joint, -1 (or anything) for the root.
    Returns:
        posed joints (B, J, 3), and (B, J, 3, 4) the transforms that carry a rest-pose point attached to each
        joint to its posed location ([R | t - R j]).
    """
    tree = [int(p) for p in parents]
    rel = torch.cat([joints[:, :1], joints[:, 1:] - joints[:, tree[1:]]], dim=1)                     # (B, J, 3)
    local = torch.cat([rotmats, rel[..., None]], dim=-1)                                               # (B, J, 3, 4)
    bottom = torch.zeros_like(local[:, :, :1, :])
    bottom[..., 3] = 1.0
    local = torch.cat([local, bottom], dim=-2)                                                         # (B, J, 4, 4)
    chain = [local[:, 0]]
    for i in range(1, len(tree)):
        chain.append(chain[tree[i]] @ local[:, i])
    world = torch.stack(chain, dim=1)                                                                  # (B, J, 4, 4)
    posed = world[..., :3, 3]
    rotation = world[..., :3, :3]
    shift = posed - torch.einsum("bjrc,bjc->bjr", rotation, joints)
    return posed, torch.cat([rotation, shift[..., None]], dim=-1)


def skin(rotmats: Tensor, betas: Tensor, v_template: Tensor, shapedirs: Tensor, posedirs: Tensor,
         lbs_weights: Tensor, joints_template: Tensor, joints_shapedirs: Tensor,
         parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """(B, N, 3) posed vertices and (B, 24, 3) posed joints: :func:`skin_vertices`' arguments."""
    b = rotmats.shape[0]
    dtype = betas.dtype
    # Contractions as matrix products and a broadcast sum (not einsums): ONNX Runtime runs an einsum over the
    # 6,890 vertices' 3 x 3 rotations 10-20x slower than the same Mul + ReduceSum (the exported graphs use these).
    v_shaped = v_template + (betas @ shapedirs.flatten(0, 1).t()).view(b, -1, 3)
    joints = joints_template + (betas @ joints_shapedirs.flatten(0, 1).t()).view(b, -1, 3)
    ident = torch.eye(3, dtype=dtype, device=rotmats.device)
    pose_feature = (rotmats[:, 1:] - ident).reshape(b, -1)
    v_posed = v_shaped + (pose_feature @ posedirs).view(b, -1, 3)
    posed_joints, transforms = rigid_transforms(rotmats, joints, parents)                 # (B, 24, 3, 4)
    per_vertex = (lbs_weights @ transforms.flatten(2)).view(b, -1, 3, 4)                  # (B, N, 3, 4)
    vertices = (per_vertex[..., :3] * v_posed[:, :, None, :]).sum(-1) + per_vertex[..., 3]
    return vertices, posed_joints


def skin_vertices(rotmats: Tensor, betas: Tensor, v_template: Tensor, shapedirs: Tensor, posedirs: Tensor,
                  lbs_weights: Tensor, joints_template: Tensor, joints_shapedirs: Tensor,
                  parents: Sequence[int]) -> Tensor:
    """LBS of N vertices with a precomputed joint regression (the math of ``smplx.lbs.lbs``).

    Args:
        rotmats: (B, 24, 3, 3) joint rotations, root first.
        betas: (B, K).
        v_template: (N, 3); shapedirs: (N, 3, K); posedirs: (207, N * 3); lbs_weights: (N, 24).
        joints_template: (24, 3) = J_regressor @ full v_template.
        joints_shapedirs: (24, 3, K) = J_regressor applied to the full shapedirs.
        parents: (24,) kinematic tree (-1 root), Python ints or a tensor.
    Returns:
        (B, N, 3) posed vertices (no translation).
    """
    return skin(rotmats, betas, v_template, shapedirs, posedirs, lbs_weights, joints_template, joints_shapedirs,
                parents)[0]


class DownsampledSkinning(nn.Module):
    """The body model's vertices at one level of its mesh hierarchy, skinned directly.

    Args:
        smpl: the body model's ``smplx.SMPL`` (its buffers are read, not kept).
        vertex_index: (N,) long, the full-mesh vertices the level keeps (``MeshHierarchy.vertex_index``).
        level: the hierarchy level (kept for reference).

    ``forward(betas (B, 10), rotmats (B, 24, 3, 3))`` -> (B, N, 3), equal (to float rounding) to the
    body model's full forward down-sampled to the level.
    """

    def __init__(self, smpl: nn.Module, vertex_index: Tensor, level: int) -> None:
        super().__init__()
        idx = vertex_index.to(device=smpl.v_template.device, dtype=torch.long)
        if idx.unique().numel() != idx.numel():
            raise ValueError("the hierarchy's down-sampling keeps a vertex twice; subset skinning needs a selection")
        n_full = smpl.v_template.shape[0]
        p = smpl.posedirs.shape[0]
        # The joint regression reads only the vertices some joint weighs (a few hundred of ~6,890): keep those.
        support = smpl.J_regressor.ne(0).any(0).nonzero().reshape(-1)
        buffers = {
            "vertex_index": idx,
            "v_template": smpl.v_template[idx],
            "shapedirs": smpl.shapedirs[idx],
            "posedirs": smpl.posedirs.view(p, n_full, 3)[:, idx].reshape(p, -1),
            "lbs_weights": smpl.lbs_weights[idx],
            # sources of the joint regression, (24, S), (S, 3), (S, 3, K)
            "regressor_columns": smpl.J_regressor[:, support],
            "regressor_v_template": smpl.v_template[support],
            "regressor_shapedirs": smpl.shapedirs[support],
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.detach().clone(), persistent=False)
        self.register_buffer("joints_template", torch.empty(0), persistent=False)
        self.register_buffer("joints_shapedirs", torch.empty(0), persistent=False)
        self._regress_joints()
        self.parents = tuple(int(p) for p in smpl.parents.tolist())   # the tree as ints (rigid_transforms)
        self.level = level

    @torch.no_grad()
    def _regress_joints(self) -> None:
        """joints_template (24, 3) and joints_shapedirs (24, 3, K): summed in float64, stored in v_template's dtype."""
        regressor = self.regressor_columns.double()
        dtype = self.v_template.dtype
        self.joints_template = (regressor @ self.regressor_v_template.double()).to(dtype)
        self.joints_shapedirs = torch.einsum("js,skl->jkl", regressor, self.regressor_shapedirs.double()).to(dtype)

    def _apply(self, fn, recurse: bool = True):
        """Module conversions (``.to``, ``.double``, ``.cuda``, ...) convert the buffers, then the joint
        regression is summed again from the converted sources (no float32 rounding survives a ``.double()``)."""
        super()._apply(fn, recurse)
        self._regress_joints()
        return self

    @property
    def num_vertices(self) -> int:
        return int(self.vertex_index.numel())

    def forward(self, betas: Tensor, rotmats: Tensor) -> Tensor:
        """(B, 10), (B, 24, 3, 3) root first -> (B, N, 3) posed vertices of the level (no translation)."""
        if rotmats.dim() != 4 or rotmats.shape[1:] != (24, 3, 3):
            raise ValueError(f"rotmats must have shape (B, 24, 3, 3), got {tuple(rotmats.shape)}")
        # The module's dtype (or the inputs', if wider) with autocast off, as the body model (body/model.py).
        dt = torch.promote_types(torch.promote_types(self.v_template.dtype, betas.dtype), rotmats.dtype)
        with torch.autocast(betas.device.type, enabled=False):
            return skin_vertices(rotmats.to(dt), betas.to(dt), self.v_template.to(dt), self.shapedirs.to(dt),
                                 self.posedirs.to(dt), self.lbs_weights.to(dt), self.joints_template.to(dt),
                                 self.joints_shapedirs.to(dt), self.parents)
