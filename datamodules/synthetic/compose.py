"""The final picture: the rendered person over its background, a camera-like blur and sensor noise.

out = background (1 - alpha) + person alpha; then a Gaussian blur (sigma px; it also anti-aliases the
silhouette, which the rasteriser draws with hard edges: every picture gets at least ``MIN_BLUR``) and
additive Gaussian noise drawn from the sample's generator, rounded to 8 bits.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MIN_BLUR: float = 0.35


def gaussian_kernel(sigma: float) -> Tensor:
    """(K,) normalised 1D Gaussian, K = 2 ceil(3 sigma) + 1."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """(C, H, W) -> (C, H, W) separable Gaussian blur with replicated borders; sigma <= 0: unchanged."""
    if sigma <= 0:
        return image
    k = gaussian_kernel(sigma)
    r = (len(k) - 1) // 2
    c = image.shape[0]
    x = F.pad(image[None], (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return x[0]


def compose(background: Tensor, rgb: Tensor, alpha: Tensor, blur_sigma: float, noise_sigma: float,
            rng: np.random.Generator) -> np.ndarray:
    """One picture.

    Args:
        background, rgb: (3, H, W) in [0, 1]; alpha: (1, H, W).
        blur_sigma: px (raised to ``MIN_BLUR``); noise_sigma: in [0, 1] units.
        rng: draws the noise.
    Returns:
        (H, W, 3) uint8.
    """
    img = background * (1 - alpha) + rgb * alpha
    img = gaussian_blur(img, max(blur_sigma, MIN_BLUR)).permute(1, 2, 0).numpy().astype(np.float64)
    img = img + rng.normal(0.0, noise_sigma, img.shape)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
