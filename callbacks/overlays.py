"""Mesh overlays of validation: what the model sees and what it predicts, as pictures.

At the end of each validation, rank 0 runs the model on the first ``num_samples`` samples of the first
evaluation set (the same samples every time: evaluation streams are not shuffled) and draws, per sample, the
network's input, the predicted mesh over it (shaded, projected with the predicted camera exactly as the
protocols project it, ``metrics.protocols.vertices_in_image``) and the mesh seen from the side. The grid is
written to ``<run dir>/overlays/epoch-<e>.png`` and given to every logger that takes images (W&B's
``log_image``). Drawn with the suite's own rasteriser (``body.raster``): no OpenGL, no display.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from body.camera import FOCAL_LENGTH, weak_perspective_to_translation
from body.raster import rasterize
from body.render import overlay, save_png, screen_coordinates, shade
from body.rotations import axis_angle_to_rotmat
from metrics.protocols import vertices_in_image

MESH_COLOUR = (0.65, 0.74, 0.86)
SIDE_DISTANCE = 8.0   # metres from the camera for the side view
SIDE_FIELD = 2.1      # metres of height the side view shows


def side_view(vertices: Tensor, yaw_deg: float = 90.0) -> Tensor:
    """(B, V, 3) camera-frame vertices (y down) turned by ``yaw_deg`` about their vertical axis through
    their centre and placed ``SIDE_DISTANCE`` in front of the camera."""
    centre = 0.5 * (vertices.amax(1, keepdim=True) + vertices.amin(1, keepdim=True))
    yaw = axis_angle_to_rotmat(torch.tensor([0.0, math.radians(yaw_deg), 0.0])).to(vertices)
    return (vertices - centre) @ yaw.T + torch.tensor([0.0, 0.0, SIDE_DISTANCE]).to(vertices)


def mesh_over_photo(photo: Tensor, vertices: Tensor, cam: Tensor, faces: Tensor, img_res: int,
                    opacity: float = 0.75) -> Tensor:
    """The shaded mesh over the network's input, projected with its weak-perspective camera exactly as the
    protocols project it (``metrics.protocols.vertices_in_image``).

    Args:
        photo: (B, 3, H, W) floats in [0, 1]; vertices: (B, V, 3) body-frame vertices (metres);
        cam: (B, 3) weak-perspective (s, tx, ty); faces: (F, 3) long.
    Returns:
        (B, 3, H, W) floats in [0, 1].
    """
    b, _, h, w = photo.shape
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(b, 2, 3)
    screen = vertices_in_image(vertices, cam, identity, img_res)
    colours = torch.tensor(MESH_COLOUR).expand(vertices.shape[1], 3)
    frags = rasterize(screen, faces, (h, w))
    verts_cam = vertices + weak_perspective_to_translation(cam, FOCAL_LENGTH, img_res)[:, None]
    rgb, alpha = shade(frags, faces, verts_cam, colours)
    return overlay(photo, rgb, alpha, opacity=opacity)


def overlay_grid(images: Tensor, vertices: Tensor, cam: Tensor, faces: Tensor, img_res: int) -> np.ndarray:
    """One row per sample: input | predicted mesh over it | the mesh from the side.

    Args:
        images: (B, 3, H, W) the network inputs, uint8 or floats in [0, 255].
        vertices: (B, V, 3) predicted body-frame vertices (metres); cam: (B, 3) weak-perspective (s, tx, ty).
        faces: (F, 3) long.
    Returns:
        (B H, 3 W, 3) uint8.
    """
    b, _, h, w = images.shape
    photo = images.float().cpu() / 255.0
    vertices, cam, faces = vertices.float().cpu(), cam.float().cpu(), faces.cpu()
    on_photo = mesh_over_photo(photo, vertices, cam, faces, img_res)
    colours = torch.tensor(MESH_COLOUR).expand(vertices.shape[1], 3)
    verts_cam = vertices + weak_perspective_to_translation(cam, FOCAL_LENGTH, img_res)[:, None]
    turned = side_view(verts_cam)
    side_frags = rasterize(screen_coordinates(turned, h, focal=h * SIDE_DISTANCE / SIDE_FIELD), faces, (h, w))
    side_rgb, side_alpha = shade(side_frags, faces, turned, colours)
    side = overlay(torch.ones_like(photo), side_rgb, side_alpha, opacity=1.0)
    grid = torch.cat([photo, on_photo, side], dim=3)                   # (B, 3, H, 3W)
    grid = grid.permute(0, 2, 3, 1).reshape(b * h, 3 * w, 3)
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


class MeshOverlays(pl.Callback):
    """Write and log the overlay grid at the end of each validation (module docstring)."""

    def __init__(self, run_dir: str | Path, num_samples: int = 4):
        self.folder = Path(run_dir) / "overlays"
        self.num_samples = int(num_samples)
        self._batch: dict[str, Any] | None = None
        self.written: list[Path] = []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.is_global_zero and self._batch is None and batch_idx == 0 and dataloader_idx == 0:
            n = self.num_samples
            self._batch = {k: (v[:n].detach().cpu() if isinstance(v, Tensor) else v[:n] if isinstance(v, list) else v)
                           for k, v in batch.items()}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self._batch is None or trainer.sanity_checking:
            return
        batch = {k: v.to(pl_module.device) if isinstance(v, Tensor) else v for k, v in self._batch.items()}
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            final = pl_module.decoder.final(pl_module(batch))
        pl_module.train(was_training)
        grid = overlay_grid(batch["img"], final["vertices"], final["cam"], pl_module.body.faces, pl_module.img_res)
        path = save_png(self.folder / f"epoch-{trainer.current_epoch:03d}.png", grid)
        self.written.append(path)
        # At the step Lightning logs this validation's metrics at (its logger connector's choice), so the images
        # line up with them on the dashboards' trainer/global_step axis.
        step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/overlays", images=[grid], step=step,
                                 caption=[f"epoch {trainer.current_epoch}: input | prediction | side"])
