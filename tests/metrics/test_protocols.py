"""Evaluation protocols in original-image pixels (metrics.protocols), each against an independent computation."""
from __future__ import annotations

import pytest
import torch

from body.camera import crop_affine, invert_affine, perspective_projection, pixels_to_normalized
from body.joints import J24_TO_COCO17
from metrics import SegmentationScores
from metrics.protocols import (IGNORE_LABEL, PROTOCOL_COLUMNS, coco_ground_truth_keypoints, foreground_of,
                               input_box_in_image, keypoints_in_image, lsp6_vertex_labels, lsp_targets,
                               protocol_of_set, vertices_in_image)
from runtime.errors import UserError

RES = 224


@pytest.fixture()
def gen():
    return torch.Generator().manual_seed(0)


def input_to_image_of(center, scale, rotation_deg=None):
    """The evaluation input's affine: inverse of the SPIN crop of (center, scale) at RES."""
    return invert_affine(crop_affine(center, scale, RES, rotation_deg))


def test_protocol_of_set_names_and_errors():
    assert protocol_of_set("3dpw") == "3dpw" and protocol_of_set("h36m_p1") == "h36m"
    assert protocol_of_set("H36M_p2") == "h36m" and protocol_of_set("lsp_test") == "lsp"
    assert protocol_of_set("anything", explicit="coco") == "coco"
    with pytest.raises(UserError, match="valid choices are 3dpw, h36m, up3d, lsp, coco"):
        protocol_of_set("x", explicit="mpii")
    with pytest.raises(UserError, match="pass protocol="):
        protocol_of_set("mpii_val")
    assert PROTOCOL_COLUMNS["3dpw"] == ("pve", "mpjpe", "pa_mpjpe")   # PyMAF Table 1's order


def test_j24_to_coco17_is_spin_pymaf_table():
    # SPIN's / PyMAF's constants.J24_TO_JCOCO, written out
    assert J24_TO_COCO17 == [19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0]


def test_keypoints_round_trip_through_the_crop(gen):
    """Original pixels -> crop pixels (SPIN crop) -> normalised -> back to original pixels."""
    center = torch.tensor([[320.0, 240.0], [100.5, 410.0]])
    scale = torch.tensor([1.7, 0.6])
    pts = torch.rand(2, 17, 2, generator=gen) * 500
    crop = crop_affine(center, scale, RES)
    norm = pixels_to_normalized(pts @ crop[:, :, :2].transpose(1, 2) + crop[:, None, :, 2], RES)
    back = keypoints_in_image(norm, input_to_image_of(center, scale), RES)
    assert torch.allclose(back, pts, atol=1e-3)


def test_input_box_is_the_spin_person_box():
    center = torch.tensor([[320.0, 240.0], [100.0, 50.0]])
    scale = torch.tensor([1.5, 0.5])
    box = input_box_in_image(input_to_image_of(center, scale), RES)
    side = 200.0 * scale
    expected = torch.stack([center[:, 0] - side / 2, center[:, 1] - side / 2, side, side], dim=1)
    assert torch.allclose(box, expected, atol=1e-3)


def test_vertices_in_image_equals_the_composed_pinhole_camera(gen):
    """Projecting with f = 5000 in the crop and mapping by the affine = one pinhole camera with focal
    5000 k and principal point k * 112 + offset (k = the affine's scale), computed directly."""
    verts = torch.randn(2, 50, 3, generator=gen) * 0.3
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.2, -0.2, 0.1]])
    center = torch.tensor([[300.0, 200.0], [640.0, 360.0]])
    scale = torch.tensor([2.0, 3.5])
    screen = vertices_in_image(verts, cam, input_to_image_of(center, scale), RES)
    k = 200.0 * scale / RES                                      # original px per input px
    tz = 2 * 5000.0 / (RES * cam[:, 0])
    t = torch.stack([cam[:, 1], cam[:, 2], tz], dim=1)
    offset = center - 100.0 * scale[:, None]                     # the input's top-left corner in the image
    principal = k[:, None] * (RES / 2) + offset
    expected = perspective_projection(verts, t, (5000.0 * k)[:, None].expand(2, 2), principal)
    assert torch.allclose(screen[..., :2], expected, atol=1e-3)
    assert torch.allclose(screen[..., 2], verts[..., 2] + tz[:, None], atol=1e-5)


