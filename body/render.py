"""Rendering on top of :mod:`body.raster`: silhouettes, part masks, IUV maps, shaded images, overlays.

All functions are batched and device-agnostic (they follow the fragments' device). Camera frame: x right,
y down, z forward (the camera looks along +z); images are channels-first (B, C, H, W) floats in [0, 1]
unless said otherwise. Only :func:`to_uint8_image` and :func:`save_png` leave torch (for pictures).
"""
from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from body.raster import Fragments, interpolate_vertex_attributes, rasterize
from body.rotations import axis_angle_to_rotmat

__all__ = [
    "silhouette", "vertex_labels_to_face_labels", "face_labels_map", "face_labels_image", "iuv_map", "face_iuv_map",
    "vertex_normals", "shade",
    "overlay", "part_palette", "colorize_labels", "to_uint8_image", "label_image", "save_png",
]


def screen_coordinates(verts_cam: Tensor, image_size: int, focal: float) -> Tensor:
    """Pinhole projection into :func:`body.raster.rasterize`'s input: (B, V, 3) camera frame (x right, y
    down, z forward) -> (B, V, 3) pixel x, y and depth z, principal point at the image centre."""
    xy = focal * verts_cam[..., :2] / verts_cam[..., 2:3] + image_size / 2
    return torch.cat([xy, verts_cam[..., 2:3]], dim=-1)


def camera_view(verts: Tensor, yaw_deg: float, distance: float = 8.0) -> Tensor:
    """Body frame (y up, facing +z) -> camera frame (y down, looking along +z) facing the camera,
    turned by ``yaw_deg`` about the vertical axis, centred and pushed to ``distance``. (B, V, 3)."""
    flip = axis_angle_to_rotmat(torch.tensor([math.pi, 0.0, 0.0]))
    yaw = axis_angle_to_rotmat(torch.tensor([0.0, math.radians(yaw_deg), 0.0]))
    rot = (flip @ yaw).to(verts.dtype)
    v = verts @ rot.T
    centre = 0.5 * (v.amax(1, keepdim=True) + v.amin(1, keepdim=True))
    return v - centre + torch.tensor([0.0, 0.0, distance], dtype=v.dtype)


def silhouette(fragments: Fragments) -> Tensor:
    """(B, H, W) float, 1 where a face covers the pixel centre, else 0."""
    return (fragments.pix_to_face >= 0).to(fragments.zbuf.dtype)


def vertex_labels_to_face_labels(vertex_labels: Tensor, faces: Tensor) -> Tensor:
    """Per-face label by majority vote of its 3 vertices; with three different labels, the first vertex's.

    Args:
        vertex_labels: (V,) long.
        faces: (F, 3) long.
    Returns:
        (F,) long.
    """
    l0, l1, l2 = vertex_labels[faces.to(vertex_labels.device)].unbind(-1)
    return torch.where(l1 == l2, l1, l0)  # l1 == l2: majority (or unanimous); else l0 is majority or tie


def face_labels_map(fragments: Fragments, face_labels: Tensor, background: int = 0) -> Tensor:
    """Label of the visible face at every pixel (part masks).

    Args:
        fragments: (B, H, W) fragments.
        face_labels: (F,) long.
        background: value of uncovered pixels.
    Returns:
        (B, H, W) long.
    """
    p2f = fragments.pix_to_face
    labels = face_labels.to(p2f.device).long()[p2f.clamp(min=0)]
    return torch.where(p2f >= 0, labels, torch.full_like(labels, background))


def face_labels_image(screen: Tensor, faces: Tensor, face_labels: Tensor, height: int, width: int) -> Tensor:
    """One mesh's visible-face labels on a (height, width) image, e.g. a part mask at an original photo's size.

    Only the window the projection can reach (its bounding box, clipped to the image) is rasterised and
    pasted into the image. The window moves the screen coordinates by a whole number of pixels, which is
    exact in floating point, and the rasteriser works on coordinate differences, so the labels are bit
    for bit those of a full-size render at a fraction of the cost.

    Args:
        screen: (V, 3) :func:`body.raster.rasterize` screen coordinates (x, y pixels, z depth).
        faces: (F, 3) long; face_labels: (F,) long.
    Returns:
        (height, width) long, 0 where no face covers the pixel centre.
    """
    height, width = int(height), int(width)
    out = torch.zeros(height, width, dtype=torch.long, device=screen.device)
    xy = screen[:, :2]
    finite = torch.isfinite(xy).all(-1)
    if not bool(finite.any()):
        return out
    side = max(width, height)
    lo = xy[finite].min(0).values.floor().clamp(0, side).long().tolist()
    hi = xy[finite].max(0).values.ceil().clamp(0, side).long().tolist()
    x0, y0 = min(lo[0], width), min(lo[1], height)
    x1, y1 = min(hi[0] + 1, width), min(hi[1] + 1, height)
    if x1 <= x0 or y1 <= y0:
        return out   # entirely outside the image
    shift = screen.new_tensor([float(x0), float(y0), 0.0])
    fragments = rasterize((screen - shift)[None], faces, (y1 - y0, x1 - x0))
    out[y0:y1, x0:x1] = face_labels_map(fragments, face_labels)[0]
    return out


