"""Acceptance: every synthetic sample's 3D ground truth projects onto its 2D keypoints within 1 px, also
after augmentation (rotation, scale, flip), and flipping twice restores the network input."""
from __future__ import annotations

import numpy as np
import torch

from body.camera import normalized_to_pixels
from datamodules.augment import AugmentConfig, AugmentParams, crop_to_input, flip_input, prepare_sample, sample_augment_params

RES = 224


def reprojection_error(item: dict) -> np.ndarray:
    """Pixel distance between projected 3D joints and the labelled 2D keypoints (SPIN-24 part)."""
    j = item["joints_3d"].double()
    proj = j[:, :2] / j[:, 2:3] * item["focal_length"].double() + item["principal_point"].double()
    kp = normalized_to_pixels(item["keypoints_2d"][None, 25:, :2].double(), RES)[0]
    labelled = (item["keypoints_2d"][25:, 2] > 0) & (j[:, 3] > 0)
    return (proj - kp).norm(dim=1)[labelled].numpy()


def test_projection_within_one_pixel_before_and_after_augmentation(tiny_samples):
    rng = np.random.default_rng(0)
    forced = [AugmentParams(), AugmentParams(rotation_deg=-48.0, scale=0.8, flip=True),
              AugmentParams(rotation_deg=30.0, scale=1.2)]
    checked = 0
    for (split, name), samples in tiny_samples.items():
        for sample in samples:
            if not sample.has_3d:
                continue
            for params in forced + [sample_augment_params(rng, AugmentConfig()) for _ in range(3)]:
                item = prepare_sample(sample, params, RES) if split == "train" or not params.flip else None
                if item is None:  # evaluation samples carry vertices, which flipping refuses
                    continue
                assert bool(item["has_camera"]), (name, sample.key)
                err = reprojection_error(item)
                assert len(err) and err.max() < 1.0, (split, name, sample.key, params, err.max())
                checked += 1
    assert checked >= 30


def test_flipping_twice_restores_every_training_source(tiny_samples):
    for (split, name), samples in tiny_samples.items():
        if split != "train":
            continue
        item = crop_to_input(samples[0], 17.0, 1.1, RES)
        again = flip_input(flip_input(item, RES), RES)
        for key, value in item.items():
            if not isinstance(value, torch.Tensor):  # image_id, mask_original (None): untouched by flips
                assert again[key] is value, (name, key)
                continue
            assert torch.equal(again[key], value) if value.dtype == torch.uint8 else torch.allclose(again[key], value), (name, key)
