"""Graph layers on a fixed graph (Kipf & Welling 2017; GraphCMR, Kolotouros et al. 2019).

Features are channels-first, ``(B, C, N)`` for N nodes (GraphCMR's layout, what ``nn.GroupNorm`` wants).

    GraphLinear        X -> W X + b           per-node linear layer ("a graph convolution whose
                                               adjacency is the identity", BiGraph 4.3.4)
    GraphConvolution   X -> A X W + b         BiGraph eq. (2), A a fixed row-normalised (N, N) adjacency
    GraphResBlock      x + lin2(GN-ReLU(conv(GN-ReLU(lin1(GN-ReLU(x))))))    (skip(x) when C_in != C_out)

Block ordering. BiGraph (4.3.4): "Each block consists of a sequence of a graph linear layer, a graph
convolution layer, and another graph linear layer, with a residual connection from the input directly to
the output of this block. Each layer follows a group normalization layer and ReLU." We read "each layer
follows a GroupNorm and ReLU" literally (the layer comes after them), i.e. pre-activation, which is
exactly GraphCMR's ``GraphResBlock`` (and 4.3.1 says the mesh graph module "is identical to graph
layers of GraphCMR"). Widths are GraphCMR's bottleneck: C_in -> C_out / 2 -> C_out / 2 -> C_out; the
skip is a GraphLinear only when C_in != C_out. GroupNorm uses 8 channels per group (GraphCMR: C // 8
groups); see ``group_norm`` for channel counts that 8 does not divide.

Initialisation is GraphCMR's: GraphLinear W, b ~ U(-1 / (C_in C_out), +1 / (C_in C_out)) (nearly zero,
so every residual block starts close to the identity); GraphConvolution W, b ~ U(-s, s) with
s = 6 / sqrt(C_in + C_out).

Adjacency storage. A sparse adjacency is kept as two dense buffers (indices (2, E), values (E,)) and
rebuilt as a sparse COO tensor at each call: ``DistributedDataParallel`` broadcasts module buffers at
construction and cannot broadcast sparse tensors ("No support for sparse tensors"), and the rebuild is
free (no copy of the data); products convert it to CSR (21 us for the 1,723-vertex mesh; CSR x dense is
the faster kernel, ``_to_csr``). A dense adjacency is one buffer. Buffers are non-persistent: the graph comes
from the body model given at construction, not from checkpoints. The sparse product runs on any device in
the adjacency's dtype (float32 unless the module is converted); half-precision features under autocast are
cast up for it and back down.

Export. Sparse tensors cannot be traced by ``torch.export`` (ONNX export). While exporting
(``torch.compiler.is_exporting()``), a stored sparse operator is applied as per-row neighbour gathers and weighted
sums (``neighbour_table``, ``gather_matmul``: each vertex of the mesh graph has a handful of neighbours), not as a
dense (N, N) product, which for the 1,723-vertex mesh would cost about twice ResNet-50; the table is built once,
at construction. A test holds the two paths equal.

Per-node products (``node_linear``) are batched matrix products with the weight broadcast over the batch:
contiguous in and out, no transposed copies (``torch.matmul(W, x)`` on (B, C, N) folds batch and nodes with
a transposed copy on each side). Measured in the BiGraph network on the 2-core CPU (1,723 nodes, 256
channels): at batch 32 the graph part takes 1.7 s this way against 2.4 s with kernel-1 ``conv1d``; at batch
1 oneDNN's ``conv1d`` is the faster one (30 vs 36 ms), so a single image takes that path, unless it has fewer
nodes than input channels (BiGraph's skeleton input, 3,842 -> 512 on 12 joints: oneDNN re-lays out the 7.9 MB
weight at every call, 2.0 ms, where the matrix product streams it once).
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------
def graph_matmul(adjacency: Tensor, x: Tensor, transposed: Tensor | None = None) -> Tensor:
    """Apply a node operator along the node axis: out[b, c, i] = sum_j A[i, j] x[b, c, j].

    Args:
        adjacency: (N_out, N_in) dense, sparse COO or sparse CSR (need not be square: up-sampling,
            bipartite graphs). Sparse products run in CSR (``_to_csr``).
        x: (B, C, N_in).
        transposed: optional sparse A^T (N_in, N_out). For a batch (B > 1) the product then runs as
            (B C, N_in) @ A^T, in place of A @ (a transposed view) and a transposed copy back: 34 against 59 ms
            for 32 x 128 channels on the 1,723-vertex mesh (2-core CPU); for one image the A @ form is
            faster (0.33 against 0.83 ms). Building A^T per call would cost 0.7 ms, so callers store it.
    Returns:
        (B, C, N_out), dtype of ``x``.
    """
    if x.dim() != 3 or x.shape[-1] != adjacency.shape[1]:
        raise ValueError(f"x must be (B, C, {adjacency.shape[1]}), got {tuple(x.shape)}")
    if adjacency.layout == torch.strided:
        return torch.matmul(x, adjacency.to(x.dtype).t())
    b, c, n = x.shape
    # Sparse products run in the adjacency's dtype with autocast off: autocast would cast them to bf16, which
    # the CPU (MKL) sparse kernels do not implement ("addmm_out_sparse_csr_impl_mkl" for 'BFloat16').
    with torch.autocast(x.device.type, enabled=False):
        if transposed is not None and b > 1:
            out = torch.mm(x.reshape(b * c, n).to(transposed.dtype), _to_csr(transposed))   # (B C, N_out)
            return out.reshape(b, c, -1).to(x.dtype)
        if adjacency.layout == torch.sparse_coo:
            adjacency = _to_csr(adjacency)
        flat = x.reshape(b * c, n).t().to(adjacency.dtype)                      # (N_in, B C), a view
        out = adjacency @ flat                                                  # (N_out, B C)
    # One copy back to a contiguous (B, C, N_out): later per-node ops would otherwise copy repeatedly.
    return out.t().reshape(b, c, -1).contiguous().to(x.dtype)


def neighbour_table(indices: Tensor, values: Tensor, num_rows: int) -> tuple[Tensor, Tensor]:
    """A sparse (N_out, N_in) operator as padded per-row neighbour lists (module docstring, "Export").

    Args:
        indices: (2, E) long (row, column) of the non-zeros; values: (E,).
        num_rows: N_out.
    Returns:
        (N_out, K) long column indices and (N_out, K) weights, K the largest row count; padding has weight 0
        (column 0).
    """
    rows, cols = indices[0].long(), indices[1].long()
    counts = torch.bincount(rows, minlength=num_rows)
    k = max(1, int(counts.max())) if rows.numel() else 1
    order = torch.argsort(rows, stable=True)
    rows, cols, vals = rows[order], cols[order], values[order]
    slot = torch.arange(rows.numel()) - (torch.cumsum(counts, 0) - counts)[rows]
    neighbours = torch.zeros(num_rows, k, dtype=torch.long)
    weights = torch.zeros(num_rows, k, dtype=values.dtype)
    neighbours[rows, slot] = cols
    weights[rows, slot] = vals
    return neighbours, weights


def gather_matmul(neighbours: Tensor, weights: Tensor, x: Tensor) -> Tensor:
    """out[b, c, i] = sum_k weights[i, k] x[b, c, neighbours[i, k]]: (B, C, N_in) -> (B, C, N_out), by gathers
    and sums only (exportable; ``neighbour_table``). Whole node rows are gathered (nodes first, channels
    contiguous), not single values along the last axis."""
    n_out, k = neighbours.shape
    rows = x.transpose(1, 2).index_select(1, neighbours.reshape(-1))                  # (B, N_out K, C)
    rows = rows.reshape(x.shape[0], n_out, k, x.shape[1])
    # A broadcast product and a sum: in ONNX Runtime 1.15x faster than gathering along the last axis and 2x
    # faster than the same contraction as an einsum (BiGraph, batch 1 and 8, measured side by side).
    return (rows * weights.to(x.dtype)[None, :, :, None]).sum(2).transpose(1, 2)


def node_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The same linear map at every node: out[b, :, i] = W x[b, :, i] + bias (module docstring: why two paths).

    Args:
        x: (B, C_in, N).
        weight: (C_out, C_in); a transposed view is copied once (a strided weight slows the product 2x).
        bias: (C_out,) or None.
    Returns:
        (B, C_out, N).
    """
    if x.shape[0] == 1 and x.shape[2] >= x.shape[1]:
        return F.conv1d(x, weight[:, :, None], bias)            # one image, many nodes: oneDNN is faster
    w = weight.contiguous().expand(x.shape[0], -1, -1)                          # (B, C_out, C_in), no copy
    if bias is None:
        return torch.bmm(w, x)
    return torch.baddbmm(bias[None, :, None], w, x)


