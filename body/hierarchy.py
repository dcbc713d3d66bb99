"""Mesh hierarchy in GraphCMR's layout: per level faces, down-sampling ``D`` (pick a vertex),
up-sampling ``U`` (barycentric), adjacency ``A``.

Level 0 is the full mesh (SMPL-sized, ~6,890 vertices); levels 1 and 2 have ~1,723 and ~431.
Down-sampling selects one original vertex per decimation cluster (so ``D`` has a single 1 per row,
as GraphCMR's ``D`` matrices do); up-sampling expresses each fine vertex by the barycentric
coordinates of its closest point on the coarse mesh.

Everything here is build-time numpy/scipy except :class:`MeshHierarchy`'s torch helpers, which the
networks use. Quadric decimation is ``fast-simplification``'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import fast_simplification
import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree


# ----------------------------------------------------------------------------------------------
# Decimation with representatives
# ----------------------------------------------------------------------------------------------
def decimate_to_representatives(
    verts: np.ndarray, faces: np.ndarray, target_vertices: int, preserve_border: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-decimate a mesh and keep, for each decimated vertex, one original vertex.

    Args:
        verts: (V, 3) float vertex positions.
        faces: (F, 3) int triangles.
        target_vertices: wanted vertex count of the decimated mesh (hit within a few vertices).
        preserve_border: keep open borders intact (used for symmetric half-mesh decimation).
    Returns:
        keep: (V',) int indices into ``verts`` of the representative vertices.
        new_faces: (F', 3) int triangles indexing ``keep`` (i.e. the decimated mesh is
            ``verts[keep], new_faces``).
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int32)
    n_faces = len(faces)
    # Closed genus-0 meshes have F = 2 V - 4; search the face budget that lands on the vertex target.
    ratio = n_faces / len(verts)
    lo, hi = 4, n_faces - 1
    guess = int(round(target_vertices * ratio))
    best = None
    for _ in range(24):
        guess = int(min(max(guess, lo), hi))
        dec_pts, dec_faces, collapses = fast_simplification.simplify(
            verts, faces, target_count=guess, return_collapses=True, preserve_border=preserve_border
        )
        n = len(dec_pts)
        if best is None or abs(n - target_vertices) < abs(best[0] - target_vertices):
            best = (n, dec_pts, collapses)
        if n == target_vertices:
            break
        if n < target_vertices:
            lo = guess + 1
        else:
            hi = guess - 1
        if lo > hi:
            break
        guess = guess + int(round((target_vertices - n) * ratio * 0.5)) or (1 if n < target_vertices else -1)
    _, dec_pts, collapses = best
    pts, new_faces, mapping = fast_simplification.replay_simplification(verts, faces, collapses)
    n_new = len(pts)
    # Representative of each cluster: the original vertex closest to the decimated position.
    valid = mapping >= 0
    orig = np.nonzero(valid)[0]
    cluster = mapping[valid]
    dist = np.linalg.norm(verts[orig] - pts[cluster], axis=1)
    order = np.lexsort((dist, cluster))
    first = np.ones(len(order), dtype=bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    keep = np.empty(n_new, dtype=np.int64)
    keep[cluster[order][first]] = orig[order][first]
    # Quadric decimation can leave a few back-to-back "flap" face pairs on coarse levels (5 and 6 of
    # the open model's 3,432 and 846 faces). They are kept: removing them would orphan vertices, and
    # they change neither the adjacency nor renders.
    return keep, np.asarray(new_faces, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Closest point on a triangle mesh (for barycentric up-sampling)
# ----------------------------------------------------------------------------------------------
def closest_point_on_triangles(
    points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """Barycentric coordinates of the closest point on triangle (a, b, c) to each point.

    Ericson, Real-Time Collision Detection, 5.1.5, vectorised over N point/triangle pairs.

    Args:
        points, a, b, c: (N, 3).
    Returns:
        (N, 3) barycentric weights (u, v, w) with closest = u a + v b + w c.
    """
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = points - b
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = points - c
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    n = len(points)
    bary = np.zeros((n, 3))
    done = np.zeros(n, dtype=bool)

    def assign(mask, u, v, w):
        m = mask & ~done
        bary[m, 0], bary[m, 1], bary[m, 2] = u[m], v[m], w[m]
        done[m] = True

    one, zero = np.ones(n), np.zeros(n)
    assign((d1 <= 0) & (d2 <= 0), one, zero, zero)  # vertex a
    assign((d3 >= 0) & (d4 <= d3), zero, one, zero)  # vertex b
    assign((d6 >= 0) & (d5 <= d6), zero, zero, one)  # vertex c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d1 / (d1 - d3)
        assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t, t, zero)  # edge ab
        t = d2 / (d2 - d6)
        assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t, zero, t)  # edge ac
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        assign((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), zero, 1 - t, t)  # edge bc
        denom = 1.0 / (va + vb + vc)
        v, w = vb * denom, vc * denom
    assign(np.ones(n, dtype=bool), 1 - v - w, v, w)  # interior
    return bary


def project_onto_mesh(
    points: np.ndarray, verts: np.ndarray, faces: np.ndarray, candidates: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Closest point on a mesh for each query point, as (face index, barycentric weights).

    Candidate faces are the ``candidates`` nearest by centroid, which is exact for the smooth,
    similarly-sized triangles of body meshes.

    Args:
        points: (P, 3); verts: (V, 3); faces: (F, 3).
    Returns:
        face_idx: (P,) int; bary: (P, 3) float.
    """
    tri = verts[faces]
    k = min(candidates, len(faces))
    _, cand = cKDTree(tri.mean(1)).query(points, k=k)
    cand = cand.reshape(len(points), k)
    p = np.repeat(points, k, axis=0)
    f = cand.reshape(-1)
    bary = closest_point_on_triangles(p, tri[f, 0], tri[f, 1], tri[f, 2])
    closest = np.einsum("nk,nkd->nd", bary, tri[f])
    dist = np.linalg.norm(closest - p, axis=1).reshape(len(points), k)
    best = dist.argmin(1)
    rows = np.arange(len(points))
    return cand[rows, best], bary.reshape(len(points), k, 3)[rows, best]


