import math

import pytest
import roma
import torch

from body import camera as C


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_constants():
    assert C.FOCAL_LENGTH == 5000.0 and C.IMG_RES == 224
    assert C.IMAGENET_MEAN == (0.485, 0.456, 0.406) and C.IMAGENET_STD == (0.229, 0.224, 0.225)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weak_perspective_translation_round_trip(dtype):
    cam = torch.stack([torch.rand(10) * 1.5 + 0.3, torch.randn(10) * 0.2, torch.randn(10) * 0.2], 1).to(dtype)
    t = C.weak_perspective_to_translation(cam)
    expected_z = 2 * 5000.0 / (224 * cam[:, 0] + 1e-9)
    assert torch.allclose(t, torch.stack([cam[:, 1], cam[:, 2], expected_z], 1))
    assert t.dtype == dtype
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(C.translation_to_weak_perspective(t), cam, rtol=rtol, atol=rtol)
    # known answer: s = 0.9 -> tz = 10000 / 201.6
    t1 = C.weak_perspective_to_translation(torch.tensor([[0.9, 0.1, -0.2]], dtype=torch.float64))
    assert t1[0, 2].item() == pytest.approx(10000.0 / 201.6, rel=1e-9)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        C.weak_perspective_to_translation(torch.zeros(4, 2))


