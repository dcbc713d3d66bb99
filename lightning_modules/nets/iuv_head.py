"""PyMAF's auxiliary pixel-wise head (paper 3.3, eq. 4) and its losses, as PyMAF's code has them.

Head (PyMAF's ``IUV_predict_layer``): 3x3 convolutions (padding 1) on the last, 56 x 56 feature map:
    index  (B, 25, H, W) logits: background + 24 surface parts (its ``predict_uv_index``);
    coarse (B, 15, H, W) logits: background + DensePose's 14 coarse parts (its ``predict_ann_index``);
    u, v   (B, 25, H, W) each: one chart coordinate per part, INCLUDING a background channel 0.
With ``with_uv=False`` (the "part segmentation" supervision of the paper's Table 5) the head predicts index
and coarse only, as ``IUV_predict_layer(with_uv=False)``. The paper names only the part index and U, V; the
coarse head and the 25-channel U, V are the code's.

Ground truth: the IUV image (B, 3, H, W) at the head's resolution (``body.render.face_iuv_map``): channel 0
the part index (0 background, 1..24), channels 1, 2 U and V (0 on background); the coarse class of a pixel is
``coarse_of_part[part]`` (``BodyModel.iuv_coarse_of_part``: PyMAF's ``Index2mask`` for DensePose's parts).

Losses (PyMAF's ``Trainer.body_uv_losses`` on the one-hot maps of its ``iuv_img2map``), over the valid samples
(those with ground truth; PyMAF's ``valid_fit``), with B the FULL batch size, counted before the masking:
    index:  cross entropy of the index logits against the part index, mean over the valid samples' pixels;
    coarse: cross entropy of the coarse logits against the coarse class, mean over the same pixels;
    u, v:   smooth L1 (beta 1) between each pixel's predicted channel of its ground-truth part and the ground
            truth, SUMMED over all pixels of the valid samples and divided by B. PyMAF selects the channels
            with its one-hot index map (``u_pred[Imap > 0]``), whose channel 0 is 1 on background: background
            pixels regress channel 0 to their U, V of 0.
The weights (PyMAF's config: 0.5 on U and on V, its POINT_REGRESSION_WEIGHTS; 1 on index and coarse, which it
adds unweighted; INDEX_WEIGHTS and PART_WEIGHTS are unused) are the caller's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_PARTS = 24
NUM_COARSE = 15   # background + DensePose's 14 coarse parts
KEYS = ("index", "coarse", "u", "v")


class IUVHead(nn.Module):
    """(B, C, H, W) -> {"index": (B, 25, H, W) logits, "coarse": (B, 15, H, W) logits, "u": (B, 25, H, W),
    "v": (B, 25, H, W)} (no "u" / "v" with ``with_uv=False``).

    Args:
        in_channels: C (256).
        num_parts: body parts (24); index, U and V have one more channel (background 0).
        with_uv: also predict U and V (dense correspondences); False = part segmentation only.
        kernel_size: 3 (PyMAF's ``final_cov_k``) or 1.
        num_coarse: coarse classes, background included (15).
    """

    def __init__(self, in_channels: int, num_parts: int = NUM_PARTS, with_uv: bool = True,
                 kernel_size: int = 3, num_coarse: int = NUM_COARSE) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise ValueError(f"kernel_size must be 1 or 3, got {kernel_size}")
        conv = lambda out: nn.Conv2d(in_channels, out, kernel_size, padding=kernel_size // 2)  # noqa: E731
        self.num_parts = num_parts
        self.with_uv = with_uv
        self.index = conv(num_parts + 1)
        self.coarse = conv(num_coarse)
        self.u = conv(num_parts + 1) if with_uv else None
        self.v = conv(num_parts + 1) if with_uv else None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {"index": self.index(x), "coarse": self.coarse(x)}
        if self.with_uv:
            out["u"] = self.u(x)
            out["v"] = self.v(x)
        return out


def iuv_losses(pred: dict[str, Tensor], gt_iuv: Tensor, valid: Tensor | None = None,
               coarse_of_part: Tensor | None = None) -> dict[str, Tensor]:
    """PyMAF's auxiliary losses (module docstring), unweighted.

    Args:
        pred: ``IUVHead`` output: "index" (B, P + 1, H, W) logits, optional "coarse" (B, K, H, W) logits and
            "u", "v" (B, P + 1, H, W).
        gt_iuv: (B, 3, H, W) ground-truth IUV image (part index 0..P as float, U, V; zeros on background).
        valid: (B,) bool, samples that have ground truth (e.g. ``has_smpl``); None = all.
        coarse_of_part: (P + 1,) long, part index -> coarse class (needed with "coarse").
    Returns:
        {"index", "coarse", "u", "v"} scalars, each only when predicted. Without any valid sample every term
        is 0 (as PyMAF's) and still part of the graph (DDP sees all parameters used).
    """
    logits = pred["index"]
    if gt_iuv.dim() != 4 or gt_iuv.shape[1] != 3 or gt_iuv.shape[-2:] != logits.shape[-2:] \
            or gt_iuv.shape[0] != logits.shape[0]:
        raise ValueError(f"gt_iuv must have shape (B, 3, H, W) = {(logits.shape[0], 3, *logits.shape[-2:])} "
                         f"(render it at the head's resolution), got {tuple(gt_iuv.shape)}")
    keys = [k for k in KEYS if pred.get(k) is not None]
    if "coarse" in keys and coarse_of_part is None:
        raise ValueError("the coarse head's loss needs coarse_of_part (BodyModel.iuv_coarse_of_part)")
    batch_size = logits.shape[0]                      # PyMAF: index_pred.size(0), before the masking
    if valid is not None:
        valid = valid.to(device=logits.device, dtype=torch.bool).reshape(-1)
        if not bool(valid.any()):
            return {k: pred[k].sum() * 0.0 for k in keys}
        pred = {k: pred[k][valid] for k in keys}
        gt_iuv = gt_iuv[valid]
    part = gt_iuv[:, 0].round().long()                # (b, H, W) 0..P
    out = {"index": F.cross_entropy(pred["index"], part)}
    if "coarse" in keys:
        out["coarse"] = F.cross_entropy(pred["coarse"], coarse_of_part.to(part.device).long()[part])
    for k, channel in (("u", 1), ("v", 2)):
        if k in keys:
            at_part = pred[k].gather(1, part.unsqueeze(1)).squeeze(1)            # channel 0 on background
            target = torch.where(part > 0, gt_iuv[:, channel], torch.zeros_like(gt_iuv[:, channel]))
            out[k] = F.smooth_l1_loss(at_part, target.to(at_part.dtype), reduction="sum", beta=1.0) / batch_size
    return out