# ----------------------------------------------------------------------------------------------
# Sparse operators
# ----------------------------------------------------------------------------------------------
def adjacency_matrix(faces: np.ndarray, n_verts: int) -> sp.csr_matrix:
    """Binary symmetric vertex adjacency (no self-loops) of a triangle mesh. (V, V)"""
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    a = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_verts, n_verts)).tocsr()
    a.data[:] = 1.0
    return a


def normalized_adjacency(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """Row-normalised adjacency with self-loops, the graph convolution operator. (V, V)"""
    a = adjacency.tocsr() + sp.identity(adjacency.shape[0], format="csr")
    a.data[:] = 1.0
    deg = np.asarray(a.sum(1)).ravel()
    return (sp.diags(1.0 / deg) @ a).tocsr()


def selection_matrix(keep: np.ndarray, n_verts: int) -> sp.csr_matrix:
    """Down-sampling by selection: row i has a 1 at column keep[i]. (V', V)"""
    n = len(keep)
    return sp.csr_matrix((np.ones(n), (np.arange(n), keep)), shape=(n, n_verts))


def barycentric_matrix(face_idx: np.ndarray, bary: np.ndarray, faces: np.ndarray, n_coarse: int) -> sp.csr_matrix:
    """Up-sampling by barycentric interpolation on the coarse mesh. (V_fine, V_coarse)"""
    rows = np.repeat(np.arange(len(face_idx)), 3)
    cols = faces[face_idx].reshape(-1)
    return sp.csr_matrix((bary.reshape(-1), (rows, cols)), shape=(len(face_idx), n_coarse))


# ----------------------------------------------------------------------------------------------
# The hierarchy
# ----------------------------------------------------------------------------------------------
@dataclass
class MeshHierarchyArrays:
    """Plain arrays of a mesh hierarchy (what is saved in an asset set).

    faces[l]: (F_l, 3); adjacency[l]: binary (V_l, V_l); down[l]: (V_{l+1}, V_l); up[l]: (V_l, V_{l+1}).
    """

    faces: list[np.ndarray]
    adjacency: list[sp.csr_matrix]
    down: list[sp.csr_matrix]
    up: list[sp.csr_matrix]

    @property
    def num_vertices(self) -> list[int]:
        return [a.shape[0] for a in self.adjacency]

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        """Flatten to pickle-free arrays: sparse matrices as (row, col, value, shape)."""
        out: dict[str, np.ndarray] = {"levels": np.array(len(self.faces))}
        for name, mats in (("A", self.adjacency), ("D", self.down), ("U", self.up)):
            for l, m in enumerate(mats):
                coo = m.tocoo()
                out[f"{name}{l}_row"] = coo.row.astype(np.int32)
                out[f"{name}{l}_col"] = coo.col.astype(np.int32)
                out[f"{name}{l}_val"] = coo.data.astype(np.float32)
                out[f"{name}{l}_shape"] = np.array(coo.shape, dtype=np.int64)
        for l, f in enumerate(self.faces):
            out[f"F{l}"] = f.astype(np.int32)
        return out

    @classmethod
    def from_npz_dict(cls, d) -> "MeshHierarchyArrays":
        levels = int(d["levels"])

        def mat(name, l):
            return sp.csr_matrix(
                (d[f"{name}{l}_val"].astype(np.float64), (d[f"{name}{l}_row"], d[f"{name}{l}_col"])),
                shape=tuple(d[f"{name}{l}_shape"]),
            )

        return cls(
            faces=[np.asarray(d[f"F{l}"], dtype=np.int64) for l in range(levels)],
            adjacency=[mat("A", l) for l in range(levels)],
            down=[mat("D", l) for l in range(levels - 1)],
            up=[mat("U", l) for l in range(levels - 1)],
        )


def build_mesh_hierarchy(
    verts: np.ndarray, faces: np.ndarray, level_sizes: tuple[int, ...] = (1723, 431)
) -> MeshHierarchyArrays:
    """Build the GraphCMR-style hierarchy of a mesh.

    Args:
        verts: (V, 3) rest-pose vertices (a representative body shape).
        faces: (F, 3) triangles.
        level_sizes: vertex counts of the coarser levels.
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    all_faces, adj, down, up = [faces], [adjacency_matrix(faces, len(verts))], [], []
    cur_v, cur_f = verts, faces
    for n in level_sizes:
        keep, new_faces = decimate_to_representatives(cur_v, cur_f, n)
        coarse_v = cur_v[keep]
        fidx, bary = project_onto_mesh(cur_v, coarse_v, new_faces)
        down.append(selection_matrix(keep, len(cur_v)))
        up.append(barycentric_matrix(fidx, bary, new_faces, len(keep)))
        all_faces.append(new_faces)
        adj.append(adjacency_matrix(new_faces, len(keep)))
        cur_v, cur_f = coarse_v, new_faces
    return MeshHierarchyArrays(all_faces, adj, down, up)


def _coo_buffers(m: sp.spmatrix) -> tuple[torch.Tensor, torch.Tensor]:
    """A scipy sparse matrix as the dense parts of a coalesced COO tensor.

    Returns:
        indices: (2, E) int64, rows then columns, lexicographically sorted without duplicates
            (the order ``torch.Tensor.coalesce`` produces);
        values: (E,) float32.
    """
    t = _sparse_to_torch(m)
    return t.indices().clone(), t.values().clone()


def _sparse_to_torch(m: sp.spmatrix) -> torch.Tensor:
    coo = m.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data.astype(np.float32)), coo.shape, check_invariants=True).coalesce()


class MeshHierarchy(torch.nn.Module):
    """Torch side of the hierarchy: down/up-sampling of per-vertex tensors between levels.

    Buffers move with ``.to(device)``; down-sampling is a gather (``D`` selects vertices),
    up-sampling a sparse product.

    Storage. The sparse operators (normalised adjacency per level, up-sampling per level) are kept
    as dense buffers: ``<name>_indices`` (2, E) int64 and ``<name>_values`` (E,) float32, coalesced,
    and wrapped into a sparse COO tensor on each use (no copy: ``is_coalesced=True`` over the same
    storage). ``DistributedDataParallel`` broadcasts every module buffer at construction and refuses
    sparse ones ("No support for sparse tensors"), so a module holding a ``BodyModel`` could not be
    wrapped otherwise. All buffers are non-persistent: the hierarchy comes from the asset set, not
    from checkpoints, so ``state_dict`` is unchanged.
    """

    def __init__(self, arrays: MeshHierarchyArrays):
        super().__init__()
        self.arrays = arrays
        self.num_levels = len(arrays.faces)
        self._shapes: dict[str, tuple[int, int]] = {}
        for l, f in enumerate(arrays.faces):
            self.register_buffer(f"faces_{l}", torch.from_numpy(f.astype(np.int64)), persistent=False)
            self._register_sparse(f"adjacency_{l}", normalized_adjacency(arrays.adjacency[l]))
        for l, d in enumerate(arrays.down):
            # D selects one vertex per row: its CSR column indices, in row order, are the kept vertices.
            self.register_buffer(f"down_index_{l}", torch.from_numpy(d.tocsr().indices.astype(np.int64)), persistent=False)
            self._register_sparse(f"up_{l}", arrays.up[l])

    def _register_sparse(self, name: str, m: sp.spmatrix) -> None:
        indices, values = _coo_buffers(m)
        self.register_buffer(f"{name}_indices", indices, persistent=False)
        self.register_buffer(f"{name}_values", values, persistent=False)
        self._shapes[name] = tuple(int(s) for s in m.shape)

    def _sparse(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The operator ``name`` as a coalesced sparse COO tensor on the buffers' device.

        ``dtype`` None keeps the stored dtype (float32 unless the module was converted)."""
        values = getattr(self, f"{name}_values")
        if dtype is not None:
            values = values.to(dtype)
        return torch.sparse_coo_tensor(getattr(self, f"{name}_indices"), values, self._shapes[name],
                                       is_coalesced=True, check_invariants=False)  # coalesced when stored

    @property
    def num_vertices(self) -> list[int]:
        return self.arrays.num_vertices

    def faces(self, level: int) -> torch.Tensor:
        """(F_level, 3) long."""
        return getattr(self, f"faces_{level}")

    def vertex_index(self, level: int) -> torch.Tensor:
        """(V_level,) long: the full-mesh vertices that ``downsample(x, 0, level)`` keeps, in its order."""
        n = self.num_vertices[0]
        return self.downsample(torch.arange(n, device=self.faces_0.device).view(1, n, 1), 0, level).reshape(-1)

    def normalized_adjacency(self, level: int) -> torch.Tensor:
        """Row-normalised adjacency with self-loops, sparse COO, coalesced (V_level, V_level)."""
        return self._sparse(f"adjacency_{level}")

    def downsample(self, x: torch.Tensor, from_level: int = 0, to_level: int = 1) -> torch.Tensor:
        """(B, V_from, C) -> (B, V_to, C) by vertex selection."""
        for l in range(from_level, to_level):
            x = x.index_select(-2, getattr(self, f"down_index_{l}"))
        return x

    def upsample(self, x: torch.Tensor, from_level: int = 1, to_level: int = 0) -> torch.Tensor:
        """(B, V_from, C) -> (B, V_to, C) by barycentric interpolation."""
        for l in range(from_level - 1, to_level - 1, -1):
            u = self._sparse(f"up_{l}", x.dtype)
            b, v, c = x.shape
            flat = x.transpose(0, 1).reshape(v, b * c)
            x = torch.sparse.mm(u, flat).reshape(u.shape[0], b, c).transpose(0, 1)
        return x
