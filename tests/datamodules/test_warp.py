"""Affine resampling: continuous pixel coordinates, the fast axis-aligned path, label masks."""
from __future__ import annotations

import numpy as np

from datamodules.warp import apply_affine_np, compose_affine, invert_affine_np, warp_image


def centroid(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img > 0)
    w = img[ys, xs].astype(np.float64)
    return np.array([(xs + 0.5) @ w / w.sum(), (ys + 0.5) @ w / w.sum()])


def test_a_point_moves_like_a_keypoint():
    """A bright pixel centred at (6.5, 3.5) lands at A (6.5, 3.5) for a rotation + scale + shift A."""
    img = np.zeros((20, 20), np.uint8)
    img[3, 6] = 255
    a, s = np.radians(20.0), 1.7
    fwd = np.array([[s * np.cos(a), -s * np.sin(a), 9.0], [s * np.sin(a), s * np.cos(a), 4.0]])
    out = warp_image(img, invert_affine_np(fwd), (40, 40), "bilinear")
    expected = apply_affine_np(np.array([[6.5, 3.5]]), fwd)[0]
    assert np.abs(centroid(out) - expected).max() < 0.05


def test_fast_axis_aligned_path_equals_the_general_transform():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)
    inside = np.array([[0.95, 0.0, 53.3], [0.0, 0.95, 40.1]])       # box inside: resize path
    fast = warp_image(img, inside, (224, 224)).astype(int)
    rot = np.array([[0.95, 1e-12, 53.3], [0.0, 0.95, 40.1]])         # tiny shear: general path
    slow = warp_image(img, rot, (224, 224)).astype(int)
    diff = np.abs(fast - slow)[1:-1, 1:-1]
    assert diff.max() <= 2 and diff.mean() < 0.6  # both round fixed-point bilinear weights


def test_outside_the_source_is_filled():
    img = np.full((10, 10, 3), 200, np.uint8)
    out = warp_image(img, np.array([[1.0, 0.0, -5.0], [0.0, 1.0, 0.0]]), (10, 10), fill=7)
    assert (out[:, :4] == 7).all() and (out[:, 6:] == 200).all()


def test_nearest_never_blends_labels():
    labels = np.zeros((16, 16), np.uint8)
    labels[:, 8:] = 5
    out = warp_image(labels, np.array([[0.37, 0.2, 1.0], [-0.1, 0.41, 2.0]]), (40, 40), "nearest", fill=255)
    assert set(np.unique(out)) <= {0, 5, 255}


def test_levels_apply_per_channel():
    img = np.full((4, 4, 3), 100, np.uint8)
    levels = np.stack([np.arange(256), 255 - np.arange(256), np.zeros(256)]).astype(np.uint8)
    out = warp_image(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (4, 4), levels=levels)
    assert (out[..., 0] == 100).all() and (out[..., 1] == 155).all() and (out[..., 2] == 0).all()


def test_affine_helpers_compose_and_invert():
    a = np.array([[1.2, 0.3, 5.0], [-0.2, 0.9, -3.0]])
    pts = np.array([[1.0, 2.0], [10.0, -4.0]])
    assert np.allclose(apply_affine_np(pts, compose_affine(invert_affine_np(a), a)), pts)
