"""BiGraph's "detected" 2D joints: the 12 ground-truth joints plus a detector-like error model.

BiGraph feeds its skeleton graph with 2D joints from an off-the-shelf detector (paper silent on which;
our choice: simulate one). For each of the 12 joints (``body.joints.BIGRAPH12_JOINT_NAMES``), in crop
pixels, with ``box`` the side of the person box (``Sample.person_box``, 200 * scale in original pixels):

- error: isotropic Gaussian, sigma = ``NOISE_SIGMA`` * box (2 % of the box: about 4.3 px in the default
  320 px crop, whose person box is 213 px), so the median error is sigma * sqrt(2 ln 2) ~ 1.18 sigma;
- outliers: with probability ``OUTLIER_PROB`` per joint the error is drawn with ``OUTLIER_SIGMA`` * box
  (15 %) instead (a joint found on the wrong limb or the background);
- score in (0, 1]: exp(-error / (``SCORE_SCALE`` * sigma)) times a confidence jitter U(0.85, 1), floored
  at ``MIN_SCORE``: it falls with the error, as a heat-map peak does;
- left/right swaps: with probability ``SWAP_PROB`` per sample one symmetric pair (shoulders, elbows,
  wrists, hips, knees or ankles, uniformly) exchanges its positions after the noise is added; the scores
  stay with the joints' own errors (detectors are confidently wrong on swaps).

Positions are not clipped to the crop (a detector may answer outside it).
"""
from __future__ import annotations

import numpy as np

from body.joints import BIGRAPH12_FLIP_PERM

NOISE_SIGMA: float = 0.02
OUTLIER_PROB: float = 0.04
OUTLIER_SIGMA: float = 0.15
SCORE_SCALE: float = 3.0
MIN_SCORE: float = 1e-3
SWAP_PROB: float = 0.04
# The 6 symmetric pairs (left index, right index) of the BiGraph-12 order.
SYMMETRIC_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i, j in enumerate(BIGRAPH12_FLIP_PERM) if i < j
)


def detect_joints(joints_2d: np.ndarray, box: float, rng: np.random.Generator,
                  sigma: float = NOISE_SIGMA, outlier_prob: float = OUTLIER_PROB,
                  outlier_sigma: float = OUTLIER_SIGMA, swap_prob: float = SWAP_PROB) -> tuple[np.ndarray, bool]:
    """Simulated detections of 12 joints (module docstring).

    Args:
        joints_2d: (12, 2) ground-truth positions, crop pixels, BiGraph-12 order.
        box: person-box side in the same pixels.
        rng: the sample's generator.
    Returns:
        ((12, 3) float64 x, y, score, whether a pair was swapped).
    """
    gt = np.asarray(joints_2d, dtype=np.float64).reshape(12, 2)
    s = sigma * box
    outlier = rng.random(12) < outlier_prob
    scale = np.where(outlier, outlier_sigma * box, s)
    offset = rng.standard_normal((12, 2)) * scale[:, None]
    err = np.linalg.norm(offset, axis=1)
    score = np.maximum(np.exp(-err / (SCORE_SCALE * max(s, 1e-9))) * rng.uniform(0.85, 1.0, 12), MIN_SCORE)
    pos = gt + offset
    swapped = bool(rng.random() < swap_prob)
    if swapped:
        i, j = SYMMETRIC_PAIRS[int(rng.integers(len(SYMMETRIC_PAIRS)))]
        pos[[i, j]] = pos[[j, i]]
    return np.concatenate([pos, score[:, None]], axis=1), swapped
