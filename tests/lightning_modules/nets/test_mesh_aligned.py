"""Point sampling and PyMAF's point MLP against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_modules.nets.mesh_aligned import (
    PointFeatures, PointMLP, flatten_channel_major, grid_points, sample_points,
)


def _bilinear_zero_padded(fmap: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """(C, H, W) at normalised (x, y) with PyMAF's convention (``align_corners=True``): pixel i's centre is at
    -1 + 2 i / (W - 1), so -1 / +1 are the border pixels' centres; values outside the map are 0."""
    _, h, w = fmap.shape
    px, py = (x + 1) * (w - 1) / 2, (y + 1) * (h - 1) / 2   # in pixel-centre index units
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    out = fmap.new_zeros(fmap.shape[0])
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * fmap[:, yy, xx]
    return out


def _official_grid(size: int) -> np.ndarray:
    """PyMAF's ``points_grid`` rebuilt in numpy: meshgrid ("ij") of two linspace(-1, 1, size), stacked as
    (x, y) rows and transposed to (size * size, 2)."""
    xv, yv = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    return np.stack([xv.reshape(-1), yv.reshape(-1)]).T


def test_grid_has_441_points_over_the_whole_crop_in_pymafs_order():
    g = grid_points()
    assert g.shape == (441, 2)
    assert torch.equal(g[0], torch.tensor([-1.0, -1.0])) and torch.equal(g[-1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(g[1], torch.tensor([-1.0, -0.9]))      # y runs fastest
    assert torch.allclose(g[21], torch.tensor([-0.9, -1.0]))
    assert g.unique(dim=0).shape[0] == 441
    np.testing.assert_allclose(g.numpy(), _official_grid(21), rtol=0, atol=1e-7)


def test_corner_points_read_the_corner_pixels_exactly():
    """align_corners=True: on a 2 x 2 map, (-1, -1), (1, -1), (-1, 1), (1, 1) are the four pixel centres and
    (0, 0) their mean."""
    fmap = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-5.0, 7.0], [11.0, 13.0]]]])       # (1, 2, 2, 2)
    pts = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]])
    out = sample_points(fmap, pts)                                                         # (1, 5, 2)
    expected = torch.tensor([[1.0, -5.0], [2.0, 7.0], [3.0, 11.0], [4.0, 13.0], [2.5, 6.5]])
    assert torch.equal(out[0, :4], expected[:4])
    assert torch.allclose(out[0, 4], expected[4])


def test_sample_points_is_bilinear_with_zero_padding_and_corner_aligned_centres():
    torch.manual_seed(0)
    fmap = torch.randn(2, 3, 5, 7)
    pts = torch.rand(2, 20, 2) * 2.8 - 1.4                   # some points outside the crop
    out = sample_points(fmap, pts)
    assert out.shape == (2, 20, 3)
    for b in range(2):
        for n in range(20):
            ref = _bilinear_zero_padded(fmap[b], float(pts[b, n, 0]), float(pts[b, n, 1]))
            assert torch.allclose(out[b, n], ref, atol=1e-5)
    # A pixel centre reads that pixel exactly.
    i, j = 3, 2
    centre = torch.tensor([[[-1 + 2 * i / 6, -1 + 2 * j / 4]]]).expand(2, 1, 2)
    assert torch.allclose(sample_points(fmap, centre)[:, 0], fmap[:, :, j, i], atol=1e-6)
    # The 21 x 21 grid on a 21 x 21 map reads every pixel once.
    fmap21 = torch.randn(1, 4, 21, 21)
    read = sample_points(fmap21, grid_points()[None])                                     # (1, 441, 4)
    torch.testing.assert_close(read[0], fmap21[0].permute(2, 1, 0).reshape(441, 4), rtol=0, atol=1e-5)


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