def _to_csr(adjacency: Tensor) -> Tensor:
    """COO -> CSR for the product: CSR x dense is 2.4x (forward) and 1.6x (forward + backward) faster than
    COO x dense on CPU for the 1,723-vertex mesh at batch 32 (measured); the conversion is O(nnz)."""
    with warnings.catch_warnings():   # "Sparse CSR tensor support is in beta state": the product is stable
        warnings.simplefilter("ignore", UserWarning)
        return adjacency.to_sparse_csr()


def row_normalize(matrix: Tensor) -> Tensor:
    """RowNorm(M) = M / (row sums of M). (..., N, M) -> (..., N, M); rows must not sum to zero."""
    return matrix / matrix.sum(dim=-1, keepdim=True)


def num_groups(channels: int, channels_per_group: int = 8) -> int:
    """GroupNorm groups: channels // channels_per_group (GraphCMR), lowered to the nearest divisor of
    ``channels`` (at least 1) so that small test widths work."""
    groups = max(1, channels // channels_per_group)
    while channels % groups:
        groups -= 1
    return groups


def norm_relu(norm: nn.Module, x: Tensor) -> Tensor:
    """ReLU(norm(x)) with the ReLU in place on the norm's fresh output: one buffer fewer per layer (fewer
    page faults for large batches). Safe for autograd: GroupNorm's backward keeps its input, not its output."""
    return F.relu(norm(x), inplace=True)


def add_into(fresh: Tensor, other: Tensor) -> Tensor:
    """fresh + other, written into ``fresh`` when it can hold the result (same dtype and shape), so the large
    residual streams get no new buffer. ``fresh`` must be a just-computed tensor that no autograd node saved
    (a product's output); under autocast a bf16 ``fresh`` plus a float32 ``other`` stays out of place, so the
    result keeps float32 as before."""
    same_shape = fresh.shape == torch.broadcast_shapes(fresh.shape, other.shape)
    if same_shape and fresh.dtype == torch.result_type(fresh, other):
        return fresh.add_(other)
    return fresh + other


def group_norm(channels: int, channels_per_group: int = 8) -> nn.GroupNorm:
    """``nn.GroupNorm`` with ``num_groups(channels, channels_per_group)`` groups."""
    return nn.GroupNorm(num_groups(channels, channels_per_group), channels)


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------
class GraphLinear(nn.Module):
    """Per-node linear layer (a 1x1 convolution over nodes): (B, C_in, N) -> (B, C_out, N).

    ``W`` (C_out, C_in) and ``b`` (C_out,), GraphCMR's names, shapes and initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.W = nn.Parameter(torch.empty(out_channels, in_channels))
        self.b = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / (self.in_channels * self.out_channels)
        nn.init.uniform_(self.W, -bound, bound)
        nn.init.uniform_(self.b, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, N) -> (B, C_out, N)."""
        return node_linear(x, self.W, self.b)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}"


