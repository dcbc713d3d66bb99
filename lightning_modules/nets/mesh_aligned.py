"""Point-wise features of PyMAF (paper eq. 1): bilinear sampling at 2D points, a per-point MLP, concatenation.

    phi_p = concat_{x in X} f(phi_s(x))

Points are normalised crop coordinates (x right, y down): the 21 x 21 grid ``linspace(-1, 1, 21)`` on both
axes, or the mesh vertices projected with the f = 5000 camera and divided by img_res / 2
(``body.camera.project_to_normalized_crop``, PyMAF's ``projection``). They are read with ``grid_sample``'s
``align_corners=True``, as PyMAF's ``MAF_Extractor.sampling`` does: -1 and +1 are the CENTRES of the border
pixels, so the grid's corner points read the corner pixels exactly and the 21 grid lines span the map's
pixel centres. (``body.camera``'s own pixel convention puts -1 / +1 on the crop's outer edges, i.e.
``align_corners=False``; PyMAF samples its feature maps the other way, and this module follows PyMAF: on an
H-pixel map a point lands (H - 1) / H as far from the centre as a pixel-edge reading would put it.)
Sampling pads with zeros outside the map (``grid_sample``'s default, as PyMAF), so a point beyond -1 / +1
blends the border pixel with zeros and reads zeros from one pixel outside on.

The point MLP follows PyMAF's ``MAF_Extractor.reduce_dim`` (itself from PIFu's SurfaceClassifier): 1x1
layers C -> 128 -> 64 -> 5 where every layer after the first ALSO reads the C-dimensional input feature
again (layer inputs C, 128 + C, 64 + C), leaky ReLU (slope 0.01) after the hidden layers and a ReLU on the
output. The paper's text only says "a three-layer MLP with hidden sizes (128, 64)"; this is what the code
does. The 5-d outputs are flattened channel-major (all points' channel 0, then channel 1, ...), as PyMAF
flattens its (B, 5, N) tensor.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GRID_SIZE = 21  # 21 x 21 = 441 points, about the 431 vertices of the twice-down-sampled mesh
MLP_DIMS = (128, 64, 5)


def grid_points(size: int = GRID_SIZE, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> Tensor:
    """Uniform grid over the whole crop: (size * size, 2) normalised (x, y), x = linspace(-1, 1)[i],
    y = linspace(-1, 1)[j] for point i * size + j (PyMAF's ``points_grid``: ``meshgrid`` with "ij" indexing of
    two ``linspace(-1, 1, 21)``, x slow, y fast). Read with ``align_corners=True`` (``sample_points``), the
    first and last lines lie on the border pixels' centres."""
    line = torch.linspace(-1.0, 1.0, size, dtype=dtype, device=device)
    xs, ys = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def sample_points(feature: Tensor, points: Tensor) -> Tensor:
    """Bilinear features at normalised points.

    Args:
        feature: (B, C, H, W).
        points: (B, N, 2) normalised (x, y).
    Returns:
        (B, N, C). ``align_corners=True`` (PyMAF's ``MAF_Extractor.sampling``): x = -1 / +1 is the centre of
        the first / last pixel column, pixel i's centre is at -1 + 2 i / (W - 1); zeros contribute outside
        the map (``padding_mode="zeros"``).
    """
    if feature.dim() != 4:
        raise ValueError(f"feature must have shape (B, C, H, W), got {tuple(feature.shape)}")
    if points.dim() != 3 or points.shape[-1] != 2 or points.shape[0] != feature.shape[0]:
        raise ValueError(f"points must have shape (B, N, 2) with B = {feature.shape[0]}, got {tuple(points.shape)}")
    if torch.compiler.is_exporting():
        return gather_bilinear(feature, points.to(feature.dtype))
    out = F.grid_sample(feature, points.to(feature.dtype).unsqueeze(2), mode="bilinear",
                        padding_mode="zeros", align_corners=True)       # (B, C, N, 1)
    return out[..., 0].transpose(1, 2)


def gather_bilinear(feature: Tensor, points: Tensor) -> Tensor:
    """``sample_points`` (align_corners=True, zeros outside) as row gathers of the channels-last map: the four
    neighbouring pixels' feature rows, weighted and summed. Same numbers as ``grid_sample``; used while
    exporting to ONNX, where ONNX Runtime's GridSample (plus the transposes around it) took 5 ms of PyMAF's
    batch-1 head for 1,300 points and four rows each take microseconds.

    Args: feature (B, C, H, W); points (B, N, 2) normalised (x, y). Returns (B, N, C).
    """
    b, c, h, w = feature.shape
    rows = feature.permute(0, 2, 3, 1).reshape(b * h * w, c)               # pixel (n, y, x) -> row n H W + y W + x
    x = (points[..., 0] + 1.0) * (0.5 * (w - 1))
    y = (points[..., 1] + 1.0) * (0.5 * (h - 1))
    x0, y0 = torch.floor(x), torch.floor(y)
    first = (torch.arange(b, device=feature.device) * (h * w))[:, None]
    out = feature.new_zeros(b, points.shape[1], c)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        weight = (1.0 - (x - xi).abs()) * (1.0 - (y - yi).abs())
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        index = first + (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()
        out = out + rows[index.reshape(-1)].reshape(b, -1, c) * (weight * inside)[..., None]
    return out


def flatten_channel_major(x: Tensor) -> Tensor:
    """(B, N, D) -> (B, D * N), element [d * N + n] = x[:, n, d] (PyMAF's ``y.view(B, -1)`` of (B, D, N))."""
    return x.transpose(1, 2).reshape(x.shape[0], -1)


class PointMLP(nn.Module):
    """PyMAF's per-point dimension reduction with the input re-injected at every layer after the first.

    Args:
        in_channels: C of the sampled features (256).
        dims: output sizes of the layers (128, 64, 5).

    (B, N, C) -> (B, N, dims[-1]), non-negative (final ReLU).
    """

    def __init__(self, in_channels: int, dims: Sequence[int] = MLP_DIMS) -> None:
        super().__init__()
        dims = tuple(int(d) for d in dims)
        if not dims or min(dims) < 1 or in_channels < 1:
            raise ValueError(f"in_channels and dims must be positive, got {in_channels}, {dims}")
        self.in_channels = in_channels
        self.out_channels = dims[-1]
        widths_in = (in_channels,) + tuple(d + in_channels for d in dims[:-1])
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths_in, dims))

    def forward(self, x: Tensor) -> Tensor:
        y = x
        for i, layer in enumerate(self.layers):
            y = layer(y if i == 0 else torch.cat([y, x], dim=-1))
            if i < len(self.layers) - 1:
                y = F.leaky_relu(y)
        return F.relu(y)


class PointFeatures(nn.Module):
    """Eq. 1: sample a feature map at points, reduce each point with ``PointMLP``, concatenate.

    ``forward(feature (B, C, H, W), points (B, N, 2))`` -> (B, dims[-1] * N).
    """

    def __init__(self, in_channels: int, dims: Sequence[int] = MLP_DIMS) -> None:
        super().__init__()
        self.mlp = PointMLP(in_channels, dims)

    @property
    def out_channels(self) -> int:
        return self.mlp.out_channels

    def forward(self, feature: Tensor, points: Tensor) -> Tensor:
        return flatten_channel_major(self.mlp(sample_points(feature, points)))
