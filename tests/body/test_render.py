"""Checks of body/render.py: silhouettes, part labels, IUV maps, normals, shading, overlays, pictures."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from body.raster import rasterize
from body.render import (colorize_labels, face_labels_image, face_labels_map, iuv_map, overlay, part_palette, save_png, shade,
                         silhouette, to_uint8_image, vertex_labels_to_face_labels, vertex_normals)
from tests.body.scenes import SIZE, analytic_sphere_area, icosphere, project, sphere_scene


def grid_plane(n: int, x0: float, y0: float, x1: float, y1: float, z: float):
    """Screen-space (n x n cells) grid at constant depth: verts (1, (n+1)^2, 3), faces (2 n^2, 3),
    front-facing (negative screen area)."""
    ii, jj = torch.meshgrid(torch.arange(n + 1.0), torch.arange(n + 1.0), indexing="ij")
    xs, ys = x0 + (x1 - x0) * jj / n, y0 + (y1 - y0) * ii / n
    verts = torch.stack([xs, ys, torch.full_like(xs, z)], -1).view(1, -1, 3)
    idx = (torch.arange(n)[:, None] * (n + 1) + torch.arange(n)).reshape(-1)
    faces = torch.cat([torch.stack([idx, idx + n + 1, idx + n + 2], 1), torch.stack([idx, idx + n + 2, idx + 1], 1)])
    return verts, faces


def test_silhouette_is_binary_and_matches_the_sphere_area():
    verts, faces = sphere_scene([4.0, 5.0])
    sil = silhouette(rasterize(project(verts), faces, (SIZE, SIZE)))
    assert sil.shape == (2, SIZE, SIZE) and sil.dtype == torch.float32
    assert set(sil.unique().tolist()) <= {0.0, 1.0}
    for k, d in enumerate((4.0, 5.0)):
        assert abs(sil[k].sum().item() / analytic_sphere_area(d) - 1) < 0.01
    # the disc is centred on the principal point
    ii, jj = sil[0].nonzero().float().unbind(1)
    assert abs(ii.mean().item() + 0.5 - SIZE / 2) < 0.5 and abs(jj.mean().item() + 0.5 - SIZE / 2) < 0.5


def test_vertex_labels_to_face_labels_majority_and_ties():
    labels = torch.tensor([1, 1, 2, 3, 2])
    faces = torch.tensor([[0, 1, 2],   # 1 1 2 -> 1
                          [2, 0, 1],   # 2 1 1 -> 1
                          [0, 2, 4],   # 1 2 2 -> 2
                          [3, 0, 2],   # 3 1 2 -> 3 (tie: first vertex)
                          [4, 4, 2]])  # 2 2 2 -> 2
    assert vertex_labels_to_face_labels(labels, faces).tolist() == [1, 1, 2, 3, 2]


def test_face_labels_map_labels_pixels_by_the_part_under_them():
    # two adjacent quads sharing the edge x = 32: left part 1, right part 2
    verts = torch.tensor([[8, 8, 2], [32, 8, 2], [56, 8, 2], [8, 40, 2], [32, 40, 2], [56, 40, 2]],
                         dtype=torch.float32)[None]
    faces = torch.tensor([[0, 3, 4], [0, 4, 1], [1, 4, 5], [1, 5, 2]])
    vlab = torch.tensor([1, 2, 2, 1, 2, 2])  # the seam vertices belong to part 2
    flab = torch.tensor([1, 1, 2, 2])
    frag = rasterize(verts, faces, (48, 64))
    lab = face_labels_map(frag, flab)
    assert lab.dtype == torch.long and lab.shape == (1, 48, 64)
    assert (lab[0, 8:40, 8:32] == 1).all()
    assert (lab[0, 8:40, 32:56] == 2).all()
    assert (lab[0, :8] == 0).all() and (lab[0, :, 56:] == 0).all()
    assert (face_labels_map(frag, flab, background=-1)[0, :8] == -1).all()
    # majority over vertices: face [0, 4, 1] has labels 1, 2, 2 -> 2, so the upper-left triangle turns 2
    lab_v = face_labels_map(frag, vertex_labels_to_face_labels(vlab, faces))
    upper = torch.zeros(48, 64, dtype=torch.bool)
    ii, jj = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    upper[(jj < 32) & (ii > 8) & (jj - 8 > (ii - 8) * 0.75 + 0.5)] = True  # above the diagonal
    assert upper.sum() > 100
    assert (lab_v[0][upper] == 2).all()


def test_face_labels_image_paints_a_known_square():
    """Two triangles covering x in [10, 30), y in [5, 25) with label 3: exactly those pixel centres."""
    screen = torch.tensor([[10.0, 5.0, 2.0], [30.0, 5.0, 2.0], [30.0, 25.0, 2.0], [10.0, 25.0, 2.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    labels = face_labels_image(screen, faces, torch.tensor([3, 3]), 40, 50)
    expected = torch.zeros(40, 50, dtype=torch.long)
    expected[5:25, 10:30] = 3
    assert torch.equal(labels, expected)


@pytest.mark.parametrize("offset", [(0.0, 0.0), (-40.0, 25.0), (300.0, 0.0)])
def test_face_labels_image_equals_the_full_size_render(offset):
    """The windowed render is the full-size render bit for bit: inside, partly outside, fully outside."""
    verts, faces = icosphere(3)
    screen = torch.cat([verts[:, :2] * 37.3 + torch.tensor([60.2, 45.7]) + torch.tensor(offset),
                        verts[:, 2:] + 3.0], dim=1)
    labels = (torch.arange(faces.shape[0]) % 5) + 1
    full = face_labels_map(rasterize(screen[None], faces, (90, 130)), labels)[0]
    assert torch.equal(face_labels_image(screen, faces, labels, 90, 130), full)
    assert (full > 0).any() == (offset[0] < 200)


def test_iuv_map_part_index_and_linear_uv_ramps():
    verts, faces = grid_plane(6, 10.0, 6.0, 90.0, 54.0, 3.0)
    x, y = verts[0, :, 0], verts[0, :, 1]
    u = (x - 10.0) / 80.0
    v = (y - 6.0) / 48.0
    part = torch.where(x < 50.0, 4.0, 7.0)  # vertices at x = 50 (the seam column) belong to part 7
    vertex_iuv = torch.stack([part, u, v], -1)
    frag = rasterize(verts, faces, (64, 100))
    iuv = iuv_map(frag, faces, vertex_iuv)
    assert iuv.shape == (1, 3, 64, 100)
    m = frag.mask[0]
    ii, jj = m.nonzero().unbind(1)
    assert torch.allclose(iuv[0, 1][m], (jj + 0.5 - 10.0) / 80.0, atol=1e-5)
    assert torch.allclose(iuv[0, 2][m], (ii + 0.5 - 6.0) / 48.0, atol=1e-5)
    assert set(iuv[0, 0][m].unique().tolist()) == {4.0, 7.0}  # whole part indices, never interpolated
    assert (iuv[0, 0][m & (torch.arange(100) < 36)] == 4).all()
    assert (iuv[0, 0][m & (torch.arange(100) >= 64)] == 7).all()
    assert (iuv[0][:, ~m] == 0).all()
    # batching: two shifted copies give the same maps as one by one
    verts2 = torch.cat([verts, verts + torch.tensor([3.3, -1.7, 0.5])])
    frag2 = rasterize(verts2, faces, (64, 100))
    iuv2 = iuv_map(frag2, faces, vertex_iuv)
    for k in range(2):
        one = iuv_map(rasterize(verts2[k:k + 1], faces, (64, 100)), faces, vertex_iuv)
        assert torch.allclose(iuv2[k:k + 1], one, atol=1e-6)


def test_vertex_normals_of_a_sphere_are_radial():
    v, f = icosphere(3)
    verts = (2.0 * v[None] + torch.tensor([0.5, -1.0, 6.0], dtype=torch.float64)).float()
    n = vertex_normals(verts, f)
    assert n.shape == verts.shape
    assert torch.allclose(n.norm(dim=-1), torch.ones(()), atol=1e-5)
    assert ((n[0] * v.float()).sum(-1) > 0.999).all()
    # flat mesh: every vertex normal is the face normal, pointing to the camera (-z) for this winding
    plane = torch.tensor([[0.0, 0.0, 5.0], [0.0, 1.0, 5.0], [1.0, 0.0, 5.0], [1.0, 1.0, 5.0]])[None]
    pn = vertex_normals(plane, torch.tensor([[0, 1, 2], [2, 1, 3]]))
    assert torch.allclose(pn, torch.tensor([0.0, 0.0, -1.0]).expand(1, 4, 3))


def tilted_square(angle_deg: float, z: float = 5.0, half: float = 1.0):
    """Camera-frame square centred on the optical axis, rotated about the y axis; faces look at the
    camera at angle 0. Returns verts (1, 4, 3), faces (2, 3)."""
    a = math.radians(angle_deg)
    corners = torch.tensor([[-half, -half], [-half, half], [half, -half], [half, half]])
    x = corners[:, 0] * math.cos(a)
    zz = z + corners[:, 0] * math.sin(a)
    verts = torch.stack([x, corners[:, 1], zz], -1)[None]
    return verts, torch.tensor([[0, 1, 2], [2, 1, 3]])


@pytest.mark.parametrize("angle", [0.0, 60.0, 120.0])
def test_shade_follows_the_cosine_law(angle):
    verts, faces = tilted_square(angle)
    frag = rasterize(project(verts, 100.0, (64, 64)), faces, (64, 64))
    color = torch.tensor([0.8, 0.6, 0.4])
    rgb, alpha = shade(frag, faces, verts, color.expand(4, 3), ambient=0.35, diffuse=0.65)
    assert rgb.shape == (1, 3, 64, 64) and alpha.shape == (1, 1, 64, 64)
    m = frag.mask[0]
    assert m.sum() > 100
    assert torch.equal(alpha[0, 0] > 0, m)
    cos = abs(math.cos(math.radians(angle)))  # two-sided: a back face (120 deg) is lit like 60 deg
    expected = color[:, None] * (0.35 + 0.65 * cos)
    assert torch.allclose(rgb[0][:, m], expected.expand(3, int(m.sum())), atol=1e-5)
    assert (rgb[0][:, ~m] == 0).all()


def test_face_on_plane_is_brighter_than_tilted_and_specular_adds_a_highlight():
    values = []
    for angle in (0.0, 45.0):
        verts, faces = tilted_square(angle)
        frag = rasterize(project(verts, 100.0, (64, 64)), faces, (64, 64))
        rgb, _ = shade(frag, faces, verts, torch.ones(1, 4, 3) * 0.5)
        values.append(rgb[0, 0, 32, 32].item())
    assert values[0] > values[1]
    assert values[0] == pytest.approx(0.5 * (0.35 + 0.65), abs=1e-5)
    assert values[1] == pytest.approx(0.5 * (0.35 + 0.65 * math.cos(math.radians(45))), abs=1e-5)
    verts, faces = tilted_square(0.0)
    frag = rasterize(project(verts, 100.0, (64, 64)), faces, (64, 64))
    spec, _ = shade(frag, faces, verts, torch.ones(4, 3) * 0.5, specular=0.3)
    # centre pixel: h ~ (0, 0, -1) = n, so the highlight adds ~0.3
    assert spec[0, 0, 32, 32].item() == pytest.approx(0.5 + 0.3, abs=2e-3)
    assert (spec <= 1).all()


def test_overlay_composites_with_opacity():
    image = torch.full((2, 3, 4, 5), 0.5)
    rgb = torch.rand(2, 3, 4, 5)
    alpha = torch.zeros(2, 1, 4, 5)
    alpha[:, :, 1:3, 2:4] = 1
    out = overlay(image, rgb, alpha, opacity=0.8)
    inside = alpha.expand_as(rgb) > 0
    assert torch.allclose(out[~inside], image[~inside])
    assert torch.allclose(out[inside], 0.2 * image[inside] + 0.8 * rgb[inside])
    assert torch.allclose(overlay(image, rgb, alpha, opacity=1.0)[inside], rgb[inside])


def test_part_palette_is_distinct_with_black_background():
    pal = part_palette(24)
    assert pal.shape == (25, 3)
    assert (pal[0] == 0).all()
    assert (pal >= 0).all() and (pal <= 1).all()
    dist = torch.cdist(pal, pal) + torch.eye(25) * 10
    assert dist.min() > 0.1
    labels = torch.tensor([[[0, 1], [24, 3]]])
    img = colorize_labels(labels, pal)
    assert img.shape == (1, 3, 2, 2)
    assert torch.equal(img[0, :, 1, 0], pal[24])


def test_uint8_image_and_png_round_trip(tmp_path):
    from PIL import Image

    x = torch.rand(3, 7, 9)
    x[0, 0, 0], x[1, 0, 0] = -0.5, 1.5  # clamped
    arr = to_uint8_image(x)
    assert arr.shape == (7, 9, 3) and arr.dtype == np.uint8
    assert arr[0, 0, 0] == 0 and arr[0, 0, 1] == 255
    assert np.array_equal(arr[3, 4], (x[:, 3, 4].clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    path = save_png(tmp_path / "sub" / "pic.png", x)
    assert np.array_equal(np.asarray(Image.open(path)), arr)


def test_render_a_shaded_overlay_picture(tmp_path):
    """End to end: shaded sphere composited on a grey photo, saved as a PNG."""
    verts, faces = sphere_scene([4.0])
    frag = rasterize(project(verts), faces, (SIZE, SIZE))
    rgb, alpha = shade(frag, faces, verts, torch.tensor([0.7, 0.7, 0.9]).expand(verts.shape[1], 3))
    out = overlay(torch.full((1, 3, SIZE, SIZE), 0.2), rgb, alpha)
    c = SIZE // 2
    # the sphere centre faces the light (brightest), its limb is darker but still lit by the ambient term
    assert out[0, 0, c, c] > out[0, 0, c, c + 48] > 0.2 * 0.2 + 0.8 * 0.7 * 0.35 - 1e-3
    assert out[0, 0, 0, 0].item() == pytest.approx(0.2)
    assert save_png(tmp_path / "sphere.png", out[0]).stat().st_size > 0
