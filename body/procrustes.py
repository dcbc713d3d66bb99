"""Batched similarity Procrustes (Umeyama 1991) for PA-MPJPE and PA-PVE.

Finds, per sample, the scale s, proper rotation R (det +1) and translation t minimising
    sum_i w_i || s R x_i + t - y_i ||^2
for source points x and target points y. With normalised weights, means mu_x, mu_y, centred
points and the weighted cross-covariance C = sum_i w_i (y_i - mu_y)(x_i - mu_x)^T = U S V^T:
    R = U D V^T,   D = diag(1, 1, sign(det U det V))     (reflection fix)
    s = trace(S D) / sum_i w_i |x_i - mu_x|^2
    t = mu_y - s R mu_x.
The SVD is done in float64 for accuracy; results are cast back to the input dtype.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check_points(source: Tensor, target: Tensor, weights: Tensor | None) -> None:
    if source.dim() != 3 or source.shape[-1] != 3:
        raise ValueError(f"source must have shape (B, N, 3), got {tuple(source.shape)}")
    if target.shape != source.shape:
        raise ValueError(f"target must have the shape of source {tuple(source.shape)}, got {tuple(target.shape)}")
    if weights is not None and weights.shape != source.shape[:2]:
        raise ValueError(f"weights must have shape (B, N) = {tuple(source.shape[:2])}, got {tuple(weights.shape)}")


def _procrustes64(source: Tensor, target: Tensor, weights: Tensor | None,
                  eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """float64 core of ``similarity_procrustes``: scale (B,), R (B, 3, 3), t (B, 3)."""
    x = source.double()
    y = target.double()
    if weights is None:
        w = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    else:
        w = weights.double()
    w = w / w.sum(dim=1, keepdim=True).clamp_min(eps)                    # (B, N)

    mu_x = torch.einsum("bn,bnk->bk", w, x)                                # (B, 3)
    mu_y = torch.einsum("bn,bnk->bk", w, y)
    xc = x - mu_x[:, None]
    yc = y - mu_y[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", w, yc, xc)                       # (B, 3, 3)
    var_x = torch.einsum("bn,bnk->b", w, xc * xc)                          # (B,)

    u, sing, vh = torch.linalg.svd(cov)
    d = torch.where(torch.linalg.det(u) * torch.linalg.det(vh) < 0, -1.0, 1.0).to(x)   # (B,)
    diag = torch.cat([torch.ones_like(sing[:, :2]), d[:, None]], dim=1)    # (B, 3) = diag(D)
    rot = u @ (diag[:, :, None] * vh)                                      # U D V^T
    scale = (sing * diag).sum(dim=1) / var_x.clamp_min(eps)
    t = mu_y - scale[:, None] * torch.einsum("bij,bj->bi", rot, mu_x)
    return scale, rot, t


def similarity_procrustes(source: Tensor, target: Tensor, weights: Tensor | None = None,
                          eps: float = 1e-12) -> tuple[Tensor, Tensor, Tensor]:
    """Similarity transform taking ``source`` onto ``target``: target ~ scale * R @ source + t.

    Args:
        source: (B, N, 3) points to align.
        target: (B, N, 3) reference points.
        weights: optional (B, N) non-negative per-point weights (e.g. joint visibility); None = uniform.
        eps: guards divisions for degenerate inputs (all weights zero, all source points equal).
    Returns:
        scale (B,), R (B, 3, 3) with det +1, t (B, 3), in the dtype of ``source``.
    """
    _check_points(source, target, weights)
    scale, rot, t = _procrustes64(source, target, weights, eps)
    return scale.to(source.dtype), rot.to(source.dtype), t.to(source.dtype)


def procrustes_align(source: Tensor, target: Tensor, weights: Tensor | None = None,
                     eps: float = 1e-12) -> Tensor:
    """``source`` after the best similarity transform onto ``target`` (see ``similarity_procrustes``).

    Args:
        source: (B, N, 3).
        target: (B, N, 3).
        weights: optional (B, N) per-point weights.
        eps: see ``similarity_procrustes``.
    Returns:
        (B, N, 3) aligned source, dtype of ``source``.
    """
    _check_points(source, target, weights)
    scale, rot, t = _procrustes64(source, target, weights, eps)
    aligned = scale[:, None, None] * source.double() @ rot.transpose(1, 2) + t[:, None]
    return aligned.to(source.dtype)
