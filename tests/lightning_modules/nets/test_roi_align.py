"""RoI Align against an independent per-bin loop that follows torchvision's CPU kernel step by step."""
from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.nets.roi_align import RoIAlign, boxes_from_centers, roi_align


def _bilinear(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's bilinear_interpolate on one map (C, H, W) at (y, x) -> (C,)."""
    _, height, width = fmap.shape
    if not (-1.0 <= y <= height and -1.0 <= x <= width):
        return fmap.new_zeros(fmap.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * fmap[:, y_low, x_low] + hy * lx * fmap[:, y_low, x_high]
            + ly * hx * fmap[:, y_high, x_low] + ly * lx * fmap[:, y_high, x_high])


def naive_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Per roi, per bin, per sample loop: (B, C, H, W), (K, 5) -> (K, C, PH, PW)."""
    ph_n, pw_n = output_size
    out = []
    for b, x1, y1, x2, y2 in rois.tolist():
        offset = 0.5 if aligned else 0.0
        start_w, start_h = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        roi_w, roi_h = x2 * spatial_scale - offset - start_w, y2 * spatial_scale - offset - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / ph_n, roi_w / pw_n
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph_n)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw_n)
        count = max(grid_h * grid_w, 1)
        fmap = features[int(b)]
        bins = []
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = fmap.new_zeros(fmap.shape[0])
                for iy in range(grid_h):
                    y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        acc = acc + _bilinear(fmap, y, x)
                bins.append(acc / count)
        out.append(torch.stack(bins, dim=-1).reshape(-1, ph_n, pw_n))
    return torch.stack(out) if out else features.new_zeros(0, features.shape[1], ph_n, pw_n)


def random_rois(gen, batch, image_h, image_w, count, dtype=torch.float64):
    """Boxes in image pixels reaching up to 25% beyond the image on every side, plus edge cases:
    a box sticking out top-left, a box ending near the far border, a tiny box, a zero-size box,
    an inverted box and a box entirely outside the map."""
    lo = torch.tensor([-0.25 * image_w, -0.25 * image_h])
    span = torch.tensor([1.5 * image_w, 1.5 * image_h])
    p = lo + span * torch.rand(count, 2, 2, generator=gen, dtype=torch.float64)
    xy1, xy2 = torch.minimum(p[:, 0], p[:, 1]), torch.maximum(p[:, 0], p[:, 1])
    idx = torch.randint(0, batch, (count, 1), generator=gen).double()
    rand = torch.cat([idx, xy1, xy2], dim=1)
    w, h = image_w, image_h
    special = torch.tensor([
        [0, -0.3 * w, -0.2 * h, 0.4 * w, 0.3 * h],
        [batch - 1, 0.6 * w, 0.5 * h, 1.02 * w, 0.98 * h],
        [0, 0.37 * w, 0.41 * h, 0.37 * w + 0.3, 0.41 * h + 0.2],
        [batch - 1, 0.5 * w, 0.5 * h, 0.5 * w, 0.5 * h],
        [0, 0.6 * w, 0.6 * h, 0.3 * w, 0.4 * h],
        [batch - 1, 1.3 * w, -0.9 * h, 1.6 * w, -0.4 * h],
    ], dtype=torch.float64)
    return torch.cat([rand, special]).to(dtype)


CASES = [  # (feature H, W, spatial_scale, output_size, sampling_ratio, aligned)
    (12, 15, 1.0, (4, 4), 2, True),
    (12, 15, 1.0, (3, 5), 1, True),
    (14, 14, 0.25, (5, 5), 2, True),
    (14, 14, 0.25, (4, 3), -1, True),
    (7, 7, 1 / 32, (3, 3), 2, True),
    (7, 7, 1 / 32, (2, 2), -1, True),
    (9, 11, 0.5, (3, 3), 2, False),
    (9, 11, 0.5, (2, 4), -1, False),
]


@pytest.mark.parametrize("height,width,scale,size,ratio,aligned", CASES)
def test_matches_naive_float64(height, width, scale, size, ratio, aligned):
    gen = torch.Generator().manual_seed(height * 100 + width + ratio)
    feats = torch.randn(3, 4, height, width, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 3, height / scale, width / scale, 10)
    expected = naive_roi_align(feats, rois, size, scale, ratio, aligned)
    got = roi_align(feats, rois, size, scale, ratio, aligned)
    assert got.shape == (len(rois), 4, *size)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("height,width,scale,size,ratio,aligned", CASES[::2])
def test_matches_naive_float32(height, width, scale, size, ratio, aligned):
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(2, 3, height, width, generator=gen)
    rois = random_rois(gen, 2, height / scale, width / scale, 8, dtype=torch.float32)
    expected = naive_roi_align(feats.double(), rois.double(), size, scale, ratio, aligned)
    got = roi_align(feats, rois, size, scale, ratio, aligned)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5)


def test_realistic_c2_map_float32():
    """A 56 x 56 c2 map of a 224 crop, 12 joint patches per image, as BiGraph uses it.

    float32 sample coordinates in [32, 64) are rounded to 3.8e-6 px (torchvision's float32 kernel rounds
    them the same way), times pixel differences of up to ~5 here: 3e-5 against the float64 reference.
    Exactness itself is checked in float64 above."""
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 8, 56, 56, generator=gen)
    centers = 224 * torch.rand(2, 12, 2, generator=gen)
    boxes = boxes_from_centers(centers, torch.tensor([30.0, 45.5]))
    got = roi_align(feats, boxes, 4, 0.25, 2)
    rois = torch.cat([torch.arange(2).repeat_interleave(12)[:, None].float(), boxes.reshape(-1, 4)], 1)
    expected = naive_roi_align(feats.double(), rois.double(), (4, 4), 0.25, 2, True)
    torch.testing.assert_close(got.reshape(24, 8, 4, 4).double(), expected, rtol=0, atol=3e-5)


def test_linear_ramp_known_answer():
    """Bilinear interpolation is exact on f = a x + b y + c, so a bin averages f at its centre."""
    a, b, c = 0.7, -1.3, 2.0
    ys, xs = torch.meshgrid(torch.arange(20.0).double(), torch.arange(30.0).double(), indexing="ij")
    feats = (a * xs + b * ys + c)[None, None]
    box = torch.tensor([[0, 24.0, 16.0, 80.0, 64.0]], dtype=torch.float64)   # image pixels, scale 1/4
    out = roi_align(feats, box, (3, 4), 0.25, 2)[0, 0]
    x0, y0, bw, bh = 24 / 4 - 0.5, 16 / 4 - 0.5, (80 - 24) / 4 / 4, (64 - 16) / 4 / 3
    cx = x0 + (torch.arange(4).double() + 0.5) * bw
    cy = y0 + (torch.arange(3).double() + 0.5) * bh
    torch.testing.assert_close(out, a * cx[None] + b * cy[:, None] + c, rtol=0, atol=1e-12)


def test_per_image_boxes_form_equals_rois_form():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 5, 10, 13, generator=gen, dtype=torch.float64)
    boxes = random_rois(gen, 1, 40, 52, 6)[:, 1:].reshape(3, 4, 4)
    rois = torch.cat([torch.arange(3).repeat_interleave(4)[:, None].double(), boxes.reshape(-1, 4)], 1)
    per_image = roi_align(feats, boxes, (2, 3), 0.25, -1)
    assert per_image.shape == (3, 4, 5, 2, 3)
    torch.testing.assert_close(per_image.reshape(12, 5, 2, 3), roi_align(feats, rois, (2, 3), 0.25, -1),
                               rtol=0, atol=0)


def test_rois_in_any_order_and_empty():
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(3, 2, 8, 8, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 3, 8, 8, 9)
    perm = torch.randperm(len(rois), generator=gen)
    torch.testing.assert_close(roi_align(feats, rois[perm], 2, 1.0, 2),
                               roi_align(feats, rois, 2, 1.0, 2)[perm], rtol=0, atol=0)
    assert roi_align(feats, rois[:0], (2, 3)).shape == (0, 2, 2, 3)
    assert roi_align(feats, torch.zeros(3, 0, 4, dtype=torch.float64), 2).shape == (3, 0, 2, 2, 2)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, -1.5, 0.5, 3.2, 4.1], [1, 1.0, 1.0, 5.9, 4.4], [1, 2.2, -0.7, 2.5, 0.1]],
                        dtype=torch.float64)
    for ratio in (2, -1):
        assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, (2, 2), 1.0, ratio), (feats,))


def test_gradient_equals_naive_gradient():
    """The backward pass is the adjoint of torchvision's forward (its backward kernel scatters the same
    bilinear weights)."""
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(2, 3, 9, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = random_rois(gen, 2, 36, 40, 5)
    upstream = torch.randn(len(rois), 3, 3, 3, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((roi_align(feats, rois, 3, 0.25, 2) * upstream).sum(), feats)
    (expected,) = torch.autograd.grad((naive_roi_align(feats, rois, (3, 3), 0.25, 2, True) * upstream).sum(),
                                      feats)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-10)


def test_boxes_get_no_gradient():
    feats = torch.randn(1, 2, 6, 6, requires_grad=True)
    boxes = torch.tensor([[[0.5, 0.5, 4.0, 5.0]]], requires_grad=True)
    roi_align(feats, boxes, 2).sum().backward()
    assert feats.grad is not None and boxes.grad is None


@pytest.mark.parametrize("ratio", [1, 2, -1])
def test_locality(ratio):
    """Feature pixels more than one pixel beyond a box (or in another image) cannot change its output:
    BiGraph's skeleton features must depend only on the RoIs."""
    gen = torch.Generator().manual_seed(6)
    scale = 0.25
    feats = torch.randn(2, 3, 16, 16, generator=gen)
    rois = torch.tensor([[0, 10.0, 14.0, 30.0, 26.0], [1, -8.0, 30.0, 21.0, 70.0], [0, 40.0, 3.0, 41.0, 9.0]])
    base = roi_align(feats, rois, 3, scale, ratio)
    idx = torch.arange(16.0)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        lo_x, hi_x = x1 * scale - 0.5 - 1, x2 * scale - 0.5 + 1
        lo_y, hi_y = y1 * scale - 0.5 - 1, y2 * scale - 0.5 + 1
        outside = ((idx[:, None] < lo_y) | (idx[:, None] > hi_y)) | ((idx[None] < lo_x) | (idx[None] > hi_x))
        changed = feats.clone()
        changed[int(b)][:, outside] += 100 * torch.randn(3, int(outside.sum()), generator=gen)
        changed[1 - int(b)] = torch.randn(3, 16, 16, generator=gen)
        assert torch.equal(roi_align(changed, rois, 3, scale, ratio)[k], base[k])
        inside = feats.clone()
        inside[int(b)][:, ~outside] += 1.0
        assert not torch.equal(roi_align(inside, rois, 3, scale, ratio)[k], base[k])


