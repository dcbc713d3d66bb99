"""What PyMAF's point features sample: PyMAF Table 5's "Input Type" column (the regressors' input).

    "features"         the deconvolution map of the level (PyMAF; Table 5's "Feature" rows).
    "part_seg"         the predicted part segmentation: softmax of the auxiliary head's part-index logits,
                       (B, 25, 56, 56) probabilities of background + 24 parts ("Part. Seg." input).
    "dense_corr"       the predicted dense correspondences: those part probabilities followed by the head's
                       U and V channels as predicted ("Dense Corr." input). The head's coarse-part output
                       (PyMAF's code's, not the paper's) is in neither input.
    "masked_features"  the level's deconvolution map multiplied by the predicted foreground probability
                       1 - P(background) ("Feature*Part. Seg."). The probability is predicted at 56 x 56; a
                       coarser map (14 x 14, 28 x 28) is multiplied by its average over each of the map's cells
                       (adaptive average pooling: 4 x 4 or 2 x 2 pixels; the deconvolutions double the size
                       exactly, so a cell of a coarse map covers those pixels of the 56 x 56 map).

The paper says only that point-wise features are extracted "from the auxiliary predictions" instead of the
feature maps; PyMAF's code has no such switch. Readings taken here: the auxiliary head stays where the paper
puts it (on the last, 56 x 56 map), so with a prediction input every level samples the same 56 x 56
prediction at its own points (its own point MLP and regressor, as with features); the predictions enter as
probabilities (softmax) rather than hard labels, and nothing is detached, so the regressors' loss reaches the
head and the pyramid only THROUGH the predictions (the bottleneck the paper blames for these rows' errors).
A point MLP reading predictions has as many input channels as the prediction (25 for part segmentation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REGRESSOR_INPUTS = ("features", "part_seg", "dense_corr", "masked_features")
PREDICTION_INPUTS = ("part_seg", "dense_corr")   # sample the head's predictions instead of a feature map
BACKGROUND = 0   # class 0 of the part index


def part_probabilities(iuv: dict[str, Tensor]) -> Tensor:
    """Softmax over the part-index logits: ``iuv["index"]`` (B, P + 1, H, W) -> (B, P + 1, H, W)."""
    return F.softmax(iuv["index"], dim=1)


def dense_correspondences(iuv: dict[str, Tensor]) -> Tensor:
    """Part probabilities, then U, then V: (B, P + 1 + C_u + C_v, H, W) (C_u, C_v: the head's U / V channels)."""
    if iuv.get("u") is None or iuv.get("v") is None:
        raise ValueError("dense correspondences need the head's U and V (aux='iuv')")
    return torch.cat([part_probabilities(iuv), iuv["u"], iuv["v"]], dim=1)


def foreground_probability(iuv: dict[str, Tensor]) -> Tensor:
    """1 - P(background): (B, 1, H, W)."""
    return 1.0 - part_probabilities(iuv)[:, BACKGROUND:BACKGROUND + 1]


def mask_with_foreground(feature: Tensor, foreground: Tensor) -> Tensor:
    """feature (B, C, h, w) times the foreground probability (B, 1, H, W) averaged over each of its h x w
    cells (``adaptive_avg_pool2d``; the identity when h, w = H, W) -> (B, C, h, w)."""
    return feature * F.adaptive_avg_pool2d(foreground.to(feature.dtype), feature.shape[-2:])


def prediction_map(regressor_input: str, iuv: dict[str, Tensor]) -> Tensor:
    """The prediction a ``PREDICTION_INPUTS`` regressor input samples: (B, C_in, 56, 56)."""
    if regressor_input == "part_seg":
        return part_probabilities(iuv)
    if regressor_input == "dense_corr":
        return dense_correspondences(iuv)
    raise ValueError(f"{regressor_input!r} does not sample a prediction (those are {PREDICTION_INPUTS})")


def sampled_maps(regressor_input: str, maps: list[Tensor], iuv: dict[str, Tensor] | None,
                 indices) -> dict[int, Tensor]:
    """The map that a level reading pyramid map ``i`` samples, for each ``i`` in ``indices``.

    Args:
        regressor_input: one of ``REGRESSOR_INPUTS``.
        maps: the deconvolution pyramid [(B, C, 14, 14), (B, C, 28, 28), (B, C, 56, 56)].
        iuv: the auxiliary head's output on the last map (None only with "features").
        indices: the pyramid indices the levels read.
    Returns:
        {i: (B, C_in, h_i, w_i)}: the map itself, the masked map, or the 56 x 56 prediction for every i.
    """
    if regressor_input == "features":
        return {i: maps[i] for i in indices}
    if iuv is None:
        raise ValueError(f"regressor_input={regressor_input!r} needs the auxiliary head's output")
    if regressor_input == "masked_features":
        foreground = foreground_probability(iuv)
        return {i: mask_with_foreground(maps[i], foreground) for i in indices}
    prediction = prediction_map(regressor_input, iuv)
    return {i: prediction for i in indices}


def input_channels(regressor_input: str, feature_channels: int, head: nn.Module | None) -> int:
    """C_in of the point MLP: the feature channels, or the channels of the head's prediction (the head run
    once on a 1 x 1 zero map, so the count follows whatever the head outputs)."""
    if regressor_input not in REGRESSOR_INPUTS:
        raise ValueError(f"regressor_input must be one of {REGRESSOR_INPUTS}, got {regressor_input!r}")
    if regressor_input not in PREDICTION_INPUTS:
        return feature_channels
    if head is None:
        raise ValueError(f"regressor_input={regressor_input!r} needs the auxiliary head (aux != 'none')")
    weight = next(head.parameters())
    with torch.no_grad():
        probe = head(torch.zeros(1, feature_channels, 1, 1, dtype=weight.dtype, device=weight.device))
    return int(prediction_map(regressor_input, probe).shape[1])
