"""``make export``: a checkpoint's inference graph as ONNX (``lightning_modules.export``).

    python -m cli.export ckpt=... [out=model.onnx] [model=pymaf]

Writes the graph (dynamic batch) and checks it once with ONNX Runtime against the eager module on a batch of
two random inputs, printing the largest differences; ``out`` defaults to the checkpoint's name with ``.onnx``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from runtime.cli import run_cli
from runtime.errors import UserError

KEYS = ("ckpt", "out", "model")


def main(argv: list[str] | None = None) -> dict:
    args: dict[str, str] = {}
    for item in sys.argv[1:] if argv is None else argv:
        key, eq, value = item.partition("=")
        if not eq or key not in KEYS:
            raise UserError(f"make export: bad argument {item!r}; valid keys are {', '.join(KEYS)} (key=value)")
        args[key] = value
    if not args.get("ckpt"):
        raise UserError("make export: ckpt= is required (make export MODEL=... CKPT=...)")
    from lightning_modules.export import InferenceGraph, OnnxModel, default_onnx_path, export_onnx, require_onnx
    from lightning_modules.registry import load_module

    require_onnx("make export")
    module = load_module(args["ckpt"], args.get("model") or None)
    out = Path(args.get("out") or default_onnx_path(args["ckpt"]))
    export_onnx(module, out)
    graph = InferenceGraph(module)
    inputs = graph.example_inputs(2)
    with torch.no_grad():
        want = dict(zip(graph.output_names, (t.numpy() for t in graph(*inputs))))
    got = OnnxModel(out)(*[t.numpy() for t in inputs])
    differences = {name: float(np.abs(got[name] - want[name]).max()) for name in graph.output_names}
    print(f"wrote {out}: inputs {', '.join(graph.input_names)} -> {', '.join(graph.output_names)}; ONNX Runtime "
          f"against torch, largest difference {max(differences.values()):.2g}")
    return {"onnx": str(out), "differences": differences}


if __name__ == "__main__":
    run_cli(main)