def test_foreground_of_keeps_ignore():
    labels = torch.tensor([[0, 1, 6, IGNORE_LABEL]], dtype=torch.uint8)
    assert foreground_of(labels).tolist() == [[0, 1, 1, IGNORE_LABEL]]


def test_coco_ground_truth_encodes_unlabelled_as_zeros():
    center, scale = torch.tensor([[200.0, 200.0]]), torch.tensor([1.0])
    kp = torch.zeros(1, 17, 3)
    kp[0, :, :2] = torch.linspace(-0.8, 0.8, 17)[:, None]
    kp[0, :10, 2] = 1.0
    gt = coco_ground_truth_keypoints(kp, input_to_image_of(center, scale), RES)
    assert gt.dtype == torch.float64
    assert torch.all(gt[0, 10:] == 0) and torch.all(gt[0, :10, 2] == 2)
    # normalised -> input px -> original: x = 100 + (n + 1) * 112 * (200 / 224)
    expected = 100.0 + (kp[0, :10, 0].double() + 1) * 100.0
    assert torch.allclose(gt[0, :10, 0], expected, atol=1e-4)


def test_lsp6_map_puts_the_neck_in_the_torso():
    """UP's six regions (up_tools/model.py six_region_groups: the neck with the upper body): SMPL part -> LSP-6,
    written out by hand (1 head, 2 torso, 3/4 left/right arm, 5/6 left/right leg)."""
    by_hand = [2, 5, 6, 2, 5, 6, 2, 5, 6, 2, 5, 6, 2, 2, 2, 1, 3, 4, 3, 4, 3, 4, 3, 4]
    assert lsp6_vertex_labels(torch.arange(24)).tolist() == by_hand
    assert lsp6_vertex_labels(torch.tensor([12, 15])).tolist() == [2, 1]   # neck torso, head head


def test_lsp_scores_silhouette_for_foreground_and_parts_for_parts_known_answer():
    """SPIN's LSP evaluation on a 4 x 5 example worked out by hand: foreground/background against the silhouette
    (every pixel counts; two person pixels the part map leaves unlabelled are missed), parts against the part
    labels (F1 over labelled pixels, accuracy with 255 read as background)."""
    pred = torch.tensor([[0, 1, 1, 2, 0], [0, 2, 2, 2, 0], [3, 2, 2, 4, 0], [0, 5, 0, 6, 0]])
    parts = torch.tensor([[0, 1, 1, 1, 0], [0, 2, 2, 2, 255], [3, 2, 2, 2, 255], [0, 5, 0, 6, 0]])
    silhouette = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]])
    fb_gt, parts_gt = lsp_targets(parts, silhouette)
    fb, seg = SegmentationScores(2), SegmentationScores(7)
    fb.update((pred > 0).long()[None], fb_gt[None])
    seg.update(pred[None], parts_gt[None])
    f, p = fb.compute(), seg.compute()
    assert float(f["accuracy"]) == pytest.approx(18 / 20)
    assert float(f["mean_f1"]) == pytest.approx((24 / 26 + 12 / 14) / 2)
    assert float(p["accuracy_ignored_as_background"]) == pytest.approx(18 / 20)
    assert float(p["accuracy"]) == pytest.approx(16 / 18)
    assert float(p["mean_f1"]) == pytest.approx((1 + 0.8 + 10 / 12 + 1 + 0 + 1 + 1) / 7)
    # Without a silhouette the parts' foreground stands in (255 ignored): here it would hide the two misses.
    fb_parts, _ = lsp_targets(parts, None)
    only = SegmentationScores(2)
    only.update((pred > 0).long()[None], fb_parts[None])
    assert float(only.compute()["accuracy"]) == pytest.approx(1.0)
    assert lsp_targets(None, None) == (None, None)
