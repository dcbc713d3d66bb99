"""Mesh hierarchy (GraphCMR layout): the bundled open levels, down/up-sampling of posed bodies,
closest-point projection against brute force, decimation and (de)serialisation."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from body.hierarchy import (
    MeshHierarchy,
    MeshHierarchyArrays,
    adjacency_matrix,
    build_mesh_hierarchy,
    closest_point_on_triangles,
    decimate_to_representatives,
    project_onto_mesh,
)
from body.model import BodyModel

EXPECTED_LEVELS = (6890, 1723, 431)


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: (V, 3) float64 vertices, (F, 3) int64 outward-oriented faces."""
    t = (1.0 + 5 ** 0.5) / 2.0
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
         (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
         (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(i, j):
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(verts), np.array(faces, dtype=np.int64)


def edge_counts(faces: np.ndarray) -> np.ndarray:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_counts=True)[1]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model(assets):
    return BodyModel(assets)


# ------------------------------------------------------------------ the bundled levels
def test_level_vertex_counts(assets):
    counts = assets.hierarchy.num_vertices
    assert len(counts) == 3
    for got, want in zip(counts, EXPECTED_LEVELS):
        assert abs(got - want) <= 0.05 * want, (counts, EXPECTED_LEVELS)
    assert counts[0] == assets.num_vertices
    assert assets.manifest["hierarchy_vertices"] == counts
    h = assets.hierarchy
    for l in range(2):
        assert h.down[l].shape == (counts[l + 1], counts[l])
        assert h.up[l].shape == (counts[l], counts[l + 1])
        assert h.faces[l + 1].max() == counts[l + 1] - 1


def test_down_rows_select_exactly_one_vertex(assets):
    for l, d in enumerate(assets.hierarchy.down):
        d = d.tocsr()
        assert (d.getnnz(axis=1) == 1).all(), l
        np.testing.assert_array_equal(d.data, 1.0)
        cols = d.indices
        assert len(np.unique(cols)) == d.shape[0], f"level {l}: a fine vertex is selected twice"


def test_up_rows_are_convex(assets):
    for l, u in enumerate(assets.hierarchy.up):
        u = u.tocsr()
        assert u.data.min() >= 0.0, l
        np.testing.assert_allclose(np.asarray(u.sum(1)).ravel(), 1.0, atol=1e-5, err_msg=f"level {l}")
        assert u.getnnz(axis=1).max() <= 3  # barycentric: one coarse triangle
        # A fine vertex that was kept at the coarse level is reproduced by its own coarse copy.
        d = assets.hierarchy.down[l].tocoo()
        kept_fine, coarse = d.col, d.row
        np.testing.assert_allclose(u[kept_fine, coarse].A1, 1.0, atol=1e-4)


def test_adjacency_is_symmetric_binary_and_matches_faces(assets):
    h = assets.hierarchy
    for l, a in enumerate(h.adjacency):
        a = a.tocsr()
        assert (a != a.T).nnz == 0, l
        np.testing.assert_array_equal(np.unique(a.data), [1.0])
        assert a.diagonal().sum() == 0
        # Independent: the edge set of the level's faces.
        f = h.faces[l]
        edges = {(int(min(i, j)), int(max(i, j))) for tri in f for i, j in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0]))}
        coo = sp.triu(a, k=1).tocoo()
        assert set(zip(coo.row.tolist(), coo.col.tolist())) == edges, l
        # Every vertex of the level is used by a face (no isolated vertex).
        assert len(np.unique(f)) == a.shape[0]


