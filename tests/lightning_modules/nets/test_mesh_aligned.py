"""Point sampling and PyMAF's point MLP against independent computations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.nets.mesh_aligned import (
    PointFeatures, PointMLP, flatten_channel_major, grid_points, sample_points,
)


def _bilinear_zero_padded(fmap: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """(C, H, W) at normalised (x, y): pixel i covers [i, i + 1) in units where the map spans [0, W],
    centres at i + 0.5; values outside the map are 0."""
    _, h, w = fmap.shape
    px, py = (x + 1) * w / 2 - 0.5, (y + 1) * h / 2 - 0.5   # in pixel-centre index units
    x0, y0 = int(torch.floor(torch.tensor(px))), int(torch.floor(torch.tensor(py)))
    out = fmap.new_zeros(fmap.shape[0])
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * fmap[:, yy, xx]
    return out


def test_grid_has_441_points_over_the_whole_crop_in_pymafs_order():
    g = grid_points()
    assert g.shape == (441, 2)
    assert torch.equal(g[0], torch.tensor([-1.0, -1.0])) and torch.equal(g[-1], torch.tensor([1.0, 1.0]))
    assert torch.equal(g[1], torch.tensor([-1.0, -0.9]))      # y runs fastest
    assert torch.equal(g[21], torch.tensor([-0.9, -1.0]))
    assert g.unique(dim=0).shape[0] == 441


def test_sample_points_is_bilinear_with_zero_padding_and_half_pixel_centres():
    torch.manual_seed(0)
    fmap = torch.randn(2, 3, 5, 7)
    pts = torch.rand(2, 20, 2) * 2.4 - 1.2                   # some points outside the crop
    out = sample_points(fmap, pts)
    assert out.shape == (2, 20, 3)
    for b in range(2):
        for n in range(20):
            ref = _bilinear_zero_padded(fmap[b], float(pts[b, n, 0]), float(pts[b, n, 1]))
            assert torch.allclose(out[b, n], ref, atol=1e-5)
    # A pixel centre reads that pixel exactly.
    i, j = 3, 2
    centre = torch.tensor([[[2 * (i + 0.5) / 7 - 1, 2 * (j + 0.5) / 5 - 1]]]).expand(2, 1, 2)
    assert torch.allclose(sample_points(fmap, centre)[:, 0], fmap[:, :, j, i], atol=1e-6)


def test_point_mlp_reinjects_the_input_at_every_layer():
    torch.manual_seed(0)
    mlp = PointMLP(256, (128, 64, 5))
    shapes = [(layer.in_features, layer.out_features) for layer in mlp.layers]
    assert shapes == [(256, 128), (128 + 256, 64), (64 + 256, 5)]
    x = torch.randn(2, 10, 256)
    h1 = F.leaky_relu(mlp.layers[0](x), 0.01)
    h2 = F.leaky_relu(mlp.layers[1](torch.cat([h1, x], -1)), 0.01)
    ref = F.relu(mlp.layers[2](torch.cat([h2, x], -1)))
    out = mlp(x)
    assert torch.allclose(out, ref, atol=1e-6)
    assert out.min() >= 0


def test_flatten_is_channel_major():
    x = torch.arange(2 * 3 * 5).reshape(2, 3, 5)             # (B, N=3, D=5)
    flat = flatten_channel_major(x)
    assert flat.shape == (2, 15)
    for d in range(5):
        for n in range(3):
            assert flat[1, d * 3 + n] == x[1, n, d]


def test_point_features_length_is_5_per_point():
    pf = PointFeatures(16)
    out = pf(torch.randn(2, 16, 14, 14), torch.rand(2, 431, 2) * 2 - 1)
    assert out.shape == (2, 5 * 431) and pf.out_channels == 5


def test_sample_points_rejects_bad_shapes():
    with pytest.raises(ValueError):
        sample_points(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 3))
    with pytest.raises(ValueError):
        sample_points(torch.zeros(2, 3, 4, 4), torch.zeros(1, 5, 2))
