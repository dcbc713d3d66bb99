"""Graph layers: against dense per-node computations, permutation equivariance, residual paths."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.nets.graph import (
    GraphConvolution, GraphLinear, GraphResBlock, graph_matmul, node_linear, norm_relu, num_groups, row_normalize,
)


def random_adjacency(n: int, gen: torch.Generator, density: float = 0.3) -> torch.Tensor:
    """Symmetric random graph with self-loops, row-normalised: (n, n) dense float64."""
    a = (torch.rand(n, n, generator=gen, dtype=torch.float64) < density).double()
    a = ((a + a.t()) > 0).double() + torch.eye(n, dtype=torch.float64)
    return row_normalize(a.clamp_max(1.0))


def test_graph_matmul_dense_sparse_rectangular():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(5, 7, generator=gen, dtype=torch.float64) * (torch.rand(5, 7, generator=gen) < 0.5)
    x = torch.randn(3, 4, 7, generator=gen, dtype=torch.float64)
    expected = torch.einsum("ij,bcj->bci", a, x)
    torch.testing.assert_close(graph_matmul(a, x), expected)
    torch.testing.assert_close(graph_matmul(a.to_sparse(), x), expected)
    # The batched form with a stored A^T: (B C, N_in) @ A^T, values and gradients; one image ignores A^T.
    xg = x.clone().requires_grad_(True)
    got = graph_matmul(a.to_sparse(), xg, a.t().to_sparse())
    torch.testing.assert_close(got, expected)
    grad_out = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad((got * grad_out).sum(), xg)
    torch.testing.assert_close(g, torch.einsum("ij,bci->bcj", a, grad_out))
    torch.testing.assert_close(graph_matmul(a.to_sparse(), x[:1], a.t().to_sparse()), expected[:1])
    with pytest.raises(ValueError, match=r"\(B, C, 7\)"):
        graph_matmul(a, x[..., :6])


@pytest.mark.parametrize("batch", [1, 2])   # node_linear's two paths: conv1d for one image, bmm for more
def test_graph_linear_is_per_node_matmul(batch):
    gen = torch.Generator().manual_seed(1)
    lin = GraphLinear(6, 4).double()
    with torch.no_grad():
        lin.W.normal_(generator=gen)
        lin.b.normal_(generator=gen)
    x = torch.randn(batch, 6, 9, generator=gen, dtype=torch.float64)
    y = lin(x)
    assert y.shape == (batch, 4, 9)
    for b in range(batch):
        for node in range(9):
            torch.testing.assert_close(y[b, :, node], lin.W @ x[b, :, node] + lin.b)


@pytest.mark.parametrize("batch,nodes", [(1, 11), (1, 4), (3, 11)])
@pytest.mark.parametrize("bias", [True, False])
def test_node_linear_values_and_gradients_match_einsum(batch, nodes, bias):
    """Both paths (one image with at least as many nodes as channels: conv1d; otherwise bmm), with a
    transposed weight view as GraphConvolution passes it: values and gradients of x, W and b equal the
    einsum formula."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(batch, 6, nodes, generator=gen, dtype=torch.float64, requires_grad=True)
    w_t = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)      # used as w_t.t()
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    grad_out = torch.randn(batch, 4, nodes, generator=gen, dtype=torch.float64)
    inputs = [t for t in (x, w_t, b) if t is not None]
    got = torch.autograd.grad((node_linear(x, w_t.t(), b) * grad_out).sum(), inputs)
    ref_out = torch.einsum("oc,bcn->bon", w_t.t(), x) + (0 if b is None else b[:, None])
    torch.testing.assert_close(node_linear(x, w_t.t(), b), ref_out)
    for g, r in zip(got, torch.autograd.grad((ref_out * grad_out).sum(), inputs)):
        torch.testing.assert_close(g, r)