def test_torch_helpers_match_the_sparse_matrices(model, assets):
    g = torch.Generator().manual_seed(0)
    h = model.mesh_hierarchy
    x = torch.randn(2, EXPECTED_LEVELS[0], 4, generator=g, dtype=torch.float64)
    x0 = x[0].numpy()
    d = assets.hierarchy.down
    u = assets.hierarchy.up
    down1 = h.downsample(x, 0, 1)
    down2 = h.downsample(x, 0, 2)
    np.testing.assert_allclose(down1[0].numpy(), d[0] @ x0, atol=0)
    np.testing.assert_allclose(down2[0].numpy(), d[1] @ (d[0] @ x0), atol=0)
    up = h.upsample(down2, 2, 0)
    np.testing.assert_allclose(up[0].numpy(), u[0] @ (u[1] @ (d[1] @ (d[0] @ x0))), atol=1e-6)
    np.testing.assert_allclose(up[1].numpy(), u[0] @ (u[1] @ (d[1] @ (d[0] @ x[1].numpy()))), atol=1e-6)
    # Row-normalised adjacency: the mean of a vertex and its neighbours (checked by its action).
    for l in range(3):
        na = h.normalized_adjacency(l)
        a = assets.hierarchy.adjacency[l].tocsr()
        y = torch.randn(a.shape[0], 3, generator=g, dtype=torch.float64)
        expected = (a @ y.numpy() + y.numpy()) / (np.asarray(a.sum(1)) + 1.0)
        got = torch.sparse.mm(na.double(), y).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("level", [1, 2])
def test_down_up_sampling_of_posed_bodies_is_accurate(model, level):
    g = torch.Generator().manual_seed(level)
    b = 8
    betas = torch.randn(b, 10, generator=g)
    pose = torch.randn(b, 72, generator=g) * 0.3
    with torch.no_grad():
        v = model(betas, pose[:, 3:], pose[:, :3]).vertices
        back = model.mesh_hierarchy.upsample(model.mesh_hierarchy.downsample(v, 0, level), level, 0)
    err = (back - v).norm(dim=-1) * 1000.0
    mean, p95, worst = err.mean().item(), err.quantile(0.95).item(), err.max().item()
    msg = f"0->{level}->0 error: mean {mean:.2f} mm, 95th percentile {p95:.2f} mm, max {worst:.2f} mm"
    assert mean < 10.0, msg
    assert p95 < 25.0, msg
    # Not vacuous: the coarse level genuinely loses detail.
    assert mean > 0.1, msg


# ------------------------------------------------------------------ closest point on triangles
def _closest_on_segment(p, a, b):
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.einsum("ij,ij->i", ab, ab), 0.0, 1.0)
    return a + t[:, None] * ab


def brute_closest_point(p, a, b, c):
    """Independent closest point: projection onto the plane when it falls inside, else the nearest
    point of the three edges."""
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    q = p - np.einsum("ij,ij->i", p - a, n)[:, None] * n
    out = np.empty_like(p)
    for i in range(len(p)):
        m = np.stack([b[i] - a[i], c[i] - a[i]], axis=1)  # (3, 2)
        (s, t), *_ = np.linalg.lstsq(m, q[i] - a[i], rcond=None)
        if s >= 0 and t >= 0 and s + t <= 1:
            out[i] = q[i]
        else:
            cands = [_closest_on_segment(p[i : i + 1], x[i : i + 1], y[i : i + 1])[0]
                     for x, y in ((a, b), (b, c), (c, a))]
            out[i] = min(cands, key=lambda z: np.linalg.norm(z - p[i]))
    return out


