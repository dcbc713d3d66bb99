"""Checks of body/raster.py against analytic geometry: projected sphere areas, z-buffer order,
barycentrics, perspective-correct depth, watertightness, batch and chunk invariance."""
from __future__ import annotations

import math

import pytest
import torch

from body.raster import Fragments, interpolate_vertex_attributes, rasterize

from tests.body.scenes import (FOCAL, SIZE, analytic_sphere_area, holes, icosphere, project, quad,
                               sphere_scene)


def test_sphere_silhouette_area_matches_projected_sphere():
    verts, faces = sphere_scene([4.0])
    assert faces.shape[0] >= 2000
    frag = rasterize(project(verts), faces, (SIZE, SIZE))
    assert isinstance(frag, Fragments)
    assert frag.pix_to_face.shape == (1, SIZE, SIZE) and frag.pix_to_face.dtype == torch.long
    area = frag.mask.sum().item()
    expected = analytic_sphere_area(4.0)  # ~8,378 px: a disc ~103 px across
    assert abs(area / expected - 1) < 0.01
    # The polygonal sphere lies between its inscribed sphere (radius = smallest face-plane distance)
    # and the true (circumscribed) one.
    v, f = icosphere(4)
    tri = v[f]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    r_inscribed = ((normal / normal.norm(dim=1, keepdim=True)) * tri[:, 0]).sum(1).min().item()
    assert 0.99 < r_inscribed < 1.0
    assert analytic_sphere_area(4.0, r_inscribed) * 0.995 < area < expected * 1.005


def test_sphere_silhouette_area_batch_of_three_distances():
    dists = [3.5, 4.0, 5.0]
    verts, faces = sphere_scene(dists, seed=1)
    frag = rasterize(project(verts), faces, (SIZE, SIZE))
    areas = frag.mask.sum(dim=(1, 2)).tolist()
    for a, d in zip(areas, dists):
        assert abs(a / analytic_sphere_area(d) - 1) < 0.01, (a, d)
    assert areas[0] > areas[1] > areas[2]
    # depth: the nearest point of the sphere is at d - r (up to tessellation), all depths in [d - r, d + r]
    for k, d in enumerate(dists):
        z = frag.zbuf[k][frag.mask[k]]
        assert z.min().item() == pytest.approx(d - 1.0, abs=5e-3)
        assert z.max().item() <= d + 1e-4
    assert torch.isinf(frag.zbuf[~frag.mask]).all()
    assert (frag.bary[~frag.mask] == 0).all()
    assert (frag.pix_to_face[~frag.mask] == -1).all()


@pytest.mark.parametrize("size", [224, 56])
def test_closed_mesh_has_no_pinholes(size):
    focal = FOCAL * size / SIZE
    verts, faces = sphere_scene([2.5, 4.0, 6.0, 3.0], level=4, seed=2)
    verts = verts + torch.tensor([0.13, -0.07, 0.0])  # off-centre: edges cross pixel centres arbitrarily
    frag = rasterize(project(verts, focal, (size, size)), faces, (size, size))
    assert frag.mask.sum() > 0
    assert holes(frag.mask).item() == 0
    # with back faces culled the front surface alone must still be watertight
    culled = rasterize(project(verts, focal, (size, size)), faces, (size, size), cull_backfaces=True)
    assert torch.equal(culled.mask, frag.mask)
    assert torch.equal(culled.pix_to_face, frag.pix_to_face)


def test_grid_with_vertices_on_pixel_centres_is_watertight():
    """Worst case for tie rules: every vertex sits on a pixel centre and every edge passes through pixel
    centres (including the diagonals)."""
    n = 20  # grid of n x n cells, 1 px each, vertices at centres of pixels 5..25
    ii, jj = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    verts = torch.stack([jj + 5.5, ii + 5.5, torch.full_like(ii, 2.0)], -1).float().view(1, -1, 3)
    idx = (ii * (n + 1) + jj)[:-1, :-1].reshape(-1)
    faces = torch.cat([torch.stack([idx, idx + n + 1, idx + n + 2], 1),
                       torch.stack([idx, idx + n + 2, idx + 1], 1)])
    # alternate the diagonal direction and the winding to mix edge orientations
    flip = torch.arange(faces.shape[0]) % 3 == 0
    faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    frag = rasterize(verts, faces, (32, 32))
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[5:26, 5:26] = True  # closed triangles: centres on the border are covered
    assert torch.equal(frag.mask[0], expected)
    assert torch.allclose(frag.zbuf[0][expected], torch.tensor(2.0))