def test_boxes_from_centers_and_module():
    centers = torch.tensor([[[10.0, 20.0], [5.0, 5.0]]])
    boxes = boxes_from_centers(centers, torch.tensor([4.0]))
    assert torch.equal(boxes, torch.tensor([[[8.0, 18.0, 12.0, 22.0], [3.0, 3.0, 7.0, 7.0]]]))
    assert torch.equal(boxes_from_centers(centers, 4.0), boxes)
    layer = RoIAlign((2, 3), spatial_scale=0.5, sampling_ratio=2)
    feats = torch.randn(1, 2, 16, 16)
    assert torch.equal(layer(feats, boxes), roi_align(feats, boxes, (2, 3), 0.5, 2))
    assert "aligned=True" in repr(layer)


def test_input_validation():
    feats = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\(K, 5\) or \(B, N, 4\)"):
        roi_align(feats, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="batch indices"):
        roi_align(feats, torch.tensor([[2.0, 0, 0, 1, 1]]), 2)
    with pytest.raises(ValueError, match="do not match the batch"):
        roi_align(feats, torch.zeros(3, 1, 4), 2)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(feats, torch.zeros(2, 1, 4), (0, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(8)
    feats = torch.randn(2, 4, 14, 14, generator=gen)
    rois = random_rois(gen, 2, 56, 56, 8, dtype=torch.float32)
    expected = roi_align(feats, rois, 3, 0.25, -1)
    torch.testing.assert_close(roi_align(feats.cuda(), rois.cuda(), 3, 0.25, -1).cpu(), expected,
                               rtol=0, atol=1e-5)