def test_closest_point_on_triangles_matches_brute_force():
    rng = np.random.default_rng(0)
    n = 400
    a, b, c = (rng.normal(size=(n, 3)) for _ in range(3))
    p = rng.normal(size=(n, 3)) * 2.0  # far and near points: every Voronoi region gets hit
    w = rng.dirichlet(np.ones(3), size=100)  # and some just off the interior
    normal = np.cross(b[:100] - a[:100], c[:100] - a[:100])
    p[:100] = w[:, :1] * a[:100] + w[:, 1:2] * b[:100] + w[:, 2:] * c[:100] + 0.3 * rng.normal(size=(100, 1)) * normal
    bary = closest_point_on_triangles(p, a, b, c)
    assert bary.min() >= -1e-12
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-12)
    closest = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    np.testing.assert_allclose(closest, brute_closest_point(p, a, b, c), atol=1e-9)
    # Every region was exercised: vertices (two zero weights), edges (one zero), interior (none).
    zeros = (bary < 1e-12).sum(1)
    assert (zeros == 2).sum() > 20 and (zeros == 1).sum() > 20 and (zeros == 0).sum() > 20, np.bincount(zeros)
    # Dense sampling of each triangle never finds a closer point.
    k = 40
    i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
    keep = i + j <= k
    w = np.stack([i[keep], j[keep]], 1) / k  # weights of b and c
    samples = a[:, None] + w[None, :, :1] * (b - a)[:, None] + w[None, :, 1:] * (c - a)[:, None]
    dense = np.linalg.norm(samples - p[:, None], axis=-1).min(1)
    got = np.linalg.norm(closest - p, axis=1)
    assert (got <= dense + 1e-12).all()


def test_closest_point_on_triangles_special_points():
    a = np.array([[0.0, 0.0, 0.0]] * 4)
    b = np.array([[1.0, 0.0, 0.0]] * 4)
    c = np.array([[0.0, 1.0, 0.0]] * 4)
    p = np.array([[0.0, 0.0, 0.0],     # on vertex a
                  [0.5, 0.5, 2.0],     # above the middle of edge bc
                  [0.2, 0.3, -1.0],    # below the interior
                  [2.0, 2.0, 0.0]])    # in the plane, beyond edge bc
    bary = closest_point_on_triangles(p, a, b, c)
    np.testing.assert_allclose(bary, [[1, 0, 0], [0, 0.5, 0.5], [0.5, 0.2, 0.3], [0, 0.5, 0.5]], atol=1e-12)


def _brute_project(points, verts, faces):
    tri = verts[faces]
    best = np.full(len(points), np.inf)
    for f in range(len(faces)):
        a, b, c = (np.repeat(tri[f, i][None], len(points), 0) for i in range(3))
        best = np.minimum(best, np.linalg.norm(brute_closest_point(points, a, b, c) - points, axis=1))
    return best


def test_project_onto_mesh_matches_brute_force():
    rng = np.random.default_rng(1)
    verts, faces = icosphere(1)  # 42 vertices, 80 faces
    verts = verts * rng.uniform(0.7, 1.3, size=(len(verts), 1))  # bumpy, irregular triangles
    points = rng.uniform(-1.5, 1.5, size=(60, 3))
    fidx, bary = project_onto_mesh(points, verts, faces, candidates=len(faces))
    assert bary.min() >= -1e-12
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-12)
    closest = np.einsum("pk,pkd->pd", bary, verts[faces[fidx]])
    np.testing.assert_allclose(np.linalg.norm(closest - points, axis=1), _brute_project(points, verts, faces), atol=1e-9)


def test_project_onto_mesh_default_candidates_on_a_smooth_mesh():
    """With the default candidate count, points near a smooth mesh project exactly."""
    rng = np.random.default_rng(2)
    verts, faces = icosphere(2)  # 320 faces
    d = rng.normal(size=(50, 3))
    points = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.9, 1.1, size=(50, 1))
    fidx, bary = project_onto_mesh(points, verts, faces)
    closest = np.einsum("pk,pkd->pd", bary, verts[faces[fidx]])
    np.testing.assert_allclose(np.linalg.norm(closest - points, axis=1), _brute_project(points, verts, faces), atol=1e-9)