def test_pixel_centres_on_shared_edges_are_never_dropped():
    """Two triangles share an edge whose line passes (mathematically) through a pixel centre, with
    endpoints that are not exactly representable; the centre must be covered by at least one of them.
    (Evaluating the edge function from each face's own start vertex loses ~0.5 % of these.)"""
    g = torch.Generator().manual_seed(0)
    n = 5000
    centre = torch.tensor([4.5, 4.5])
    ang = torch.rand(n, generator=g) * 2 * math.pi
    d = torch.stack([ang.cos(), ang.sin()], -1)
    normal = torch.stack([-d[:, 1], d[:, 0]], -1)
    a = centre + (torch.rand(n, 1, generator=g) * 3 + 0.5) * d
    b = centre - (torch.rand(n, 1, generator=g) * 3 + 0.5) * d
    p = centre + (torch.rand(n, 1, generator=g) * 3 + 0.5) * normal + 0.3 * d
    q = centre - (torch.rand(n, 1, generator=g) * 3 + 0.5) * normal - 0.2 * d
    verts = torch.cat([torch.stack([a, b, p, q], 1), torch.full((n, 4, 1), 2.0)], -1).float()
    frag = rasterize(verts, torch.tensor([[0, 1, 2], [1, 0, 3]]), (9, 9))
    assert frag.mask[:, 4, 4].all()


# ------------------------------------------------------------------------------------------------ z-buffer


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_quad_wins_regardless_of_face_order(near_first):
    va, fa = quad(10, 10, 40, 40, 2.0)  # faces 0, 1 (near)
    vb, fb = quad(25, 20, 60, 50, 3.0, face_offset=4)  # faces 2, 3 (far)
    verts = torch.cat([va, vb])[None]
    faces = torch.cat([fa, fb]) if near_first else torch.cat([fb, fa])
    near_ids = {0, 1} if near_first else {2, 3}
    frag = rasterize(verts, faces, (64, 64))
    p2f = frag.pix_to_face[0]
    overlap = torch.zeros(64, 64, dtype=torch.bool)
    overlap[20:40, 25:40] = True  # pixel centres inside both quads
    assert all(int(f) in near_ids for f in p2f[overlap].unique())
    assert torch.allclose(frag.zbuf[0][overlap], torch.tensor(2.0))
    far_only = torch.zeros(64, 64, dtype=torch.bool)
    far_only[20:50, 40:60] = True
    assert all(int(f) not in near_ids for f in p2f[far_only].unique())
    assert torch.allclose(frag.zbuf[0][far_only], torch.tensor(3.0))

    # swapping the depths swaps the winner in the overlap
    verts2 = verts.clone()
    verts2[0, :4, 2], verts2[0, 4:, 2] = 3.0, 2.0
    frag2 = rasterize(verts2, faces, (64, 64))
    assert all(int(f) not in near_ids for f in frag2.pix_to_face[0][overlap].unique())
    assert torch.allclose(frag2.zbuf[0][overlap], torch.tensor(2.0))


def test_near_plane_and_degenerate_faces_are_skipped():
    v, f = quad(0, 0, 32, 32, 2.0)
    behind = torch.tensor([[5.0, 5.0, -1.0], [20.0, 5.0, 2.0], [5.0, 20.0, 2.0]])
    degenerate = torch.tensor([[1.0, 1.0, 1.0], [10.0, 10.0, 1.0], [20.0, 20.0, 1.0]])
    verts = torch.cat([v, behind, degenerate])[None]
    faces = torch.cat([f, torch.tensor([[4, 5, 6], [7, 8, 9]])])
    frag = rasterize(verts, faces, (32, 32))
    assert frag.mask.all()
    assert set(frag.pix_to_face.unique().tolist()) == {0, 1}


