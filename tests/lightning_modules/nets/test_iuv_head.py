"""PyMAF's auxiliary IUV head and its losses against a reimplementation of PyMAF's ``body_uv_losses``.

The reference below follows the official text (``core/trainer.py`` ``body_uv_losses`` on the maps of
``utils/iuvmap.py`` ``iuv_img2map``): one-hot index maps with background channel 0, U / V maps = one-hot x
U / V, coarse maps = sums of one-hots over ``Index2mask``, the batch size taken before the valid samples are
selected, smooth L1 sums over ``Imap > 0`` divided by it, cross entropies as means.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.nets.iuv_head import IUVHead, iuv_losses

# PyMAF's Index2mask (utils/iuvmap.py), written out here.
INDEX2MASK = [[0], [1, 2], [3], [4], [5], [6], [7, 9], [8, 10], [11, 13], [12, 14], [15, 17], [16, 18], [19, 21],
              [20, 22], [23, 24]]
COARSE = torch.tensor([next(k for k, g in enumerate(INDEX2MASK) if p in g) for p in range(25)])


def official_maps(gt: torch.Tensor):
    """``iuv_img2map`` of an IUV image: (Umap, Vmap, Imap, Annmap), (B, 25 | 25 | 25 | 15, H, W)."""
    part = gt[:, 0].round()
    imap = torch.stack([(part == i).float() for i in range(25)], 1)
    umap, vmap = imap * gt[:, 1:2], imap * gt[:, 2:3]
    ann = torch.stack([sum(imap[:, i] for i in group) for group in INDEX2MASK], 1)
    return umap, vmap, imap, ann


def official_body_uv_losses(u_pred, v_pred, index_pred, ann_pred, maps, has_iuv, uv_weight=1.0):
    """PyMAF's ``body_uv_losses`` (without its POINT_REGRESSION_WEIGHTS factor unless given)."""
    batch_size = index_pred.size(0)
    umap, vmap, imap, annmap = maps
    if has_iuv is not None:
        if torch.sum(has_iuv.float()) > 0:
            u_pred = u_pred[has_iuv] if u_pred is not None else u_pred
            v_pred = v_pred[has_iuv] if v_pred is not None else v_pred
            index_pred, ann_pred = index_pred[has_iuv], ann_pred[has_iuv]
            umap, vmap, imap, annmap = umap[has_iuv], vmap[has_iuv], imap[has_iuv], annmap[has_iuv]
        else:
            return (torch.zeros(1),) * 4
    itarget = torch.argmax(imap, dim=1).view(-1)
    loss_index = F.cross_entropy(index_pred.permute(0, 2, 3, 1).reshape(-1, imap.size(1)), itarget)
    if u_pred is not None:
        loss_u = F.smooth_l1_loss(u_pred[imap > 0], umap[imap > 0], reduction="sum") / batch_size * uv_weight
        loss_v = F.smooth_l1_loss(v_pred[imap > 0], vmap[imap > 0], reduction="sum") / batch_size * uv_weight
    else:
        loss_u = loss_v = None
    anntarget = torch.argmax(annmap, dim=1).view(-1)
    loss_ann = F.cross_entropy(ann_pred.permute(0, 2, 3, 1).reshape(-1, annmap.size(1)), anntarget)
    return loss_u, loss_v, loss_index, loss_ann


def _gt(batch=3, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, 25, (batch, size, size), generator=g)
    index[:, :2] = 0                                         # a background band
    uv = torch.rand(batch, 2, size, size, generator=g) * (index > 0)[:, None]
    return torch.cat([index[:, None].float(), uv], 1)


def _pred(batch=3, size=6, seed=1, with_uv=True):
    g = torch.Generator().manual_seed(seed)
    out = {"index": torch.randn(batch, 25, size, size, generator=g),
           "coarse": torch.randn(batch, 15, size, size, generator=g)}
    if with_uv:
        out["u"] = torch.randn(batch, 25, size, size, generator=g)
        out["v"] = torch.randn(batch, 25, size, size, generator=g)
    return out


def test_head_channels_are_pymafs():
    x = torch.randn(2, 16, 56, 56)
    head = IUVHead(16)
    out = head(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "index": (2, 25, 56, 56), "coarse": (2, 15, 56, 56), "u": (2, 25, 56, 56), "v": (2, 25, 56, 56)}
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in convs)
    assert set(IUVHead(16, with_uv=False)(x)) == {"index", "coarse"}


