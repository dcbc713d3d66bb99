"""``make show-body``: a PNG sheet of the active body model.

Row 1-2: rest pose, everyday poses and shapes, shaded, front and side. Row 3: the 24-part map with
the skeleton's joints and bones. Row 4: the three mesh levels, the IUV map (I, U, V as colour), the
LSP 6-part map and the silhouette.

    python -m cli.show_body [body=smpl body.smpl_dir=...] [out=outputs/body_sheet.png]
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

from body.joints import SMPL_PARENTS
from body.model import BodyModel
from body.poses import named_pose
from body.raster import rasterize
from body.render import screen_coordinates as to_screen
from body.render import (camera_view, colorize_labels, iuv_map, label_image, part_palette, save_png, shade,
                         silhouette, to_uint8_image)
from runtime.cli import run_cli

SKIN = torch.tensor([0.86, 0.70, 0.60])


def _draw_skeleton(img: np.ndarray, joints_px: np.ndarray) -> np.ndarray:
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    for j, p in enumerate(SMPL_PARENTS):
        if p >= 0:
            d.line([tuple(joints_px[p]), tuple(joints_px[j])], fill=(255, 255, 255), width=2)
    for x, y in joints_px:
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(10, 10, 10), outline=(255, 255, 255))
    return np.asarray(pil)


def body_sheet(model: BodyModel, size: int = 256) -> np.ndarray:
    """Render the sheet. Returns an (H, W, 3) uint8 image."""
    specs = [("rest (T-pose)", "t_pose", 0, 0.0), ("standing", "standing", 0, 0.0), ("walking", "walking", 0, 0.0),
             ("sitting", "sitting", 0, 0.0), ("reaching", "reaching", 0, 0.0), ("bending", "bending", 0, 0.0),
             ("beta0 = +2", "standing", 0, 2.0), ("beta0 = -2", "standing", 0, -2.0),
             ("beta1 = +2", "standing", 1, 2.0), ("beta1 = -2", "standing", 1, -2.0)]
    n = len(specs)
    pose = torch.stack([named_pose(p) for _, p, _, _ in specs])
    betas = torch.zeros(n, 10)
    for i, (_, _, k, v) in enumerate(specs):
        betas[i, k] = v
    with torch.no_grad():
        out = model(betas, pose[:, 1:], pose[:, 0])
    faces = model.faces
    focal = size * 8.0 / 2.1  # a 2.1 m tall field of view at 8 m
    bg = torch.ones(1, 3, size, size) * 0.93
    rows = []
    for yaw in (0.0, 90.0):
        v = camera_view(out.vertices, yaw)
        frags = rasterize(to_screen(v, size, focal), faces, (size, size))
        rgb, alpha = shade(frags, faces, v, SKIN.expand(model.num_vertices, 3), specular=0.15)
        img = rgb + bg * (1 - alpha)
        rows.append([label_image(to_uint8_image(img[i]), f"{specs[i][0]}{' (side)' if yaw else ''}") for i in range(n)])
    # Part map with skeleton.
    v = camera_view(torch.cat([out.vertices, out.joints], 1), 0.0)
    screen = to_screen(v, size, focal)
    vs, js = screen[:, : model.num_vertices], screen[:, model.num_vertices :]
    frags = rasterize(vs, faces, (size, size))
    part_faces = model.vertex_part24[faces].mode(1).values + 1
    pal = part_palette(24)
    labels = torch.where(frags.pix_to_face >= 0, part_faces[frags.pix_to_face.clamp_min(0)], 0)
    parts = colorize_labels(labels, pal)
    parts = parts + bg * (labels == 0)[:, None]
    rows.append([_draw_skeleton(label_image(to_uint8_image(parts[i]), "24 parts + joints"), js[i, :, :2].numpy())
                 for i in range(n)])
    # Mesh levels, IUV, LSP parts, silhouette of the rest pose.
    cells = []
    rest = out.vertices[:1]
    for level in range(3):
        lv = model.mesh_hierarchy.downsample(rest, 0, level)
        f = model.mesh_hierarchy.faces(level)
        cv = camera_view(lv, 20.0)
        fr = rasterize(to_screen(cv, size, focal), f, (size, size))
        rgb, alpha = shade(fr, f, cv, torch.tensor([0.55, 0.7, 0.9]).expand(lv.shape[1], 3))
        cells.append(label_image(to_uint8_image((rgb + bg * (1 - alpha))[0]), f"level {level}: {lv.shape[1]} vertices"))
    cv = camera_view(rest, 0.0)
    fr = rasterize(to_screen(cv, size, focal), faces, (size, size))
    iuv = iuv_map(fr, faces, model.vertex_iuv.float())
    iuv_rgb = torch.stack([iuv[:, 0] / 24.0, iuv[:, 1], iuv[:, 2]], 1)
    cells.append(label_image(to_uint8_image(iuv_rgb[0]), "IUV (R=I/24, G=U, B=V)"))
    lsp_faces = model.vertex_part_lsp6[faces].mode(1).values
    lsp = torch.where(fr.pix_to_face >= 0, lsp_faces[fr.pix_to_face.clamp_min(0)], 0)
    cells.append(label_image(to_uint8_image(colorize_labels(lsp, part_palette(6))[0] + bg[0] * (lsp[0] == 0)), "LSP 6 parts"))
    sil = silhouette(fr)[0]
    cells.append(label_image(to_uint8_image(sil.expand(3, -1, -1)), "silhouette"))
    while len(cells) < n:
        cells.append(np.full((size, size, 3), 255, np.uint8))
    rows.append(cells)
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


def main(argv: list[str] | None = None) -> None:
    from configs.loader import compose

    cfg = compose("show_body", sys.argv[1:] if argv is None else argv)
    model = BodyModel.from_config(cfg.body.name, cfg.body.gender, cfg.body.smpl_dir)
    path = save_png(cfg.out, body_sheet(model, int(cfg.image_size)))
    print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