def test_perspective_projection_known_values():
    pts = torch.tensor([[[0.1, -0.2, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    out = C.perspective_projection(pts, t, focal_length=1000.0, camera_center=torch.tensor([320.0, 240.0]))
    # u = f x / z + cx, y down stays as given (no flip)
    expected = torch.tensor([[[1000 * 0.1 / 2 + 320, 1000 * -0.2 / 2 + 240], [320.0, 240.0]]], dtype=torch.float64)
    assert torch.allclose(out, expected)
    # per-sample (B,) and (B, 2) focal lengths and (B, 2) centres
    pts2 = pts.expand(2, 2, 3)
    t2 = t.expand(2, 3)
    out_b = C.perspective_projection(pts2, t2, torch.tensor([1000.0, 500.0]), torch.zeros(2, 2))
    assert torch.allclose(out_b[1, 0], torch.tensor([500 * 0.05, -500 * 0.1], dtype=torch.float64))
    out_b2 = C.perspective_projection(pts2, t2, torch.tensor([[1000.0, 500.0], [1.0, 2.0]]))
    assert torch.allclose(out_b2[0, 0], torch.tensor([50.0, -50.0], dtype=torch.float64))
    assert torch.allclose(out_b2[1, 0], torch.tensor([0.05, -0.2], dtype=torch.float64))


def test_perspective_projection_rotation():
    pts = torch.randn(3, 7, 3, dtype=torch.float64)
    rot = roma.random_rotmat(3, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.0, 20.0]], dtype=torch.float64).expand(3, 3)
    out = C.perspective_projection(pts, t, 5000.0, rotation=rot)
    manual = C.perspective_projection(torch.einsum("bij,bnj->bni", rot, pts), t, 5000.0)
    assert torch.allclose(out, manual)


def test_projection_errors():
    with pytest.raises(ValueError, match=r"points must have shape \(B, N, 3\)"):
        C.perspective_projection(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="translation"):
        C.perspective_projection(torch.zeros(2, 4, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="focal_length"):
        C.perspective_projection(torch.zeros(2, 4, 3), torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="camera_center"):
        C.perspective_projection(torch.zeros(2, 4, 3), torch.ones(2, 3), 1.0, torch.zeros(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalized_projection_is_weak_perspective_at_zero_depth(dtype):
    cam = torch.tensor([[0.8, 0.1, -0.05], [1.2, -0.3, 0.2]], dtype=dtype)
    pts = torch.randn(2, 5, 3, dtype=dtype) * 0.5
    pts[..., 2] = 0.0
    out = C.project_to_normalized_crop(pts, cam)
    expected = cam[:, None, :1] * (pts[..., :2] + cam[:, None, 1:])
    assert torch.allclose(out, expected, atol=1e-6)


def test_normalized_projection_equals_pixels_then_normalize():
    cam = torch.tensor([[0.9, 0.05, 0.1]], dtype=torch.float64)
    pts = torch.randn(1, 30, 3, dtype=torch.float64) * 0.4
    px = C.perspective_projection(pts, C.weak_perspective_to_translation(cam), 5000.0,
                                  torch.tensor([112.0, 112.0]))
    assert torch.allclose(C.pixels_to_normalized(px, 224), C.project_to_normalized_crop(pts, cam))


def test_pixels_normalized_convention():
    px = torch.tensor([[[0.0, 224.0, 1.0], [112.0, 56.0, 0.5]]])
    n = C.pixels_to_normalized(px, 224)
    assert torch.equal(n, torch.tensor([[[-1.0, 1.0, 1.0], [0.0, -0.5, 0.5]]]))  # confidence kept
    assert torch.allclose(C.normalized_to_pixels(n, 224), px)
    # a horizontal flip (x -> W - x) is x_norm -> -x_norm
    flipped = px.clone()
    flipped[..., 0] = 224 - flipped[..., 0]
    assert torch.allclose(C.pixels_to_normalized(flipped, 224)[..., 0], -n[..., 0])


def test_normalized_convention_matches_grid_sample():
    # sampling a crop at the normalised coordinate of pixel (i, j)'s centre returns that pixel
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    centres = torch.tensor([[[2.5, 1.5], [0.5, 3.5]]])  # (x, y) centres of pixels (col 2, row 1), (0, 3)
    grid = C.pixels_to_normalized(centres, 4)[:, :, None]   # (1, 2, 1, 2)
    val = torch.nn.functional.grid_sample(img, grid, align_corners=False)
    assert val.flatten().tolist() == [img[0, 0, 1, 2].item(), img[0, 0, 3, 0].item()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_crop_affine_centre_scale_and_round_trip(dtype):
    b = 6
    center = (torch.rand(b, 2) * 500).to(dtype)
    scale = (torch.rand(b) * 2 + 0.5).to(dtype)
    rot = ((torch.rand(b) - 0.5) * 60).to(dtype)
    a = C.crop_affine(center, scale, 224, rot)
    assert a.shape == (b, 2, 3) and a.dtype == dtype
    # the box centre lands on the crop centre
    assert torch.allclose(C.apply_affine(center[:, None], a), torch.full((b, 1, 2), 112.0, dtype=dtype), atol=1e-4)
    # the box side (200 * scale px) becomes the crop side
    lin = a[:, :, :2]
    assert torch.allclose(torch.linalg.det(lin).abs().sqrt(), 224 / (200 * scale), rtol=1e-5)
    # original -> crop -> original
    pts = (torch.rand(b, 20, 2) * 600).to(dtype)
    back = C.apply_affine(C.apply_affine(pts, a), C.invert_affine(a))
    assert torch.allclose(back, pts, atol=1e-5 * 600 if dtype == torch.float32 else 1e-9)
    assert torch.allclose(C.invert_affine(C.invert_affine(a)), a, rtol=1e-4, atol=1e-4)


def test_crop_affine_unrotated_box_corners():
    center = torch.tensor([[300.0, 200.0]], dtype=torch.float64)
    a = C.crop_affine(center, 1.0, 224)  # box side 200 px -> corners of [200, 400] x [100, 300]
    corners = torch.tensor([[[200.0, 100.0], [400.0, 300.0]]], dtype=torch.float64)
    assert torch.allclose(C.apply_affine(corners, a), torch.tensor([[[0.0, 0.0], [224.0, 224.0]]], dtype=torch.float64))


def test_crop_rotation_about_centre():
    center = torch.tensor([[300.0, 200.0]], dtype=torch.float64)
    a = C.crop_affine(center, 1.0, 200, torch.tensor([90.0], dtype=torch.float64))
    # scale factor 1: a point 50 px right of the centre goes 50 px *up* (counter-clockwise on screen)
    pts = torch.tensor([[[350.0, 200.0], [300.0, 150.0]]], dtype=torch.float64)
    out = C.apply_affine(pts, a)
    assert torch.allclose(out, torch.tensor([[[100.0, 50.0], [50.0, 100.0]]], dtype=torch.float64), atol=1e-9)
    # distances to the centre are preserved by the rotation
    a0 = C.crop_affine(center, 1.0, 200)
    d_rot = (C.apply_affine(pts, a) - 100).norm(dim=-1)
    d_0 = (C.apply_affine(pts, a0) - 100).norm(dim=-1)
    assert torch.allclose(d_rot, d_0)


def test_crop_rotation_3d_matches_2d_rotation():
    rot = torch.tensor([25.0, -90.0, 170.0], dtype=torch.float64)
    r3 = C.crop_rotation_3d(rot)
    assert torch.allclose(torch.linalg.det(r3), torch.ones(3, dtype=torch.float64))
    pts = torch.randn(3, 10, 3, dtype=torch.float64) * 0.5
    cam = torch.tensor([[0.9, 0.0, 0.0]], dtype=torch.float64).expand(3, 3)
    t = C.weak_perspective_to_translation(cam)
    ctr = torch.tensor([112.0, 112.0])
    # rotating camera-frame points about the optical axis == rotating the crop (about its centre)
    cam_pts = pts + t[:, None]
    rotated = C.perspective_projection(torch.einsum("bij,bnj->bni", r3, cam_pts),
                                       torch.zeros(3, 3, dtype=torch.float64), 5000.0, ctr)
    plain = C.perspective_projection(pts, t, 5000.0, ctr)
    a = C.crop_affine(torch.full((3, 2), 112.0, dtype=torch.float64), 224 / 200, 224, rot)
    assert torch.allclose(rotated, C.apply_affine(plain, a), atol=1e-9)


def test_affine_errors():
    with pytest.raises(ValueError, match=r"center must have shape \(B, 2\)"):
        C.crop_affine(torch.zeros(2), torch.ones(1), 224)
    with pytest.raises(ValueError, match="scale"):
        C.crop_affine(torch.zeros(2, 2), torch.ones(3), 224)
    with pytest.raises(ValueError, match=r"\(B, 2, 3\)"):
        C.apply_affine(torch.zeros(2, 5, 2), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match=r"\(B, 2, 3\)"):
        C.invert_affine(torch.zeros(2, 3, 3))


def test_apply_affine_keeps_extra_channels_and_gradients():
    a = C.crop_affine(torch.tensor([[10.0, 20.0]]), torch.tensor([0.5]), 64, torch.tensor([30.0]))
    kp = torch.tensor([[[10.0, 20.0, 0.3]]], requires_grad=True)
    out = C.apply_affine(kp, a)
    assert out[0, 0, 2].item() == pytest.approx(0.3)
    assert torch.allclose(out[0, 0, :2], torch.tensor([32.0, 32.0]), atol=1e-5)
    out.sum().backward()
    assert torch.isfinite(kp.grad).all()
    assert math.isclose(kp.grad[0, 0, 2].item(), 1.0)


def test_estimate_translation_recovers_a_known_translation():
    from body.camera import estimate_translation, perspective_projection
    g = torch.Generator().manual_seed(0)
    points = torch.randn(4, 24, 3, generator=g, dtype=torch.float64) * 0.4
    t_true = torch.tensor([[0.1, -0.2, 5.0], [0.0, 0.3, 8.0], [-0.4, 0.1, 3.0], [0.2, 0.2, 12.0]], dtype=torch.float64)
    focal = torch.tensor([[1000.0, 1000.0], [1500.0, 1480.0], [5000.0, 5000.0], [800.0, 800.0]], dtype=torch.float64)
    centre = torch.tensor([[320.0, 240.0], [500.0, 500.0], [112.0, 112.0], [0.0, 10.0]], dtype=torch.float64)
    kp = perspective_projection(points, t_true, focal, centre)
    weights = torch.ones(4, 24, dtype=torch.float64)
    weights[:, :5] = 0.0
    kp[:, :5] += 100.0  # outliers with zero weight do not matter
    t = estimate_translation(points, kp, focal, centre, weights)
    assert torch.allclose(t, t_true, atol=1e-6)