class GraphConvolution(nn.Module):
    """X -> A X W + b on a fixed (N, N) adjacency A (BiGraph eq. (2)): (B, C_in, N) -> (B, C_out, N).

    Args:
        in_channels, out_channels: C_in, C_out.
        adjacency: (N, N) dense or sparse normalised adjacency, stored as non-persistent buffers
            (module docstring); or None, and every ``forward`` call passes one.
        bias: add a per-channel bias.
    ``forward(x, adjacency)`` runs the same weights with another operator, which may be rectangular
    (N_out, N_in): weight sharing between graphs, bipartite graphs, pooling.
    ``weight`` is (C_in, C_out) as W in eq. (2).
    """

    def __init__(self, in_channels: int, out_channels: int, adjacency: Tensor | None,
                 bias: bool = True) -> None:
        super().__init__()
        if adjacency is not None and (adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1]):
            raise ValueError(f"adjacency must be (N, N), got {tuple(adjacency.shape)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_nodes = None if adjacency is None else adjacency.shape[0]
        self.sparse = adjacency is not None and adjacency.is_sparse
        if adjacency is None:
            pass
        elif self.sparse:
            a = adjacency.coalesce()
            self.register_buffer("adjacency_indices", a.indices().clone(), persistent=False)
            self.register_buffer("adjacency_values", a.values().float().clone(), persistent=False)
            a_t = a.t().coalesce()                                               # for batched products
            self.register_buffer("adjacency_t_indices", a_t.indices().clone(), persistent=False)
            self.register_buffer("adjacency_t_values", a_t.values().float().clone(), persistent=False)
            neighbours, weights = neighbour_table(a.indices(), a.values().float(), a.shape[0])   # for export
            self.register_buffer("adjacency_neighbours", neighbours, persistent=False)
            self.register_buffer("adjacency_weights", weights, persistent=False)
        else:
            self.register_buffer("adjacency_dense", adjacency.float().clone(), persistent=False)
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
        self.register_parameter("bias", nn.Parameter(torch.empty(out_channels)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 6.0 / math.sqrt(self.in_channels + self.out_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def adjacency(self) -> Tensor | None:
        """The stored (N, N) operator: sparse COO (coalesced) or dense, on the module's device."""
        if self.num_nodes is None:
            return None
        if not self.sparse:
            return self.adjacency_dense
        n = self.num_nodes
        return torch.sparse_coo_tensor(self.adjacency_indices, self.adjacency_values, (n, n),
                                       is_coalesced=True, check_invariants=False)   # coalesced when stored

    @property
    def adjacency_transposed(self) -> Tensor | None:
        """A^T as sparse COO for the stored sparse adjacency (``graph_matmul``'s batched form), else None."""
        if not self.sparse:
            return None
        n = self.num_nodes
        return torch.sparse_coo_tensor(self.adjacency_t_indices, self.adjacency_t_values, (n, n),
                                       is_coalesced=True, check_invariants=False)

    def forward(self, x: Tensor, adjacency: Tensor | None = None) -> Tensor:
        """(B, C_in, N_in) -> (B, C_out, N_out); ``adjacency`` (N_out, N_in) replaces the stored one."""
        if adjacency is None and self.sparse and torch.compiler.is_exporting():   # module docstring, "Export"
            def apply(t: Tensor) -> Tensor:
                return gather_matmul(self.adjacency_neighbours, self.adjacency_weights, t)
        else:
            a, a_t = (self.adjacency, self.adjacency_transposed) if adjacency is None else (adjacency, None)
            if a is None:
                raise ValueError("this GraphConvolution stores no adjacency: pass one to forward")

            def apply(t: Tensor) -> Tensor:
                return graph_matmul(a, t, a_t)
        w = self.weight.t()                                                      # (C_out, C_in)
        if self.out_channels <= self.in_channels:                                # cheaper order first
            y = apply(node_linear(x, w))
        else:
            y = node_linear(apply(x), w)
        return y if self.bias is None else add_into(y, self.bias[:, None])

    def extra_repr(self) -> str:
        kind = "given per call" if self.num_nodes is None else "sparse" if self.sparse else "dense"
        return f"{self.in_channels} -> {self.out_channels}, nodes={self.num_nodes} ({kind})"


class GraphResBlock(nn.Module):
    """Pre-activation graph bottleneck block (module docstring): (B, C_in, N) -> (B, C_out, N).

        y = lin2(ReLU(GN(conv(ReLU(GN(lin1(ReLU(GN(x)))))))))
        out = skip(x) + y,  skip = identity if C_in == C_out else GraphLinear(C_in, C_out)

    ``forward(x, adjacency)`` runs the same weights on another graph (BiGraph's weight sharing between
    the skeleton and mesh graphs); ``residual(x)`` is y alone.
    """

    def __init__(self, in_channels: int, out_channels: int, adjacency: Tensor,
                 channels_per_group: int = 8) -> None:
        super().__init__()
        mid = out_channels // 2
        if mid < 1:
            raise ValueError(f"out_channels must be at least 2, got {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pre_norm = group_norm(in_channels, channels_per_group)
        self.lin1 = GraphLinear(in_channels, mid)
        self.norm1 = group_norm(mid, channels_per_group)
        self.conv = GraphConvolution(mid, mid, adjacency)
        self.norm2 = group_norm(mid, channels_per_group)
        self.lin2 = GraphLinear(mid, out_channels)
        self.skip = GraphLinear(in_channels, out_channels) if in_channels != out_channels else None

    def residual(self, x: Tensor, adjacency: Tensor | None = None) -> Tensor:
        """The residual branch y: (B, C_in, N) -> (B, C_out, N)."""
        y = self.lin1(norm_relu(self.pre_norm, x))
        y = self.conv(norm_relu(self.norm1, y), adjacency)
        return self.lin2(norm_relu(self.norm2, y))

    def forward(self, x: Tensor, adjacency: Tensor | None = None, shortcut: Tensor | None = None) -> Tensor:
        """(B, C_in, N) -> (B, C_out, N). ``shortcut``: skip(x) (B, C_out, N), when the caller has it cheaper."""
        if shortcut is None:
            shortcut = x if self.skip is None else self.skip(x)
        return add_into(self.residual(x, adjacency), shortcut)