# ------------------------------------------------------------------ decimation
def test_decimate_to_representatives_on_an_icosphere():
    verts, faces = icosphere(4)  # 2,562 vertices
    target = 600
    keep, new_faces = decimate_to_representatives(verts, faces, target)
    assert abs(len(keep) - target) <= 6, len(keep)
    assert len(np.unique(keep)) == len(keep)
    assert keep.min() >= 0 and keep.max() < len(verts)
    # The coarse mesh indexes its own vertices, every one of them used, and is still a closed surface
    # of a sphere's topology (every edge in two faces up to a few decimation flaps; V - E + F = 2).
    assert new_faces.min() == 0 and new_faces.max() == len(keep) - 1
    assert len(np.unique(new_faces)) == len(keep)
    counts = edge_counts(new_faces)
    assert (counts % 2 == 0).all() and (counts == 2).mean() > 0.99, np.bincount(counts)
    # Representatives are original vertices, spread over the whole sphere: every original vertex
    # has a kept vertex nearby (coarse edge length ~ sqrt(4 pi / 600 * 2.3) ~ 0.22).
    kept = verts[keep]
    np.testing.assert_allclose(np.linalg.norm(kept, axis=1), 1.0, atol=1e-12)
    nearest = np.linalg.norm(verts[:, None] - kept[None], axis=-1).min(1)
    assert nearest.max() < 0.25, nearest.max()
    # Coarse triangles are consistently oriented outwards, like the input.
    tri = kept[new_faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", normals, tri.mean(1)) > 0).mean() > 0.99


def test_build_mesh_hierarchy_on_an_icosphere():
    verts, faces = icosphere(4)
    h = build_mesh_hierarchy(verts, faces, (640, 160))
    assert [abs(n - t) <= 4 for n, t in zip(h.num_vertices[1:], (640, 160))] == [True, True], h.num_vertices
    x = verts
    for l in range(2):
        coarse = h.down[l] @ x
        back = h.up[l] @ coarse
        # Up-sampled points lie on the coarse mesh: inside the unit sphere, but close to it.
        r = np.linalg.norm(back, axis=1)
        assert (r <= 1 + 1e-9).all() and r.min() > 0.9, (l, r.min())
        x = coarse
    np.testing.assert_array_equal(h.adjacency[1].toarray(), adjacency_matrix(h.faces[1], h.num_vertices[1]).toarray())


# ------------------------------------------------------------------ serialisation
def _assert_same_hierarchy(a: MeshHierarchyArrays, b: MeshHierarchyArrays, exact=True):
    assert len(a.faces) == len(b.faces)
    for fa, fb in zip(a.faces, b.faces):
        np.testing.assert_array_equal(fa, fb)
    for name in ("adjacency", "down", "up"):
        for ma, mb in zip(getattr(a, name), getattr(b, name)):
            assert ma.shape == mb.shape
            diff = abs(ma.tocsr() - mb.tocsr())
            if exact:
                assert diff.nnz == 0 or diff.max() == 0, name
            else:
                assert diff.max() < 1e-6, name


def test_npz_round_trip_is_exact(assets, tmp_path):
    h = assets.hierarchy
    again = MeshHierarchyArrays.from_npz_dict(h.to_npz_dict())
    _assert_same_hierarchy(h, again)
    # Through an actual file (what the asset cache does), and without pickles.
    path = tmp_path / "h.npz"
    np.savez_compressed(path, **h.to_npz_dict())
    with np.load(path, allow_pickle=False) as d:
        _assert_same_hierarchy(h, MeshHierarchyArrays.from_npz_dict(d))
    # The torch module built from the reloaded arrays samples identically.
    x = torch.randn(1, h.num_vertices[0], 3, generator=torch.Generator().manual_seed(0))
    m1, m2 = MeshHierarchy(h), MeshHierarchy(again)
    torch.testing.assert_close(m2.upsample(m2.downsample(x, 0, 2), 2, 0), m1.upsample(m1.downsample(x, 0, 2), 2, 0), atol=0, rtol=0)


def test_npz_round_trip_of_a_fresh_hierarchy():
    """A freshly built hierarchy (float64 weights) is stored in float32: equal to float32 precision,
    and exact from then on."""
    verts, faces = icosphere(3)
    h = build_mesh_hierarchy(verts, faces, (160, 40))
    once = MeshHierarchyArrays.from_npz_dict(h.to_npz_dict())
    _assert_same_hierarchy(h, once, exact=False)
    _assert_same_hierarchy(once, MeshHierarchyArrays.from_npz_dict(once.to_npz_dict()))