def test_large_faces_cover_the_whole_image():
    """Faces far bigger than the image (a close-up) take the chunked large-box path."""
    big = torch.tensor([[-500.0, -400.0, 1.0], [900.0, -300.0, 1.0], [200.0, 1200.0, 1.0]])
    frag = rasterize(big[None], torch.tensor([[0, 1, 2]]), (96, 128), chunk_size=4096)
    assert frag.mask.all()
    assert torch.allclose(frag.zbuf, torch.tensor(1.0))
    xy = interpolate_vertex_attributes(frag, torch.tensor([[0, 1, 2]]), big[:, :2])
    jj, ii = torch.meshgrid(torch.arange(128.0) + 0.5, torch.arange(96.0) + 0.5, indexing="xy")
    assert torch.allclose(xy[0, ..., 0], jj, atol=1e-3) and torch.allclose(xy[0, ..., 1], ii, atol=1e-3)


def test_cull_backfaces_keeps_faces_looking_at_the_camera():
    # camera frame: a face looks at the camera when its CCW normal points to -z
    front = torch.tensor([[0.0, 0.0, 5.0], [0.0, 1.0, 5.0], [1.0, 0.0, 5.0]])  # normal (0, 0, -1)
    back = torch.tensor([[0.0, 0.0, 5.0], [1.0, 0.0, 5.0], [0.0, 1.0, 5.0]])  # normal (0, 0, +1)
    faces = torch.tensor([[0, 1, 2]])
    for tri, kept in ((front, True), (back, False)):
        screen = project(tri[None], 50.0, (32, 32))
        assert rasterize(screen, faces, (32, 32)).mask.any()
        assert bool(rasterize(screen, faces, (32, 32), cull_backfaces=True).mask.any()) == kept


# ------------------------------------------------------------------------------------------------ barycentrics


def test_barycentrics_reproduce_pixel_centres_on_constant_depth_faces():
    g = torch.Generator().manual_seed(3)
    n = 40
    xy = torch.rand(n, 3, 2, generator=g) * 60 + 2  # random triangles, many overlapping
    z = (torch.rand(n, 1, generator=g) * 5 + 1).expand(n, 3)  # constant depth per face
    verts = torch.cat([xy, z[..., None]], -1).view(1, 3 * n, 3)
    faces = torch.arange(3 * n).view(n, 3)
    frag = rasterize(verts, faces, (64, 64))
    m = frag.mask[0]
    assert m.sum() > 1000
    bary = frag.bary[0][m]
    assert (bary >= -1e-5).all()
    assert torch.allclose(bary.sum(-1), torch.ones(()), atol=1e-5)
    pos = interpolate_vertex_attributes(frag, faces, verts[..., :2])[0][m]
    ii, jj = m.nonzero().unbind(1)
    assert (pos[:, 0] - (jj + 0.5)).abs().max() < 1e-3
    assert (pos[:, 1] - (ii + 0.5)).abs().max() < 1e-3
    # the winner is the nearest face covering the pixel centre
    zmin = torch.full((64, 64), math.inf)
    jc, ic = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="xy")
    for k in range(n):  # brute-force reference (a test may loop)
        a, b, c = xy[k].double()
        d = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        l1 = ((jc - a[0]) * (c[1] - a[1]) - (ic - a[1]) * (c[0] - a[0])) / d
        l2 = ((b[0] - a[0]) * (ic - a[1]) - (b[1] - a[1]) * (jc - a[0])) / d
        inside = (l1 > 1e-6) & (l2 > 1e-6) & (1 - l1 - l2 > 1e-6)
        zmin = torch.where(inside, torch.minimum(zmin, z[k, 0].expand(64, 64)), zmin)
    strict = torch.isfinite(zmin)
    assert m[strict].all()
    assert torch.allclose(frag.zbuf[0][strict], zmin[strict])


