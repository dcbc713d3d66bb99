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
