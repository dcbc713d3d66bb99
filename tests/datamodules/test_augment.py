"""Augmentation: exact geometry (projection lands on the keypoints), flips, image alignment, statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from body.camera import normalized_to_pixels
from body.joints import SPIN49_FLIP_PERM
from datamodules.augment import (AugmentConfig, AugmentParams, crop_to_input, flip_input, gain_levels,
                                 prepare_sample, sample_augment_params)
from datamodules.warp import apply_affine_np

from .conftest import camera_sample, project

RES = 224


def input_pixels(item: dict) -> np.ndarray:
    return normalized_to_pixels(item["keypoints_2d"][None, :, :2].double(), RES)[0].numpy()


def projected(item: dict) -> np.ndarray:
    return project(item["joints_3d"][:, :3].double().numpy(), item["focal_length"].double().numpy(),
                   item["principal_point"].double().numpy())


PARAMS = [AugmentParams(), AugmentParams(rotation_deg=37.0, scale=0.8),
          AugmentParams(rotation_deg=-55.0, scale=1.25, flip=True), AugmentParams(flip=True)]


@pytest.mark.parametrize("params", PARAMS, ids=["identity", "rot-scale", "rot-scale-flip", "flip"])
def test_projection_lands_on_keypoints_after_augmentation(body_model, params):
    for seed in range(4):
        sample = camera_sample(body_model, seed)
        item = prepare_sample(sample, params, RES)
        assert bool(item["has_camera"])
        err = np.linalg.norm(projected(item) - input_pixels(item)[25:], axis=1)
        assert err.max() < 1e-2, err.max()


def test_pose_follows_the_joints(body_model):
    """The augmented pose and betas through the body model reproduce the augmented joints up to a shift."""
    sample = camera_sample(body_model, 7)
    item = prepare_sample(sample, AugmentParams(rotation_deg=25.0, scale=0.9, flip=True), RES)
    with torch.no_grad():
        out = body_model(betas=item["betas"][None], body_pose=item["pose"][None, 3:],
                         global_orient=item["pose"][None, :3])
    joints = out.keypoints49[0, 25:].double()
    target = item["joints_3d"][:, :3].double()
    shift = (target - joints).mean(0)
    assert (joints + shift - target).norm(dim=1).max() < 2e-3


def test_flip_twice_restores_the_sample(body_model):
    sample = camera_sample(body_model, 3, mask=True)
    item = crop_to_input(sample, 20.0, 1.1, RES)
    again = flip_input(flip_input(item, RES), RES)
    for key, value in item.items():
        if isinstance(value, torch.Tensor):
            assert torch.allclose(again[key].double(), value.double(), atol=1e-6), key
        else:  # image_id (str), mask_original (None here): original-image data, untouched
            assert again[key] == value, key
    once = flip_input(item, RES)
    assert not torch.equal(once["img"], item["img"])
    assert torch.equal(once["img"], item["img"].flip(-1))


def test_flip_mirrors_keypoints_and_swaps_sides(body_model):
    sample = camera_sample(body_model, 5)
    item = crop_to_input(sample, 0.0, 1.0, RES)
    flipped = flip_input(item, RES)
    kp, fk = item["keypoints_2d"], flipped["keypoints_2d"]
    for i, j in enumerate(SPIN49_FLIP_PERM):
        assert torch.allclose(fk[i, 0], -kp[j, 0]) and torch.allclose(fk[i, 1:], kp[j, 1:])
    # right wrist (SPIN-24 slot 6) becomes the left wrist (slot 11) at the mirrored position
    assert torch.allclose(fk[25 + 11, :2], kp[25 + 6, :2] * torch.tensor([-1.0, 1.0]))


def test_flip_swaps_part_labels(body_model):
    sample = camera_sample(body_model, 3, mask=True)
    item = crop_to_input(sample, 0.0, 1.0, RES)
    flipped = flip_input(item, RES)
    m, fm = item["mask"].numpy(), flipped["mask"].numpy()
    mirrored = m[:, ::-1]
    swap = {0: 0, 3: 4, 4: 3, 255: 255}
    assert np.array_equal(fm, np.vectorize(swap.get)(mirrored))
    assert (fm == 3).any() and (fm == 4).any()
    # the block left of the other on screen: in the original 3 is left of 4, after flipping 3 stays left
    ys3, xs3 = np.nonzero(fm == 3)
    ys4, xs4 = np.nonzero(fm == 4)
    assert xs3.mean() < xs4.mean()


@pytest.mark.parametrize("params", PARAMS[1:], ids=["rot-scale", "rot-scale-flip", "flip"])
def test_image_content_moves_with_the_keypoints(body_model, params):
    """The bright dot drawn under the right wrist ends up under the (possibly renamed) wrist keypoint."""
    sample = camera_sample(body_model, 11)
    item = prepare_sample(sample, params, RES)
    img = item["img"].double().sum(0).numpy()
    ys, xs = np.nonzero(img > 300)
    w = img[ys, xs]
    dot = np.array([(xs + 0.5) @ w / w.sum(), (ys + 0.5) @ w / w.sum()])
    wrist = 25 + (11 if params.flip else 6)
    assert np.linalg.norm(dot - input_pixels(item)[wrist]) < 0.75


def test_input_to_image_maps_back_to_original_pixels(body_model):
    sample = camera_sample(body_model, 2)
    for params in PARAMS:
        item = prepare_sample(sample, params, RES)
        original = apply_affine_np(sample.keypoints_2d[25:, :2].astype(np.float64), sample.crop_to_image)
        back = apply_affine_np(input_pixels(item)[25:], item["input_to_image"].double().numpy())
        perm = [i - 25 for i in SPIN49_FLIP_PERM[25:]] if params.flip else list(range(24))
        assert np.abs(back - original[perm]).max() < 1e-2


def test_gain_scales_channels_and_clips(body_model):
    levels = gain_levels((1.4, 0.6, 1.0))
    assert levels[0, [0, 100, 200]].tolist() == [0, 140, 255]
    assert levels[1, [0, 100, 200]].tolist() == [0, 60, 120]
    assert levels[2].tolist() == list(range(256))
    sample = camera_sample(body_model, 4)
    sample.image[:] = np.random.default_rng(0).integers(0, 256, sample.image.shape, dtype=np.uint8)
    plain = prepare_sample(sample, AugmentParams(rotation_deg=12.0, flip=True), RES)["img"].numpy()
    gained = prepare_sample(sample, AugmentParams(rotation_deg=12.0, flip=True, gain=(1.4, 0.6, 1.0)), RES)["img"]
    expected = np.stack([levels[c][plain[c]] for c in range(3)])
    assert np.array_equal(gained.numpy(), expected)


def test_augment_statistics_follow_spin():
    rng = np.random.default_rng(0)
    cfg = AugmentConfig()
    draws = [sample_augment_params(rng, cfg) for _ in range(20000)]
    rot = np.array([d.rotation_deg for d in draws])
    scale = np.array([d.scale for d in draws])
    gain = np.array([d.gain for d in draws])
    assert abs((rot == 0).mean() - 0.6) < 0.02 and np.abs(rot).max() <= 60.0
    assert abs(rot[rot != 0].std() - 30.0) < 2.0
    assert scale.min() >= 0.75 and scale.max() <= 1.25 and abs(scale.mean() - 1.0) < 0.01
    assert gain.min() >= 0.6 and gain.max() <= 1.4
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < 0.02
    assert sample_augment_params(rng, AugmentConfig(enabled=False)) == AugmentParams()


def test_missing_mask_is_ignored_everywhere(body_model):
    item = prepare_sample(camera_sample(body_model, 1), AugmentParams(rotation_deg=10.0), RES)
    assert not bool(item["has_mask"]) and (item["mask"] == 255).all()


def test_pixels_outside_the_stored_crop_are_ignored_in_masks(body_model):
    item = prepare_sample(camera_sample(body_model, 3, mask=True), AugmentParams(rotation_deg=45.0, scale=1.25), RES)
    assert item["mask"][0, 0] == 255 and (item["mask"] != 255).any()


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