def test_perspective_correct_depth_on_a_tilted_plane():
    # plane n . X = c through (0, 0, 5), tilted about both x and y axes, seen at a grazing-ish angle
    n = torch.tensor([0.5, -0.3, -1.0], dtype=torch.float64)
    n = n / n.norm()
    c = float(n @ torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64))
    u_axis = torch.linalg.cross(n, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    u_axis = u_axis / u_axis.norm()
    v_axis = torch.linalg.cross(n, u_axis)
    corners = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64) * 2.5
    cam = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64) + corners[:, :1] * u_axis + corners[:, 1:] * v_axis
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    frag = rasterize(project(cam[None].float()), faces, (SIZE, SIZE))
    m = frag.mask[0]
    assert m.sum() > 5000
    ii, jj = m.nonzero().unbind(1)
    ray = torch.stack([(jj + 0.5 - SIZE / 2) / FOCAL, (ii + 0.5 - SIZE / 2) / FOCAL, torch.ones_like(ii)], -1).double()
    z_true = c / (ray @ n)  # ray (x/z, y/z, 1) * t hits the plane at depth t
    assert torch.allclose(frag.zbuf[0][m].double(), z_true, rtol=1e-5)
    # interpolating camera-space z (and x, y) with the barycentrics lands on the ray through the centre
    p = interpolate_vertex_attributes(frag, faces, cam.float())[0][m].double()
    assert torch.allclose(p[:, 2], z_true, rtol=1e-5)
    assert torch.allclose(p[:, :2] / p[:, 2:], ray[:, :2], atol=1e-3 / FOCAL)
    assert (frag.bary[0][m] >= 0).all()
    # the plane spans a wide depth range, so screen-space (affine) interpolation would be far off
    assert z_true.max() / z_true.min() > 1.5


# ------------------------------------------------------------------------------------------------ invariance


def test_batch_and_chunk_size_do_not_change_the_result():
    verts, faces = sphere_scene([2.2, 3.0, 4.5], level=3, seed=4)
    verts = verts + torch.tensor([[[0.3, 0.0, 0.0]], [[-0.2, 0.4, 0.0]], [[0.0, 0.0, 0.0]]])
    screen = project(verts, size=(96, 128))
    full = rasterize(screen, faces, (96, 128))
    for chunk in (97, 4096):
        other = rasterize(screen, faces, (96, 128), chunk_size=chunk)
        assert torch.equal(other.pix_to_face, full.pix_to_face)
        assert torch.allclose(other.bary, full.bary, atol=1e-5)
        assert torch.equal(other.zbuf, full.zbuf)
    for k in range(3):
        one = rasterize(screen[k:k + 1], faces, (96, 128))
        assert torch.equal(one.pix_to_face, full.pix_to_face[k:k + 1])
        assert torch.allclose(one.bary, full.bary[k:k + 1], atol=1e-5)
        assert torch.allclose(one.zbuf, full.zbuf[k:k + 1], atol=1e-5)


def test_interpolate_shared_and_batched_attributes_agree():
    verts, faces = sphere_scene([3.0, 3.5], level=2, seed=5)
    frag = rasterize(project(verts, 60.0, (48, 48)), faces, (48, 48))
    attrs = torch.randn(verts.shape[1], 5)
    shared = interpolate_vertex_attributes(frag, faces, attrs)
    batched = interpolate_vertex_attributes(frag, faces, attrs.expand(2, -1, -1))
    assert shared.shape == (2, 48, 48, 5)
    assert torch.allclose(shared, batched)
    assert (shared[~frag.mask] == 0).all()
    # a constant attribute interpolates to itself
    ones = interpolate_vertex_attributes(frag, faces, torch.ones(verts.shape[1], 1))
    assert torch.allclose(ones[frag.mask], torch.ones(()), atol=1e-6)
    # integer attributes are interpolated as floats
    ints = interpolate_vertex_attributes(frag, faces, torch.full((verts.shape[1], 1), 3))
    assert ints.dtype == torch.float32 and torch.allclose(ints[frag.mask], torch.tensor(3.0))


def test_bary_and_zbuf_are_differentiable():
    verts, faces = sphere_scene([3.0], level=2)
    screen = project(verts, 60.0, (48, 48)).requires_grad_(True)
    frag = rasterize(screen, faces, (48, 48))
    (frag.zbuf[frag.mask].sum() + frag.bary[..., 0].sum()).backward()
    assert screen.grad is not None and torch.isfinite(screen.grad).all() and screen.grad.abs().sum() > 0


def test_float64_input_gives_the_same_coverage():
    verts, faces = sphere_scene([3.0], level=3, seed=6)
    f32 = rasterize(project(verts), faces, (SIZE, SIZE))
    f64 = rasterize(project(verts.double()), faces, (SIZE, SIZE))
    assert f64.bary.dtype == torch.float64
    assert (f32.mask != f64.mask).sum() <= 2  # only pixel centres within float32 rounding of an edge
    both = f32.mask & f64.mask & (f32.pix_to_face == f64.pix_to_face)
    assert torch.allclose(f32.zbuf[both].double(), f64.zbuf[both], rtol=1e-5)