@pytest.mark.parametrize("valid", [None, [True, False, True], [False, False, True]])
def test_losses_equal_pymafs_body_uv_losses(valid):
    gt, pred = _gt(), _pred()
    has_iuv = None if valid is None else torch.tensor(valid)
    ours = iuv_losses(pred, gt, has_iuv, COARSE)
    ref_u, ref_v, ref_index, ref_ann = official_body_uv_losses(
        pred["u"], pred["v"], pred["index"], pred["coarse"], official_maps(gt), has_iuv)
    assert set(ours) == {"index", "coarse", "u", "v"}
    for key, ref in (("index", ref_index), ("coarse", ref_ann), ("u", ref_u), ("v", ref_v)):
        torch.testing.assert_close(ours[key], ref.reshape(()), rtol=1e-6, atol=1e-7)


def test_uv_sums_are_divided_by_the_full_batch_and_read_channel_0_on_background():
    gt, pred = _gt(), _pred()
    valid = torch.tensor([False, True, False])
    part = gt[1, 0].long()
    d_u = pred["u"][1].gather(0, part[None])[0] - torch.where(part > 0, gt[1, 1], 0.0)
    expected = F.smooth_l1_loss(d_u, torch.zeros_like(d_u), reduction="sum") / 3     # B = 3, not 1
    torch.testing.assert_close(iuv_losses(pred, gt, valid, COARSE)["u"], expected)
    # Background pixels pull channel 0 to 0; the other channels there do not count.
    changed = {k: v.clone() for k, v in pred.items()}
    changed["u"][:, 1:, :2] += 5.0
    assert torch.equal(iuv_losses(changed, gt, valid, COARSE)["u"], iuv_losses(pred, gt, valid, COARSE)["u"])
    changed["u"][:, 0, :2] += 5.0
    assert iuv_losses(changed, gt, valid, COARSE)["u"] > iuv_losses(pred, gt, valid, COARSE)["u"]


def test_no_valid_sample_gives_zeros_in_the_graph():
    gt = _gt()
    pred = {k: v.requires_grad_() for k, v in _pred().items()}
    none = iuv_losses(pred, gt, torch.tensor([False, False, False]), COARSE)
    assert set(none) == {"index", "coarse", "u", "v"} and all(v.item() == 0 for v in none.values())
    sum(none.values()).backward()
    assert all(v.grad is not None for v in pred.values())


def test_part_segmentation_only_and_argument_checks():
    gt, pred = _gt(), _pred(with_uv=False)
    losses = iuv_losses(pred, gt, None, COARSE)
    assert set(losses) == {"index", "coarse"}
    _, _, ref_index, ref_ann = official_body_uv_losses(None, None, pred["index"], pred["coarse"],
                                                       official_maps(gt), None)
    torch.testing.assert_close(losses["index"], ref_index)
    torch.testing.assert_close(losses["coarse"], ref_ann)
    with pytest.raises(ValueError, match="coarse_of_part"):
        iuv_losses(pred, gt)
    with pytest.raises(ValueError):
        iuv_losses(_pred(size=6), _gt(size=8), None, COARSE)


def test_losses_on_a_rendered_ground_truth_at_the_heads_resolution():
    """The target is ``body.render.face_iuv_map`` of the body's chart-split IUV mesh at 56 x 56."""
    from body.camera import FOCAL_LENGTH, IMG_RES, weak_perspective_to_translation
    from body.model import BodyModel
    from body.raster import rasterize
    from body.render import face_iuv_map, screen_coordinates
    from body.rotations import rot6d_to_rotmat

    model = BodyModel.from_config("open")
    rot = rot6d_to_rotmat(model.mean_pose.view(1, 24, 6))
    with torch.no_grad():
        verts = model(model.mean_shape[None], rot[:, 1:], rot[:, :1]).vertices
    size = 56
    cam = weak_perspective_to_translation(model.mean_cam[None])
    screen = screen_coordinates((verts + cam[:, None])[:, model.iuv_vertex_map], size, FOCAL_LENGTH * size / IMG_RES)
    gt = face_iuv_map(rasterize(screen, model.iuv_faces, (size, size)), model.iuv_face_iuv)
    assert (gt[:, 0] > 0).sum() > 200                                   # the body covers the map
    torch.manual_seed(0)
    pred = IUVHead(16)(torch.randn(1, 16, size, size))
    losses = iuv_losses(pred, gt, None, model.iuv_coarse_of_part)
    assert set(losses) == {"index", "coarse", "u", "v"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
