"""PyMAF's auxiliary IUV head and its losses: U and V count only at foreground pixels, on the ground-truth part."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.nets.iuv_head import IUVHead, iuv_losses


def _smooth_l1(d: float) -> float:
    d = abs(d)
    return 0.5 * d * d if d < 1 else d - 0.5


def _gt(batch=2, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, 25, (batch, size, size), generator=g)
    index[:, :2] = 0                                         # a background band
    uv = torch.rand(batch, 2, size, size, generator=g) * (index > 0)[:, None]
    return torch.cat([index[:, None].float(), uv], 1)


def _pred(batch=2, size=6, seed=1, with_uv=True):
    g = torch.Generator().manual_seed(seed)
    out = {"index": torch.randn(batch, 25, size, size, generator=g)}
    if with_uv:
        out["u"] = torch.randn(batch, 24, size, size, generator=g)
        out["v"] = torch.randn(batch, 24, size, size, generator=g)
    return out


def test_head_channels():
    x = torch.randn(2, 16, 56, 56)
    out = IUVHead(16)(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "index": (2, 25, 56, 56), "u": (2, 24, 56, 56), "v": (2, 24, 56, 56)}
    assert set(IUVHead(16, with_uv=False)(x)) == {"index"}


def test_losses_match_a_per_pixel_loop():
    gt, pred = _gt(), _pred()
    losses = iuv_losses(pred, gt)
    assert torch.allclose(losses["index"], F.cross_entropy(pred["index"], gt[:, 0].long()))
    for key, ch in (("u", 1), ("v", 2)):
        total = 0.0
        for b in range(2):
            for y in range(6):
                for x in range(6):
                    part = int(gt[b, 0, y, x])
                    if part > 0:
                        total += _smooth_l1(float(pred[key][b, part - 1, y, x] - gt[b, ch, y, x]))
        assert losses[key].item() == pytest.approx(total / 2, rel=1e-5)


def test_uv_loss_ignores_background_pixels_and_other_parts_channels():
    gt, pred = _gt(), _pred()
    base = iuv_losses(pred, gt)
    part = gt[:, 0].long()
    changed = {k: v.clone() for k, v in pred.items()}
    changed["u"][:, :, :2] += 5.0                            # every channel at background pixels
    changed["v"][:, :, :2] -= 3.0
    other = torch.ones_like(changed["u"], dtype=torch.bool)  # foreground pixels, channels of other parts
    other.scatter_(1, (part - 1).clamp(min=0)[:, None], False)
    changed["u"][other & (part > 0)[:, None]] += 7.0
    after = iuv_losses(changed, gt)
    assert torch.equal(after["u"], base["u"]) and torch.equal(after["v"], base["v"])
    # ... while the ground-truth part's channel at a foreground pixel counts.
    b, y, x = 0, 4, 3
    assert part[b, y, x] > 0
    changed["u"][b, part[b, y, x] - 1, y, x] += 1.0
    assert not torch.equal(iuv_losses(changed, gt)["u"], base["u"])
    # The index loss reads background pixels too.
    changed["index"][:, :, :2] += torch.randn_like(changed["index"][:, :, :2])
    assert not torch.equal(iuv_losses(changed, gt)["index"], base["index"])


def test_valid_mask_and_no_valid_sample():
    gt, pred = _gt(), _pred()
    valid = torch.tensor([False, True])
    masked = iuv_losses(pred, gt, valid)
    single = iuv_losses({k: v[1:] for k, v in pred.items()}, gt[1:])
    for k in ("index", "u", "v"):
        assert torch.allclose(masked[k], single[k])
    pred = {k: v.requires_grad_() for k, v in pred.items()}
    none = iuv_losses(pred, gt, torch.tensor([False, False]))
    assert all(v.item() == 0 for v in none.values())
    sum(none.values()).backward()
    assert all(v.grad is not None for v in pred.values())


def test_part_segmentation_only_and_shape_checks():
    gt = _gt()
    losses = iuv_losses(_pred(with_uv=False), gt)
    assert set(losses) == {"index"}
    with pytest.raises(ValueError):
        iuv_losses(_pred(size=6), _gt(size=8))


def test_losses_on_a_rendered_ground_truth_at_the_heads_resolution():
    """The target format is ``body.render.iuv_map``'s, rendered at 56 x 56 through the weak-perspective camera."""
    from body.camera import FOCAL_LENGTH, IMG_RES, weak_perspective_to_translation
    from body.model import BodyModel
    from body.raster import rasterize
    from body.render import iuv_map, screen_coordinates
    from body.rotations import rot6d_to_rotmat

    model = BodyModel.from_config("open")
    rot = rot6d_to_rotmat(model.mean_pose.view(1, 24, 6))
    with torch.no_grad():
        verts = model(model.mean_shape[None], rot[:, 1:], rot[:, :1]).vertices
    size = 56
    cam = weak_perspective_to_translation(model.mean_cam[None])
    frags = rasterize(screen_coordinates(verts + cam[:, None], size, FOCAL_LENGTH * size / IMG_RES),
                      model.faces, (size, size))
    gt = iuv_map(frags, model.faces, model.vertex_iuv)
    assert (gt[:, 0] > 0).sum() > 200                                   # the body covers the map
    torch.manual_seed(0)
    pred = IUVHead(16)(torch.randn(1, 16, size, size))
    losses = iuv_losses(pred, gt)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
