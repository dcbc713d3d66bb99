"""ONNX export: each model's inference graph runs in ONNX Runtime with torch's numbers at batch 1 and 8, and the
export paths of what torch.export could not trace equal the eager paths."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.nets.graph import GraphConvolution, gather_matmul, graph_matmul, neighbour_table


def _random_sparse(n_out: int, n_in: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(n_out, n_in, generator=g) * (torch.rand(n_out, n_in, generator=g) < 0.05)
    dense[torch.arange(min(n_out, n_in)), torch.arange(min(n_out, n_in))] += 1.0    # no empty row
    return dense.to_sparse().coalesce()


def test_neighbour_gathers_equal_the_sparse_product():
    a = _random_sparse(300, 200, 0)
    neighbours, weights = neighbour_table(a.indices(), a.values(), 300)
    assert neighbours.shape[1] == int(torch.bincount(a.indices()[0]).max())
    x = torch.randn(3, 5, 200, dtype=torch.float64)
    want = torch.einsum("oi,bci->bco", a.to_dense().double(), x)
    assert torch.allclose(gather_matmul(neighbours, weights.double(), x), want, atol=1e-12)
    assert torch.allclose(graph_matmul(a.double(), x), want, atol=1e-12)


def test_a_graph_convolution_exports_through_its_neighbour_table(monkeypatch):
    a = _random_sparse(120, 120, 1)
    layer = GraphConvolution(16, 8, a)
    x = torch.randn(2, 16, 120)
    eager = layer(x)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert torch.allclose(layer(x), eager, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hmr", "pymaf", "bigraph"])
def test_onnx_runtime_gives_torchs_numbers(checkpoints, tmp_path, model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from cli import export
    from lightning_modules.export import InferenceGraph, OnnxModel
    from lightning_modules.registry import load_module

    result = export.main([f"ckpt={checkpoints[model]}", f"out={tmp_path / 'model.onnx'}", f"model={model}"])
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]      # one self-contained file
    graph = InferenceGraph(load_module(checkpoints[model]))
    session = OnnxModel(result["onnx"])
    assert session.input_names == graph.input_names and session.output_names == graph.output_names
    for batch in (1, 8):                                           # one graph, any batch size
        inputs = graph.example_inputs(batch)
        with torch.no_grad():
            want = dict(zip(graph.output_names, (t.numpy() for t in graph(*inputs))))
        got = session(*[t.numpy() for t in inputs])
        for name in graph.output_names:
            assert got[name].shape == want[name].shape, name
            assert np.abs(got[name] - want[name]).max() <= 1e-4, (name, batch)


def test_the_sub_pixel_deconvolution_equals_the_transposed_convolution(monkeypatch):
    """PyMAF's 4 x 4, stride-2 deconvolutions export as four 2 x 2 convolutions + pixel shuffle: same numbers."""
    from lightning_modules.nets.pymaf_net import Deconvolution, subpixel_deconvolution

    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(6, 5, 4, 4, generator=gen, dtype=torch.float64)
    for shape in ((1, 6, 7, 7), (3, 6, 4, 9)):                     # odd and non-square maps
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        want = torch.nn.functional.conv_transpose2d(x, weight, stride=2, padding=1)
        torch.testing.assert_close(subpixel_deconvolution(x, weight), want, rtol=0, atol=1e-12)
    layer = Deconvolution(6, 5, kernel_size=4, stride=2, padding=1, bias=False).double()
    x = torch.randn(2, 6, 5, 5, generator=gen, dtype=torch.float64)
    eager = layer(x)
    calls = []
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    monkeypatch.setattr(torch.nn.functional, "pixel_shuffle",
                        lambda t, r, real=torch.nn.functional.pixel_shuffle: calls.append(r) or real(t, r))
    torch.testing.assert_close(layer(x), eager, rtol=0, atol=1e-12)
    assert calls == [2]                                             # the export path ran


def test_the_gathered_bilinear_sampling_equals_grid_sample(monkeypatch):
    """Mesh-aligned sampling exports as four row gathers: grid_sample's numbers, zeros outside the map."""
    from lightning_modules.nets.mesh_aligned import gather_bilinear, sample_points

    gen = torch.Generator().manual_seed(5)
    feature = torch.randn(2, 4, 6, 9, generator=gen, dtype=torch.float64)
    points = torch.rand(2, 50, 2, generator=gen, dtype=torch.float64) * 2.6 - 1.3   # about a third outside
    points[0, :3] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)  # the corners
    points[1, :2] = torch.tensor([[1.3, 0.0], [0.0, -1.7]], dtype=torch.float64)  # wholly outside -> 0
    want = sample_points(feature, points)
    torch.testing.assert_close(gather_bilinear(feature, points), want, rtol=0, atol=1e-12)
    assert torch.equal(want[1, :2], torch.zeros(2, 4, dtype=torch.float64))
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    monkeypatch.setattr(torch.nn.functional, "grid_sample", None)   # the export path must not call it
    torch.testing.assert_close(sample_points(feature, points), want, rtol=0, atol=1e-12)
