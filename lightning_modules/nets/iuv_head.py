"""PyMAF's auxiliary pixel-wise head (paper 3.3, eq. 4) and its losses.

Head (PyMAF's ``IUV_predict_layer``): 3x3 convolutions (padding 1) on the last, 56 x 56 feature map:
    index logits (B, 25, H, W): background + 24 parts;
    U, V         (B, 24, H, W) each: one chart coordinate per part, read at the part a pixel belongs to.
PyMAF's code gives U and V 25 channels (a background channel too) and its loss then also regresses that
background channel to 0 at background pixels, because its one-hot mask includes channel 0; the paper says
only foreground pixels count. This suite follows the paper: 24 U / V channels, foreground pixels only.
PyMAF's code also predicts a 15-class coarse "annotation index" (DensePose's 14 coarse parts) with its own
cross entropy; it is defined on DensePose's part numbering, which this suite's derived parts
(``body.parts``) do not have, and the paper does not mention it, so it is left out.
With ``with_uv=False`` the head predicts the part index only (the "part segmentation" supervision of the
paper's Table 5).

Losses (PyMAF's ``body_uv_losses``):
    index: cross entropy over all pixels (mean);
    U, V:  smooth L1 (beta 1) between the predicted U (V) channel OF THE GROUND-TRUTH PART and the ground
           truth, summed over foreground pixels of the ground-truth index, divided by the number of samples.
The weights (index 1, UV 0.5 in PyMAF's code: its INDEX_WEIGHTS option is unused) are the caller's.
Ground truth is the IUV image of ``body.render.iuv_map`` at the head's resolution: channel 0 the part index
(0 background, 1..24), channels 1, 2 U and V.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_PARTS = 24


class IUVHead(nn.Module):
    """(B, C, H, W) -> {"index": (B, 25, H, W) logits, "u": (B, 24, H, W), "v": (B, 24, H, W)}
    (no "u" / "v" with ``with_uv=False``).

    Args:
        in_channels: C (256).
        num_parts: body parts (24); the index has one more class (background 0).
        with_uv: also predict U and V (dense correspondences); False = part segmentation only.
        kernel_size: 3 (PyMAF's ``final_cov_k``) or 1.
    """

    def __init__(self, in_channels: int, num_parts: int = NUM_PARTS, with_uv: bool = True,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise ValueError(f"kernel_size must be 1 or 3, got {kernel_size}")
        pad = kernel_size // 2
        self.num_parts = num_parts
        self.with_uv = with_uv
        self.index = nn.Conv2d(in_channels, num_parts + 1, kernel_size, padding=pad)
        self.u = nn.Conv2d(in_channels, num_parts, kernel_size, padding=pad) if with_uv else None
        self.v = nn.Conv2d(in_channels, num_parts, kernel_size, padding=pad) if with_uv else None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {"index": self.index(x)}
        if self.with_uv:
            out["u"] = self.u(x)
            out["v"] = self.v(x)
        return out


def _gt_part_channel(pred: Tensor, gt_index: Tensor) -> Tensor:
    """Per pixel, the channel of the ground-truth part: (B, P, H, W), (B, H, W) in 0..P -> (B, H, W)
    (background pixels read channel 0; callers mask them out)."""
    return pred.gather(1, (gt_index - 1).clamp(min=0).unsqueeze(1)).squeeze(1)


def iuv_losses(pred: dict[str, Tensor], gt_iuv: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
    """PyMAF's auxiliary losses, unweighted.

    Args:
        pred: ``IUVHead`` output: "index" (B, P + 1, H, W) logits, optional "u", "v" (B, P, H, W).
        gt_iuv: (B, 3, H, W) ground-truth IUV image (part index 0..P as float, U, V).
        valid: (B,) bool, samples that have ground truth (e.g. ``has_smpl``); None = all.
    Returns:
        {"index": cross entropy, "u": smooth L1, "v": smooth L1} scalars ("u" / "v" only when predicted).
        Without any valid sample every term is 0 and still part of the graph (DDP sees all parameters used).
    """
    logits = pred["index"]
    if gt_iuv.dim() != 4 or gt_iuv.shape[1] != 3 or gt_iuv.shape[-2:] != logits.shape[-2:] \
            or gt_iuv.shape[0] != logits.shape[0]:
        raise ValueError(f"gt_iuv must have shape (B, 3, H, W) = {(logits.shape[0], 3, *logits.shape[-2:])} "
                         f"(render it at the head's resolution), got {tuple(gt_iuv.shape)}")
    keys = ["index"] + [k for k in ("u", "v") if pred.get(k) is not None]
    if valid is not None:
        valid = valid.to(torch.bool).reshape(-1)
        if not bool(valid.any()):
            return {k: pred[k].sum() * 0.0 for k in keys}
        pred = {k: pred[k][valid] for k in keys}
        gt_iuv = gt_iuv[valid]
    gt_index = gt_iuv[:, 0].round().long()
    out = {"index": F.cross_entropy(pred["index"], gt_index)}
    foreground = gt_index > 0
    n = gt_iuv.shape[0]
    for k, channel in (("u", 1), ("v", 2)):
        if k in keys:
            at_part = _gt_part_channel(pred[k], gt_index)
            out[k] = F.smooth_l1_loss(at_part[foreground], gt_iuv[:, channel][foreground].to(at_part.dtype),
                                      reduction="sum", beta=1.0) / n
    return out