def iuv_map(fragments: Fragments, faces: Tensor, vertex_iuv: Tensor) -> Tensor:
    """DensePose-style IUV image with U, V interpolated over each face (pictures; PyMAF's training target, flat
    per face on a chart-split mesh, is :func:`face_iuv_map`).

    Args:
        fragments: (B, H, W) fragments.
        faces: (F, 3) long.
        vertex_iuv: (V, 3) columns: part index I (1..24; 0 is background and never on a vertex), U, V in [0, 1].
    Returns:
        (B, 3, H, W) float: channel 0 the part index of the visible face (majority of its vertices, not
        interpolated), channels 1, 2 U and V interpolated barycentrically; zeros on background.
    """
    faces = faces.to(fragments.pix_to_face.device)
    vertex_iuv = vertex_iuv.to(device=fragments.pix_to_face.device, dtype=fragments.bary.dtype)
    face_i = vertex_labels_to_face_labels(vertex_iuv[:, 0].round().long(), faces)
    i_map = face_labels_map(fragments, face_i, background=0).to(vertex_iuv.dtype)  # (B, H, W)
    uv = interpolate_vertex_attributes(fragments, faces, vertex_iuv[:, 1:])  # (B, H, W, 2)
    return torch.cat([i_map[:, None], uv.permute(0, 3, 1, 2)], dim=1)