def test_norm_relu_in_place_keeps_gradients():
    """The in-place ReLU on GroupNorm's output gives the out-of-place values and gradients (autograd
    would raise if GroupNorm's backward needed the overwritten output)."""
    gen = torch.Generator().manual_seed(6)
    norm = torch.nn.GroupNorm(2, 8).double()
    with torch.no_grad():
        norm.weight.normal_(generator=gen)
        norm.bias.normal_(generator=gen)
    x = torch.randn(3, 8, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    got = norm_relu(norm, x)
    ref = torch.relu(norm(x))
    torch.testing.assert_close(got, ref)
    params = [x, norm.weight, norm.bias]
    grad_out = torch.randn_like(ref)
    for g, r in zip(torch.autograd.grad((got * grad_out).sum(), params),
                    torch.autograd.grad((ref * grad_out).sum(), params)):
        torch.testing.assert_close(g, r)


def test_graph_linear_init_is_graphcmrs():
    lin = GraphLinear(32, 16)
    bound = 1 / (32 * 16)
    assert lin.W.abs().max() <= bound and lin.b.abs().max() <= bound
    assert lin.W.std() > bound / 4   # uniform over the whole range, not zero


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("c_in,c_out", [(6, 4), (3, 8)])   # both multiplication orders
def test_graph_convolution_equals_dense_formula(sparse, c_in, c_out):
    gen = torch.Generator().manual_seed(2)
    a = random_adjacency(10, gen)
    conv = GraphConvolution(c_in, c_out, a.to_sparse() if sparse else a).double()
    x = torch.randn(3, c_in, 10, generator=gen, dtype=torch.float64)
    # Eq. (2) per sample, node-major: X' = A X W + b with X (N, C_in).
    expected = torch.stack([a @ x[b].t() @ conv.weight + conv.bias for b in range(3)]).transpose(1, 2)
    torch.testing.assert_close(conv(x), expected)
    assert conv.adjacency.is_sparse == sparse


def test_graph_convolution_sparse_gradients_match_dense():
    gen = torch.Generator().manual_seed(3)
    a = random_adjacency(8, gen)
    dense = GraphConvolution(4, 4, a).double()
    sparse = GraphConvolution(4, 4, a.to_sparse()).double()
    sparse.load_state_dict(dense.state_dict())
    x = torch.randn(2, 4, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    gd = torch.autograd.grad(dense(x).pow(2).sum(), [x, dense.weight, dense.bias])
    gs = torch.autograd.grad(sparse(x).pow(2).sum(), [x, sparse.weight, sparse.bias])
    for d, s in zip(gd, gs):
        torch.testing.assert_close(d, s)


def test_graph_convolution_adjacency_buffers_are_dense_and_not_saved():
    """Sparse adjacency kept as dense index/value buffers (DDP cannot broadcast sparse buffers) and out
    of the state dict."""
    a = random_adjacency(6, torch.Generator().manual_seed(4)).float()
    conv = GraphConvolution(2, 2, a.to_sparse())
    assert all(not b.is_sparse for b in conv.buffers())
    assert set(conv.state_dict()) == {"weight", "bias"}
    torch.testing.assert_close(conv.adjacency.to_dense(), a)


def test_graph_convolution_without_stored_adjacency_needs_one():
    conv = GraphConvolution(3, 3, None)
    x = torch.randn(1, 3, 4)
    with pytest.raises(ValueError, match="pass one"):
        conv(x)
    assert conv(x, torch.ones(2, 4)).shape == (1, 3, 2)   # rectangular: 4 nodes -> 2


@pytest.mark.parametrize("sparse", [False, True])
def test_permutation_equivariance(sparse):
    """Relabelling the nodes (and the adjacency with them) relabels the outputs."""
    gen = torch.Generator().manual_seed(5)
    n = 12
    a = random_adjacency(n, gen)
    perm = torch.randperm(n, generator=gen)
    a_perm = a[perm][:, perm]
    torch.manual_seed(0)
    block = GraphResBlock(16, 8, a.to_sparse() if sparse else a).double()
    torch.manual_seed(0)
    block_perm = GraphResBlock(16, 8, a_perm.to_sparse() if sparse else a_perm).double()
    for p in block.parameters():   # make the residual branch matter
        torch.nn.init.normal_(p, std=0.3)
    block_perm.load_state_dict(block.state_dict())
    x = torch.randn(2, 16, n, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(block_perm(x[..., perm]), block(x)[..., perm])


def test_block_layout_and_widths():
    a = torch.eye(5)
    block = GraphResBlock(32, 64, a)
    assert (block.lin1.in_channels, block.lin1.out_channels) == (32, 32)
    assert (block.conv.in_channels, block.conv.out_channels) == (32, 32)
    assert (block.lin2.in_channels, block.lin2.out_channels) == (32, 64)
    assert block.skip is not None and (block.skip.in_channels, block.skip.out_channels) == (32, 64)
    assert block.pre_norm.num_groups == 4 and block.norm1.num_groups == 4   # GraphCMR: C // 8 groups
    assert GraphResBlock(16, 16, a).skip is None


def test_block_zero_residual_is_identity_or_skip():
    gen = torch.Generator().manual_seed(6)
    a = random_adjacency(7, gen).float()
    x = torch.randn(3, 16, 7, generator=gen)
    same = GraphResBlock(16, 16, a)
    torch.nn.init.zeros_(same.lin2.W)
    torch.nn.init.zeros_(same.lin2.b)
    torch.testing.assert_close(same(x), x, rtol=0, atol=0)
    wider = GraphResBlock(16, 24, a)
    torch.nn.init.zeros_(wider.lin2.W)
    torch.nn.init.zeros_(wider.lin2.b)
    torch.testing.assert_close(wider(x), wider.skip(x), rtol=0, atol=0)


def test_block_residual_branch_is_added():
    gen = torch.Generator().manual_seed(7)
    block = GraphResBlock(16, 16, random_adjacency(6, gen).float())
    x = torch.randn(2, 16, 6, generator=gen)
    torch.testing.assert_close(block(x), x + block.residual(x))


def test_block_runs_on_another_graph():
    """Weight sharing: one block, two adjacencies of different sizes."""
    gen = torch.Generator().manual_seed(8)
    block = GraphResBlock(8, 8, random_adjacency(9, gen).float())
    other = random_adjacency(4, gen).float()
    x = torch.randn(2, 8, 4, generator=gen)
    copy = GraphResBlock(8, 8, other)
    copy.load_state_dict(block.state_dict())
    torch.testing.assert_close(block(x, other), copy(x))


@pytest.mark.parametrize("channels,expected", [(512, 64), (256, 32), (12, 1), (20, 2), (4, 1), (24, 3)])
def test_num_groups(channels, expected):
    assert num_groups(channels) == expected
    assert channels % num_groups(channels) == 0


def test_row_normalize():
    m = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    torch.testing.assert_close(row_normalize(m), torch.tensor([[0.25, 0.75], [0.5, 0.5]]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sparse_matches_cpu_and_autocast():
    gen = torch.Generator().manual_seed(9)
    a = random_adjacency(20, gen).float()
    block = GraphResBlock(16, 16, a.to_sparse())
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 16, 20, generator=gen)
    expected = block(x)
    block.cuda()
    assert block.conv.adjacency.device.type == "cuda"
    torch.testing.assert_close(block(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = block(x.cuda())
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float().cpu(), expected, rtol=0.1, atol=0.2)
