"""Build-time fits for the open body model: symmetric decimation, shape PCA, convex joint regressors."""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from scipy.spatial import cKDTree

from body.hierarchy import decimate_to_representatives


def mirror_map(verts: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Index of each vertex's mirror image through the x = 0 plane. (V, 3) -> (V,) int.

    Raises if the mesh is not left/right symmetric within ``tol`` metres.
    """
    dist, idx = cKDTree(verts).query(verts * np.array([-1.0, 1.0, 1.0]))
    if dist.max() > tol:
        raise ValueError(f"mesh is not left/right symmetric: worst mirror mismatch {dist.max():.2e} m")
    return idx


def symmetric_decimation(
    verts: np.ndarray, faces: np.ndarray, target_vertices: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decimate a mirror-symmetric mesh so the result is exactly mirror-symmetric.

    The left half (x >= 0, midline included) is decimated with its border (the midline) kept, then
    mirrored; midline vertices are shared.

    Args:
        verts: (V, 3) symmetric rest-pose vertices; faces: (F, 3) with no face crossing x = 0.
        target_vertices: wanted vertex count of the whole decimated mesh.
    Returns:
        keep: (V',) indices into ``verts``; new_faces: (F', 3) indexing ``keep``;
        mirror: (V',) index of each decimated vertex's mirror image.
    """
    full_mirror = mirror_map(verts)
    midline = full_mirror == np.arange(len(verts))
    left_face = (verts[faces, 0] >= -1e-9).all(1)
    right_face = (verts[faces, 0] <= 1e-9).all(1)
    if not (left_face | right_face).all():
        raise ValueError("faces cross the symmetry plane; cannot decimate symmetrically")
    lf = faces[left_face & ~(right_face & ~left_face)]
    used = np.unique(lf)
    remap = -np.ones(len(verts), dtype=np.int64)
    remap[used] = np.arange(len(used))
    n_mid = int(midline[used].sum())
    half_target = (target_vertices + n_mid) // 2
    keep_half, half_faces = decimate_to_representatives(verts[used], remap[lf], half_target, preserve_border=True)
    keep_left = used[keep_half]
    on_mid = midline[keep_left]
    if on_mid.sum() != n_mid:
        raise RuntimeError(f"decimation moved the midline: {on_mid.sum()} of {n_mid} midline vertices kept")
    side = np.nonzero(~on_mid)[0]
    keep = np.concatenate([keep_left, full_mirror[keep_left[side]]])
    # Index in the new mesh of each half vertex's mirror.
    mirror_of_half = np.arange(len(keep_left))
    mirror_of_half[side] = len(keep_left) + np.arange(len(side))
    mirrored_faces = mirror_of_half[half_faces][:, ::-1]
    new_faces = np.concatenate([half_faces, mirrored_faces])
    mirror = np.arange(len(keep))
    mirror[side] = len(keep_left) + np.arange(len(side))
    mirror[len(keep_left) :] = side
    return keep, new_faces, mirror


def shape_pca(verts: np.ndarray, num_components: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of rest shapes, scaled so that betas ~ N(0, 1).

    Args:
        verts: (N, V, 3) rest-pose bodies in the same pose.
    Returns:
        mean (V, 3), shapedirs (V, 3, K) with shapedirs[..., k] = component_k * std_k,
        explained (K,) cumulative fraction of variance.
    """
    n, v, _ = verts.shape
    mean = verts.mean(0)
    x = (verts - mean).reshape(n, -1)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2 / (n - 1)
    comps = vt[:num_components] * np.sqrt(var[:num_components])[:, None]
    # Deterministic signs: component 0 makes the body taller; others have a positive largest entry.
    height = lambda d: (mean[:, 1] + d.reshape(v, 3)[:, 1]).max() - (mean[:, 1] + d.reshape(v, 3)[:, 1]).min()
    if height(comps[0]) < height(-comps[0]):
        comps[0] *= -1
    for k in range(1, num_components):
        if comps[k][np.abs(comps[k]).argmax()] < 0:
            comps[k] *= -1
    explained = np.cumsum(var)[:num_components] / var.sum()
    return mean, comps.reshape(num_components, v, 3).transpose(1, 2, 0), explained


def fit_convex_regressor(
    verts: np.ndarray, targets: np.ndarray, num_candidates: int = 1000, sum_weight: float = 100.0
) -> np.ndarray:
    """Non-negative, sum-to-one vertex weights per target point, fitted over many bodies.

    For each target k: argmin_w sum_n ||verts_n^T w - targets_n,k||^2 s.t. w >= 0, sum w = 1,
    over the ``num_candidates`` vertices nearest the target on the mean body (NNLS with the
    sum-to-one constraint as a heavily weighted row, then renormalised).

    Args:
        verts: (N, V, 3); targets: (N, K, 3).
    Returns:
        (K, V) regressor.
    """
    n, v, _ = verts.shape
    k_count = targets.shape[1]
    tree = cKDTree(verts.mean(0))
    out = np.zeros((k_count, v))
    num_candidates = min(num_candidates, v)
    for k in range(k_count):
        _, cand = tree.query(targets[:, k].mean(0), k=num_candidates)
        a = verts[:, cand].transpose(0, 2, 1).reshape(n * 3, num_candidates)
        b = targets[:, k].reshape(n * 3)
        a = np.vstack([a, sum_weight * np.ones((1, num_candidates))])
        b = np.concatenate([b, [sum_weight]])
        w, _ = nnls(a, b, maxiter=50 * num_candidates)
        out[k, cand] = w / w.sum()
    return out


def symmetrize_rows(reg: np.ndarray, mirror: np.ndarray, flip_perm: list[int]) -> np.ndarray:
    """Make a (K, V) regressor mirror-consistent: row k on the mirrored mesh equals row flip(k).

    Rows of left/centre targets are kept (centre rows averaged with their mirror); right rows are
    the mirror of the corresponding left rows.
    """
    mirrored = reg[:, mirror]  # mirrored[k, i] = reg[k, mirror[i]]
    out = reg.copy()
    for k, fk in enumerate(flip_perm):
        if fk == k:
            out[k] = 0.5 * (reg[k] + mirrored[k])
        elif k > fk:  # the later of the pair is rebuilt from the earlier one
            out[k] = mirrored[fk]
    return out


def regressor_error_mm(reg: np.ndarray, verts: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Mean and max Euclidean error (mm) of ``reg`` (K, V) on bodies (N, V, 3) vs targets (N, K, 3)."""
    pred = np.einsum("kv,nvd->nkd", reg, verts)
    err = np.linalg.norm(pred - targets, axis=-1) * 1000.0
    return float(err.mean()), float(err.max())
