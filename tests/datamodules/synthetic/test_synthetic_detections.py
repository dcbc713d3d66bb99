"""BiGraph's simulated detections follow the documented noise model."""
from __future__ import annotations

import math

import numpy as np

from body.joints import BIGRAPH12_JOINT_NAMES, SPIN49_TO_BIGRAPH12
from datamodules.synthetic import detections
from datamodules.synthetic.detections import SYMMETRIC_PAIRS, detect_joints

BOX = 320 / 1.5


def draws(n: int, seed: int, **kwargs):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(50, 270, (n, 12, 2))
    out = [detect_joints(g, BOX, rng, **kwargs) for g in gt]
    return gt, np.stack([o[0] for o in out]), np.array([o[1] for o in out])


def test_symmetric_pairs_are_left_right_twins():
    assert len(SYMMETRIC_PAIRS) == 6
    for i, j in SYMMETRIC_PAIRS:
        assert BIGRAPH12_JOINT_NAMES[i].replace("left_", "right_") == BIGRAPH12_JOINT_NAMES[j]


def test_gaussian_error_has_the_configured_median_and_scores_fall_with_it():
    gt, det, swapped = draws(3000, 0, outlier_prob=0.0, swap_prob=0.0)
    err = np.linalg.norm(det[..., :2] - gt, axis=-1).ravel()
    sigma = detections.NOISE_SIGMA * BOX
    assert abs(np.median(err) / (sigma * math.sqrt(2 * math.log(2))) - 1) < 0.03
    score = det[..., 2].ravel()
    assert (score > 0).all() and (score <= 1).all() and not swapped.any()
    low, high = err < np.quantile(err, 0.2), err > np.quantile(err, 0.8)
    assert score[low].mean() > score[high].mean() + 0.2
    assert np.corrcoef(err, score)[0, 1] < -0.8


def test_swaps_exchange_one_symmetric_pair_at_the_configured_rate():
    gt, det, swapped = draws(20000, 1, sigma=0.0, outlier_prob=0.0)  # no noise: swaps stand out
    assert abs(swapped.mean() - detections.SWAP_PROB) < 0.005
    for k in range(len(gt)):
        moved = [i for i in range(12) if not np.array_equal(det[k, i, :2], gt[k, i])]
        if not swapped[k]:
            assert moved == []
        else:
            assert len(moved) == 2 and tuple(moved) in SYMMETRIC_PAIRS
            i, j = moved
            assert np.array_equal(det[k, i, :2], gt[k, j]) and np.array_equal(det[k, j, :2], gt[k, i])


def test_outliers_happen_at_the_configured_rate():
    gt, det, _ = draws(20000, 2, swap_prob=0.0)
    err = np.linalg.norm(det[..., :2] - gt, axis=-1)
    far = err > 6 * detections.NOISE_SIGMA * BOX  # beyond 6 sigma of the normal noise: only outliers
    expected = detections.OUTLIER_PROB * math.exp(-0.5 * (6 * detections.NOISE_SIGMA / detections.OUTLIER_SIGMA) ** 2)
    assert abs(far.mean() - expected) < 0.004


def test_stored_detections_are_noisy_ground_truth(tiny_samples):
    errors = []
    for (split, _), group in tiny_samples.items():
        for s in group:
            gt = s.keypoints_2d[SPIN49_TO_BIGRAPH12]
            ok = gt[:, 2] > 0
            errors.extend(np.linalg.norm(s.bigraph_joints_2d[ok, :2] - gt[ok, :2], axis=1))
    sigma = detections.NOISE_SIGMA * BOX
    assert len(errors) > 300
    assert 0.7 < np.median(errors) / (sigma * math.sqrt(2 * math.log(2))) < 1.4
