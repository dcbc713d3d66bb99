"""Building blocks of the synthetic pictures: crop camera, SPIN boxes, clothing regions, backgrounds."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from body.joints import SMPL_JOINT_NAMES
from datamodules.synthetic.appearance import sample_appearance
from datamodules.synthetic.backgrounds import KINDS, background
from datamodules.synthetic.compose import compose, gaussian_blur
from datamodules.synthetic.placement import (crop_affine_for, crop_camera, image_to_crop, in_crop, project,
                                             spin_box)
from datamodules.synthetic.texture import albedo


def test_crop_camera_is_the_original_camera_through_the_crop():
    rng = np.random.default_rng(0)
    points = rng.normal(0, 0.5, (50, 3)) + [0.3, -0.2, 6.0]
    focal, principal = np.array([1100.0, 1100.0]), np.array([640.0, 360.0])
    a = crop_affine_for(np.array([700.0, 300.0]), 1.7)
    f, c = crop_camera(focal, principal, a)
    np.testing.assert_allclose(project(points, f, c), image_to_crop(project(points, focal, principal), a), atol=1e-9)


def test_spin_boxes_centre_the_person_unless_truncated():
    rng = np.random.default_rng(1)
    kp = rng.uniform([400, 200], [520, 560], (49, 2))
    for truncate in (False, True):
        for _ in range(50):
            center, scale = spin_box(kp, rng, truncate)
            crop = image_to_crop(kp, crop_affine_for(center, scale))
            side = (kp.max(0) - kp.min(0)).max()
            assert 1.1 <= 200 * scale / side <= 1.3
            box_lo, box_hi = 160 - 160 / 1.5, 160 + 160 / 1.5  # the SPIN box (network input) in the crop
            in_box = ((crop >= box_lo) & (crop < box_hi)).all(1)
            if truncate:  # the box cuts the person; the crop's context still holds the rest
                assert not in_box.all() and in_box.mean() > 0.6 and in_crop(crop).all()
            else:
                assert in_crop(crop).all()


def test_clothing_regions_follow_the_parts(scene_generator):
    coords = scene_generator.coords
    part = scene_generator.model.vertex_part24
    look = sample_appearance(np.random.default_rng(3))
    red, blue, green = np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, 1.0, 0])
    plain = dict(pattern="plain", colour_b=np.zeros(3))
    look = dataclasses.replace(
        look, top=dataclasses.replace(look.top, colour_a=red, **plain), sleeve=0.3, waist=0.1, neckline=0.9,
        bottom=dataclasses.replace(look.bottom, colour_a=blue, **plain), hem=1.0, shoes=green, shoe_top=0.92,
        hair_style="bald", skin=np.array([0.8, 0.6, 0.5]))
    colour = albedo(part, coords.attrs, coords, look).numpy()  # the vertices as pixels

    def share(joint: str, rgb: np.ndarray) -> float:
        m = (part == SMPL_JOINT_NAMES.index(joint)).numpy()
        return float((np.abs(colour[m] - rgb).max(1) < 0.1).mean())

    assert share("spine2", red) > 0.95 and share("spine1", red) > 0.95
    assert share("left_knee", blue) > 0.8 and share("right_hip", blue) > 0.95
    assert share("left_foot", green) > 0.95 and share("right_ankle", green) > 0.95
    for skin_part in ("left_wrist", "right_hand", "left_elbow", "head"):  # hands, forearms, head
        assert share(skin_part, look.skin) > 0.6, skin_part
    upper_arm = share("left_shoulder", red)
    assert 0.2 < upper_arm < 0.9  # a T-shirt sleeve covers the upper part of the upper arm


@pytest.mark.parametrize("kind", KINDS)
def test_backgrounds_are_deterministic_and_textured(kind):
    a = background(np.random.default_rng(4), kind, (96, 128), horizon=60.0)
    b = background(np.random.default_rng(4), kind, (96, 128), horizon=60.0)
    c = background(np.random.default_rng(5), kind, (96, 128), horizon=60.0)
    assert a.shape == (3, 96, 128) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.01


def test_compose_blurs_and_quantises():
    bg = torch.zeros(3, 32, 32)
    rgb = torch.ones(3, 32, 32)
    alpha = torch.zeros(1, 32, 32)
    alpha[:, 8:24, 8:24] = 1
    img = compose(bg, rgb, alpha, 0.0, 0.0, np.random.default_rng(0))
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
    assert img[16, 16].tolist() == [255] * 3 and img[0, 0].tolist() == [0] * 3
    assert 0 < img[16, 8, 0] < 255  # the silhouette edge is anti-aliased by the minimum blur
    x = torch.rand(3, 20, 20)
    assert torch.allclose(gaussian_blur(x, 1.0).mean(), x.mean(), atol=0.02)
