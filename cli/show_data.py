"""``make show-data``: a PNG grid of augmented training samples, one row per source.

Each tile is a network input as the model sees it (after rotation, scale, flip and pixel gain) with:
- the ground-truth mesh (where the source has SMPL and the sample a camera), coloured by LSP part with
  the person's LEFT side blue and RIGHT side red, half transparent;
- the ground-truth part mask (where the source has masks), in the same colours;
- the 2D keypoints with confidence > 0 as dots (left blue, right red, centre green) and BiGraph's
  detected joints as small white crosses.
A correct flip keeps blue dots on blue limbs. The mesh is placed with the sample's 3D joints (has_3d)
or, for SMPL fits without 3D joints, with the translation that best fits its 2D keypoints.

    python -m cli.show_data [data=synthetic] [out=outputs/data_grid.png] [per_source=6]
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

from body.camera import estimate_translation, normalized_to_pixels, perspective_projection
from body.joints import SPIN49_JOINT_NAMES
from body.model import BodyModel
from body.raster import rasterize
from body.render import face_labels_map, overlay, save_png, vertex_labels_to_face_labels
from configs.loader import compose
from datamodules.mixed import MixedDataModule, expand_shards
from datamodules.streams import MixedTrainStream, SourceShards
from runtime.cli import run_cli

# background, head, torso, left arm, right arm, left leg, right leg (body.parts' LSP-6 order)
SIDE_PALETTE = torch.tensor([[0, 0, 0], [0.95, 0.85, 0.3], [0.7, 0.7, 0.7], [0.2, 0.45, 1.0], [1.0, 0.25, 0.2],
                             [0.45, 0.7, 1.0], [1.0, 0.55, 0.45]])


def side_colour(name: str) -> tuple[int, int, int]:
    if "left" in name:
        return (40, 110, 255)
    if "right" in name:
        return (255, 50, 40)
    return (60, 220, 60)


def source_batch(dm: MixedDataModule, name: str, n: int) -> dict:
    """``n`` augmented samples of one training source, drawn like training draws them."""
    src = dm.train_cfg[name]
    shards = SourceShards(name, tuple(expand_shards(str(src["shards"]), dm.root, f"data.train.sources.{name}")))
    stream = MixedTrainStream([shards], n, 1, dm.augment, dm.img_res, dm.seed, dm.shuffle_buffer)
    return next(iter(stream))


def mesh_layer(body: BodyModel, batch: dict, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, R, R) part colours and (B, 1, R, R) coverage of the ground-truth meshes (zero where unknown)."""
    b = batch["img"].shape[0]
    rgb, alpha = torch.zeros(b, 3, res, res), torch.zeros(b, 1, res, res)
    usable = (batch["has_smpl"] & batch["has_camera"]).nonzero().flatten()
    if not len(usable):
        return rgb, alpha
    with torch.no_grad():
        out = body(betas=batch["betas"][usable], body_pose=batch["pose"][usable, 3:],
                   global_orient=batch["pose"][usable, :3])
    joints = out.keypoints49[:, 25:].double()
    focal, centre = batch["focal_length"][usable].double(), batch["principal_point"][usable].double()
    gt3d = batch["joints_3d"][usable].double()
    kp = normalized_to_pixels(batch["keypoints_2d"][usable, 25:, :2].double(), res)
    conf3d, conf2d = gt3d[..., 3], batch["keypoints_2d"][usable, 25:, 2].double()
    shift3d = ((gt3d[..., :3] - joints) * conf3d[..., None]).sum(1) / conf3d.sum(1, keepdim=True).clamp(min=1)
    shift2d = estimate_translation(joints, kp, focal, centre, conf2d)
    has3d = batch["has_3d"][usable][:, None]
    verts = out.vertices.double() + torch.where(has3d, shift3d, shift2d)[:, None]
    xy = perspective_projection(verts, torch.zeros(len(usable), 3, dtype=verts.dtype), focal, centre)
    frags = rasterize(torch.cat([xy, verts[..., 2:]], -1).float(), body.faces, (res, res))
    vertex_parts = body.vertex_part_lsp6
    labels = face_labels_map(frags, vertex_labels_to_face_labels(vertex_parts, body.faces))
    rgb[usable] = SIDE_PALETTE[labels].permute(0, 3, 1, 2).float()
    alpha[usable] = (frags.pix_to_face >= 0).float()[:, None]
    return rgb, alpha


def draw_points(tile: np.ndarray, batch: dict, i: int, res: int) -> np.ndarray:
    pil = Image.fromarray(tile)
    d = ImageDraw.Draw(pil)
    det = normalized_to_pixels(batch["bigraph_joints_2d"][i:i + 1, :, :2], res)[0]
    for (x, y), s in zip(det.tolist(), batch["bigraph_joints_2d"][i, :, 2].tolist()):
        if s > 0:
            d.line([x - 3, y - 3, x + 3, y + 3], fill=(255, 255, 255))
            d.line([x - 3, y + 3, x + 3, y - 3], fill=(255, 255, 255))
    kp = normalized_to_pixels(batch["keypoints_2d"][i:i + 1, :, :2], res)[0]
    for (x, y), c, name in zip(kp.tolist(), batch["keypoints_2d"][i, :, 2].tolist(), SPIN49_JOINT_NAMES):
        if c > 0:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=side_colour(name), outline=(0, 0, 0))
    return np.asarray(pil)


def row_label(name: str, batch: dict) -> str:
    flags = [f for f in ("has_smpl", "has_3d", "has_mask") if bool(batch[f].any())]
    return f"{name}: " + (", ".join(flags) if flags else "2D only")


def data_grid(dm: MixedDataModule, body: BodyModel, per_source: int) -> np.ndarray:
    res = dm.img_res
    rows = []
    for name in dm.source_names:
        batch = source_batch(dm, name, per_source)
        img = batch["img"].float() / 255.0
        rgb, alpha = mesh_layer(body, batch, res)
        mask = batch["mask"].long()
        known = (mask > 0) & (mask < len(SIDE_PALETTE))
        mask_rgb = SIDE_PALETTE[mask.clamp(max=len(SIDE_PALETTE) - 1)].permute(0, 3, 1, 2).float()
        img = overlay(img, mask_rgb, known[:, None].float(), opacity=0.45)
        img = overlay(img, rgb, alpha, opacity=0.5)
        tiles = [draw_points((img[i].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8), batch, i, res)
                 for i in range(per_source)]
        row = np.concatenate(tiles, axis=1)
        band = Image.new("RGB", (row.shape[1], 18), (255, 255, 255))
        ImageDraw.Draw(band).text((4, 3), row_label(name, batch), fill=(0, 0, 0))
        rows.append(np.concatenate([np.asarray(band), row], axis=0))
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> None:
    cfg = compose("show_data", sys.argv[1:] if argv is None else argv)
    dm = MixedDataModule(cfg.data, rank=0, world_size=1)
    body = BodyModel.from_config(cfg.body.name, cfg.body.gender, cfg.body.smpl_dir)
    grid = data_grid(dm, body, int(cfg.per_source))
    path = save_png(cfg.out, grid)
    print(f"wrote {path} ({len(dm.source_names)} sources x {cfg.per_source} augmented samples)")


if __name__ == "__main__":
    run_cli(main)
