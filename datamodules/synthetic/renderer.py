"""Render a batch of people into their crops: z-buffer, shading, clothing colours, LSP-6 part masks.

One :func:`body.raster.rasterize` call per batch; then, per person, only its foreground pixels are shaded
and coloured (a (1, 1, N) view of its fragments, so :func:`body.render.shade` and
:func:`body.raster.interpolate_vertex_attributes` never touch background pixels). Shading is
``body.render.shade`` with white vertex colours (Lambert, two-sided, the person's own light direction
and ambient term, diffuse = 1 - ambient), multiplied by the albedo of ``.texture`` and the light colour.

:func:`render_original_labels` renders one person's LSP-6 labels once more at the original image's
resolution with the original camera (evaluation sets: ``area``, ``mask_original``): the same projection
(:func:`crop_screen`), rasteriser and pixel convention as the crop (pixel i covers [i, i + 1), tested at
its centre i + 0.5), so the two label maps differ only by resampling along edges.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from body.raster import Fragments, interpolate_vertex_attributes, rasterize
from body.render import face_labels_image, face_labels_map, shade
from datamodules.synthetic.appearance import Appearance
from datamodules.synthetic.texture import BodyCoordinates, albedo


def crop_screen(verts_cam: Tensor, focal: Tensor, principal: Tensor) -> Tensor:
    """Camera-frame vertices -> the rasteriser's screen coordinates in the crop.

    Args:
        verts_cam: (B, V, 3) metres, z > 0.
        focal: (B, 2) crop focal lengths (px); principal: (B, 2) crop principal points (px).
    Returns:
        (B, V, 3): x = f_x X / Z + c_x, y = f_y Y / Z + c_y (px), z = Z.
    """
    xy = focal[:, None] * verts_cam[..., :2] / verts_cam[..., 2:3] + principal[:, None]
    return torch.cat([xy, verts_cam[..., 2:3]], dim=-1)


def _foreground(frags: Fragments, b: int) -> tuple[Fragments, Tensor]:
    """Fragments of image ``b``'s covered pixels as a (1, 1, N) image, and their flat indices (N,)."""
    p2f = frags.pix_to_face[b].reshape(-1)
    idx = (p2f >= 0).nonzero().squeeze(1)
    sub = Fragments(pix_to_face=p2f[idx].view(1, 1, -1), zbuf=frags.zbuf[b].reshape(-1)[idx].view(1, 1, -1),
                    bary=frags.bary[b].reshape(-1, 3)[idx].view(1, 1, -1, 3))
    return sub, idx


def render_people(verts_cam: Tensor, focal: Tensor, principal: Tensor, faces: Tensor, coords: BodyCoordinates,
                  looks: Sequence[Appearance], size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Render B people into size x size crops.

    Args:
        verts_cam: (B, V, 3) float32 camera frame; focal, principal: (B, 2) crop intrinsics;
        faces: (F, 3) long; coords: the body coordinates of the mesh; looks: B appearances.
    Returns:
        rgb (B, 3, H, W) in [0, 1] (0 on background), alpha (B, 1, H, W) in {0, 1},
        part mask (B, H, W) uint8 LSP-6 labels (0 background).
    """
    b_, v_, _ = verts_cam.shape
    frags = rasterize(crop_screen(verts_cam, focal, principal), faces, (size, size))
    mask = face_labels_map(frags, coords.face_lsp6).to(torch.uint8)
    rgb = torch.zeros(b_, 3, size * size)
    white = torch.ones(v_, 3)
    for b, look in enumerate(looks):
        sub, idx = _foreground(frags, b)
        if idx.numel() == 0:
            continue
        lit, _ = shade(sub, faces, verts_cam[b:b + 1], white, light_dir=torch.as_tensor(look.light_dir).float(),
                       ambient=look.ambient, diffuse=1.0 - look.ambient)
        attrs = interpolate_vertex_attributes(sub, faces, coords.attrs)[0, 0]   # (N, 6)
        part = coords.face_part[sub.pix_to_face[0, 0]]                          # (N,)
        colour = albedo(part, attrs, coords, look) * lit[0, :, 0].T              # (N, 3)
        colour = colour * torch.as_tensor(look.light_colour, dtype=colour.dtype)
        rgb[b][:, idx] = colour.clamp(0.0, 1.0).T
    alpha = (frags.pix_to_face >= 0).float()[:, None]
    return rgb.view(b_, 3, size, size), alpha, mask


def render_original_labels(verts_cam: Tensor, focal: Tensor, principal: Tensor, image_size: tuple[int, int],
                           faces: Tensor, face_labels: Tensor) -> np.ndarray:
    """One person's part labels at the original image's resolution, seen by the original camera.

    ``body.render.face_labels_image`` rasterises only the mesh's window (bit for bit a full-size render).

    Args:
        verts_cam: (V, 3) float32 camera frame, metres (z > 0); focal, principal: (2,) float32 original
            intrinsics (px); image_size: original (width, height); faces: (F, 3) long;
        face_labels: (F,) long labels (e.g. ``BodyCoordinates.face_lsp6``).
    Returns:
        (height, width) uint8 labels, 0 where no face covers the pixel centre.
    """
    screen = crop_screen(verts_cam[None], focal[None], principal[None])[0]   # (V, 3)
    labels = face_labels_image(screen, faces, face_labels, int(image_size[1]), int(image_size[0]))
    return labels.to(torch.uint8).numpy()
