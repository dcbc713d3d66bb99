"""3D errors in millimetres from metres: MPJPE, PA-MPJPE, PVE, and the LSP-14 evaluation joints."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from body.joints import H36M17_PELVIS, H36M_TO_LSP14, LSP14_HIP_INDICES
from body.procrustes import procrustes_align

M_TO_MM = 1000.0
PVE_ALIGNMENTS = ("none", "pelvis", "procrustes")


# ----------------------------------------------------------------------------------------------
# 3D joints and vertices
# ----------------------------------------------------------------------------------------------
def _check_pair(pred: Tensor, target: Tensor, what: str) -> None:
    if pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"{what}: pred must have shape (B, N, 3), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(f"{what}: target must have the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}")


def root_of(points: Tensor, pelvis: int | Sequence[int]) -> Tensor:
    """The root of each sample: one joint, or the mean of several (e.g. two hips).

    Args:
        points: (B, N, 3).
        pelvis: a joint index, or a sequence of indices to average.
    Returns:
        (B, 3).
    """
    if isinstance(pelvis, Sequence):
        return points[:, [int(i) for i in pelvis]].mean(dim=1)
    return points[:, int(pelvis)]


def mpjpe(pred: Tensor, target: Tensor, pelvis: int | Sequence[int] | None = None,
          weights: Tensor | None = None) -> Tensor:
    """Mean per-joint position error of each sample, in mm.

    Args:
        pred: (B, J, 3) predicted joints, metres.
        target: (B, J, 3) ground-truth joints, metres.
        pelvis: None = inputs are already root-relative (e.g. ``protocol_joints`` output);
            an index or a sequence of indices (averaged) = subtract that root of each set first.
        weights: optional (B, J) per-joint weights (e.g. visibility); the error is their weighted
            mean (NaN for a sample whose weights are all zero).
    Returns:
        (B,) errors in mm, dtype of ``pred``.
    """
    _check_pair(pred, target, "mpjpe")
    if pelvis is not None:
        pred = pred - root_of(pred, pelvis)[:, None]
        target = target - root_of(target, pelvis)[:, None]
    dist = torch.linalg.vector_norm(pred - target, dim=-1)                  # (B, J)
    if weights is None:
        return dist.mean(dim=1) * M_TO_MM
    if weights.shape != dist.shape:
        raise ValueError(f"mpjpe: weights must have shape (B, J) = {tuple(dist.shape)}, got {tuple(weights.shape)}")
    w = weights.to(dist.dtype)
    return (dist * w).sum(dim=1) / w.sum(dim=1) * M_TO_MM


def pa_mpjpe(pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """MPJPE after the per-sample similarity Procrustes alignment of ``pred`` onto ``target``, in mm.

    Scale, proper rotation (det +1, never a reflection) and translation are solved per sample in
    float64 by ``body.procrustes.procrustes_align``; translation makes any root subtraction moot.

    Args:
        pred: (B, J, 3) metres.
        target: (B, J, 3) metres.
        weights: optional (B, J) weights used by both the alignment and the mean.
    Returns:
        (B,) errors in mm, dtype of ``pred``.
    """
    _check_pair(pred, target, "pa_mpjpe")
    aligned = procrustes_align(pred, target, weights)
    return mpjpe(aligned, target, weights=weights)


def pve(pred_verts: Tensor, target_verts: Tensor, alignment: str = "none",
        pelvis_pred: Tensor | None = None, pelvis_target: Tensor | None = None) -> Tensor:
    """Mean per-vertex error of each sample, in mm.

    Args:
        pred_verts: (B, V, 3) metres.
        target_verts: (B, V, 3) metres (same topology).
        alignment: "none" (as given: the 3DPW protocol of SPIN/PyMAF, body-model vertices without
            camera translation), "pelvis" (subtract ``pelvis_pred`` / ``pelvis_target``) or
            "procrustes" (similarity Procrustes over all vertices).
        pelvis_pred: (B, 3) root of the prediction; required for "pelvis".
        pelvis_target: (B, 3) root of the ground truth; required for "pelvis".
    Returns:
        (B,) errors in mm, dtype of ``pred_verts``.
    """
    _check_pair(pred_verts, target_verts, "pve")
    if alignment == "pelvis":
        if pelvis_pred is None or pelvis_target is None:
            raise ValueError("pve: alignment='pelvis' needs pelvis_pred and pelvis_target, each (B, 3)")
        b = pred_verts.shape[0]
        for name, p in (("pelvis_pred", pelvis_pred), ("pelvis_target", pelvis_target)):
            if p.shape != (b, 3):
                raise ValueError(f"pve: {name} must have shape ({b}, 3), got {tuple(p.shape)}")
        pred_verts = pred_verts - pelvis_pred[:, None]
        target_verts = target_verts - pelvis_target[:, None]
    elif alignment == "procrustes":
        pred_verts = procrustes_align(pred_verts, target_verts)
    elif alignment != "none":
        raise ValueError(f"pve: alignment must be one of {PVE_ALIGNMENTS}, got {alignment!r}")
    return torch.linalg.vector_norm(pred_verts - target_verts, dim=-1).mean(dim=1) * M_TO_MM


def lsp14_from_h36m17(joints17: Tensor) -> Tensor:
    """The 14 LSP evaluation joints from the 17 H36M-regressor joints: (B, 17, 3) -> (B, 14, 3)."""
    if joints17.dim() != 3 or joints17.shape[1] != 17:
        raise ValueError(f"joints17 must have shape (B, 17, C), got {tuple(joints17.shape)}")
    return joints17[:, H36M_TO_LSP14]


def protocol_joints(h36m17: Tensor, root: str = "pelvis") -> Tensor:
    """The MPJPE / PA-MPJPE protocol joints: 14 LSP joints from the H36M regressor, root-relative.

    Args:
        h36m17: (B, 17, 3) joints regressed with the H36M regressor (metres).
        root: "pelvis" = subtract H36M joint 0 (what SPIN's and PyMAF's eval.py do, i.e. the
            published numbers); "hips" = subtract the midpoint of the two LSP hips.
    Returns:
        (B, 14, 3) root-relative joints; feed them to ``mpjpe(..., pelvis=None)`` / ``pa_mpjpe``.
    """
    lsp = lsp14_from_h36m17(h36m17)
    if root == "pelvis":
        centre = h36m17[:, H36M17_PELVIS]
    elif root == "hips":
        centre = root_of(lsp, LSP14_HIP_INDICES)
    else:
        raise ValueError(f"protocol_joints: root must be 'pelvis' or 'hips', got {root!r}")
    return lsp - centre[:, None]