def face_iuv_map(fragments: Fragments, face_iuv: Tensor) -> Tensor:
    """PyMAF's IUV target image: every pixel takes the (I, U, V) of its visible face, one value per face.

    PyMAF's ``IUV_Renderer`` gives each face of DensePose's chart-split mesh a single texel, (part / 24, mean
    U, mean V) of its corners (``body.iuv_mesh.IUVMesh.face_iuv``), and renders without anti-aliasing or
    lighting: the image is that flat per-face colour. Here I stays the part number.

    Args:
        fragments: (B, H, W) fragments of the chart-split mesh (``BodyModel.iuv_faces``).
        face_iuv: (F, 3) columns part index 1..24, U, V (``BodyModel.iuv_face_iuv``).
    Returns:
        (B, 3, H, W) in ``face_iuv``'s dtype: part index, U, V of the face under each pixel; zeros on background.
    """
    p2f = fragments.pix_to_face
    values = face_iuv.to(p2f.device)[p2f.clamp(min=0)]                       # (B, H, W, 3)
    values = torch.where((p2f >= 0)[..., None], values, torch.zeros((), dtype=values.dtype, device=p2f.device))
    return values.permute(0, 3, 1, 2)


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted vertex normals (sum of the adjacent faces' cross products, normalised).

    Args:
        verts: (B, V, 3).
        faces: (F, 3) long, counter-clockwise around the outward normal.
    Returns:
        (B, V, 3) unit normals (zero for isolated vertices).
    """
    faces = faces.to(verts.device)
    v0, v1, v2 = verts[:, faces].unbind(-2)  # each (B, F, 3)
    fn = torch.cross(v1 - v0, v2 - v0, dim=-1)  # (B, F, 3), norm = 2 * area
    n = torch.zeros_like(verts)
    for k in range(3):
        n = n.index_add(1, faces[:, k], fn)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def shade(fragments: Fragments, faces: Tensor, verts_cam: Tensor, vertex_colors: Tensor,
          light_dir: Sequence[float] | Tensor = (0.0, 0.0, -1.0), ambient: float = 0.35, diffuse: float = 0.65,
          specular: float = 0.0, shininess: float = 32.0) -> tuple[Tensor, Tensor]:
    """Two-sided Lambert (+ optional Blinn-Phong) shading with interpolated vertex normals.

    rgb = colour * (ambient + diffuse * |n . l|) + specular * |n . h|^shininess, clamped to [0, 1],
    with n the interpolated, renormalised vertex normal, l the unit direction towards the light and
    h = normalise(l + v), v the unit direction from the surface point to the camera.

    Args:
        fragments: (B, H, W) fragments of ``verts_cam`` projected with ``faces``.
        faces: (F, 3) long.
        verts_cam: (B, V, 3) camera-frame vertices (x right, y down, z forward).
        vertex_colors: (B, V, 3) or (V, 3) in [0, 1].
        light_dir: (3,) or (B, 3) direction from the surface towards the light, camera frame; the default
            (0, 0, -1) points towards the camera (a head light).
        ambient, diffuse, specular: weights; shininess: Blinn-Phong exponent.
    Returns:
        rgb: (B, 3, H, W) in [0, 1], zeros on background.
        alpha: (B, 1, H, W), 1 on covered pixels, else 0.
    """
    dev, dt = verts_cam.device, verts_cam.dtype
    faces = faces.to(dev)
    mask = (fragments.pix_to_face >= 0)[..., None]  # (B, H, W, 1)
    n = interpolate_vertex_attributes(fragments, faces, vertex_normals(verts_cam, faces))
    n = torch.nn.functional.normalize(n, dim=-1, eps=1e-12)  # (B, H, W, 3)
    light = torch.as_tensor(light_dir, dtype=dt, device=dev)
    light = torch.nn.functional.normalize(light.reshape(-1, 3), dim=-1).view(-1, 1, 1, 3)  # (1|B, 1, 1, 3)
    color = interpolate_vertex_attributes(fragments, faces, vertex_colors.to(device=dev, dtype=dt))
    intensity = ambient + diffuse * (n * light).sum(-1, keepdim=True).abs()
    rgb = color * intensity
    if specular > 0:
        pos = interpolate_vertex_attributes(fragments, faces, verts_cam)
        view = torch.nn.functional.normalize(-pos, dim=-1, eps=1e-12)
        half = torch.nn.functional.normalize(light + view, dim=-1, eps=1e-12)
        rgb = rgb + specular * (n * half).sum(-1, keepdim=True).abs().pow(shininess)
    rgb = torch.where(mask, rgb.clamp(0, 1), torch.zeros((), dtype=dt, device=dev))
    return rgb.permute(0, 3, 1, 2), mask.to(dt).permute(0, 3, 1, 2)


def overlay(image: Tensor, rgb: Tensor, alpha: Tensor, opacity: float = 0.8) -> Tensor:
    """Alpha-composite a render over a photo: out = image * (1 - a) + rgb * a, a = opacity * alpha.

    Args:
        image: (B, 3, H, W) in [0, 1]; rgb: (B, 3, H, W); alpha: (B, 1, H, W) in [0, 1].
    Returns:
        (B, 3, H, W).
    """
    a = opacity * alpha.to(image.dtype)
    return image * (1 - a) + rgb.to(image.dtype) * a


def part_palette(n_parts: int) -> Tensor:
    """Distinct colours for part indices, background black.

    Hues step by the golden ratio so consecutive parts differ strongly; saturation and value alternate
    over three levels.

    Returns:
        (n_parts + 1, 3) float32 in [0, 1]; row 0 = (0, 0, 0) is the background, row k the colour of part k.
    """
    golden = 0.618033988749895
    rows = [(0.0, 0.0, 0.0)]
    for k in range(n_parts):
        h = (k * golden) % 1.0
        s = (0.85, 0.6, 1.0)[k % 3]
        v = (1.0, 0.85, 0.7)[(k // 3) % 3]
        rows.append(colorsys.hsv_to_rgb(h, s, v))
    return torch.tensor(rows, dtype=torch.float32)


def colorize_labels(labels: Tensor, palette: Tensor) -> Tensor:
    """Colour a label map. labels: (B, H, W) long in [0, len(palette)); palette: (K, 3).
    Returns (B, 3, H, W) float."""
    return palette.to(labels.device)[labels].permute(0, 3, 1, 2)


def to_uint8_image(x: Tensor) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] -> (H, W, 3) uint8 numpy array (values clamped, rounded)."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected (3, H, W), got {tuple(x.shape)}")
    x = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def label_image(img: np.ndarray, text: str, at: tuple[int, int] = (6, 4)) -> np.ndarray:
    """(H, W, 3) uint8 with ``text`` written at ``at`` on a white box (picture captions)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    x0, y0, x1, y1 = d.textbbox(at, text)
    d.rectangle([x0 - 3, y0 - 2, x1 + 3, y1 + 2], fill=(255, 255, 255))
    d.text(at, text, fill=(20, 20, 20))
    return np.asarray(pil)


def save_png(path: str | Path, x: Tensor | np.ndarray, compress_level: int = 6) -> Path:
    """Write a picture: x is a (3, H, W) float tensor in [0, 1] or an (H, W, 3) uint8 array. Parent folders
    are created. ``compress_level`` is zlib's (0-9, PIL's default 6; 1 writes a photo 3-4x faster, about a
    third larger; lossless either way). Returns the path."""
    from PIL import Image

    arr = to_uint8_image(x) if isinstance(x, Tensor) else np.asarray(x, dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, compress_level=int(compress_level))
    return path
