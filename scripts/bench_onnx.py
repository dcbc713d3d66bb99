"""Benchmark CPU inference through ONNX Runtime against eager torch, and against the ONNX backbone alone.

For each model at full width (configs/model/*.yaml, the open body model, random weights: latency does not
depend on them): the inference graph of ``make export`` (``lightning_modules.export``: uint8 224 x 224 crops
[+ BiGraph's joints] -> mesh, joints, SMPL parameters, camera) and the same module's ResNet-50 alone (uint8 crop
-> pooled c5 feature) are exported to ONNX; then, alternately in one loop (same machine load for all), ONNX
Runtime on the model, ONNX Runtime on the backbone, and the eager torch model (``module(batch)`` +
``BodyDecoder.final``), at batch 1 and 32; the ONNX Runtime sessions' threads sleep between runs (spinning ones
would slow the next contender). Medians over ``--repeats`` after 2 warm-ups; ORT and torch both use
the process's thread count (2 on this VM). The ratio model / backbone is the issue's goal (PyMAF <= 1.5x,
BiGraph <= 1.6x).

    python scripts/bench_onnx.py --out bench/results/onnx.json [--models pymaf bigraph] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightning_modules.export import InferenceGraph, OnnxModel, export_onnx

IMG_RES = 224


class BackboneGraph(nn.Module):
    """uint8 crop -> the module's ResNet-50 pooled c5 feature (what every model runs first)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, img):
        return self.module.net.backbone.forward_features(self.module.normalize(img))["c5"].mean(dim=(2, 3))


def export_backbone(module, path: Path) -> Path:
    graph = BackboneGraph(module).eval()
    img = torch.randint(0, 256, (2, 3, IMG_RES, IMG_RES), dtype=torch.uint8)
    with torch.no_grad():
        torch.onnx.export(graph, (img,), str(path), dynamo=True, input_names=["img"], output_names=["feature"],
                          dynamic_shapes={"img": {0: torch.export.Dim.DYNAMIC}}, report=False, verbose=False)
    return path


def alternate(fns: dict, repeats: int) -> dict[str, float]:
    times = {k: [] for k in fns}
    for i in range(repeats + 2):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            if i >= 2:
                times[name].append((time.perf_counter() - t) * 1000)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def bench_model(name: str, folder: Path, repeats: int, threads: int) -> dict:
    from bench_models import build   # scripts/bench_models.py: the full-width module, seeded

    module = build(name)
    graph = InferenceGraph(module)
    t = time.perf_counter()
    model_path = export_onnx(module, folder / f"{name}.onnx")
    export_s = time.perf_counter() - t
    backbone_path = export_backbone(module, folder / f"{name}_backbone.onnx")
    # Threads that sleep between runs: spinning ones would take the cores from the next contender in the loop.
    ort_model = OnnxModel(model_path, threads, spinning=False)
    ort_backbone = OnnxModel(backbone_path, threads, spinning=False)
    backbone_session = ort_backbone.session
    out: dict = {"export_s": round(export_s, 1), "onnx_mb": round(model_path.stat().st_size / 2**20, 1)}
    for batch in (1, 32):
        inputs = [x.numpy() for x in graph.example_inputs(batch)]
        tensors = [torch.from_numpy(x) for x in inputs]
        with torch.no_grad():
            want = graph(*tensors)[0].numpy()
        difference = float(np.abs(ort_model(*inputs)["vertices"] - want).max())

        def eager():
            with torch.no_grad():
                graph(*tensors)

        ms = alternate({"onnx_model": lambda: ort_model(*inputs),
                        "onnx_backbone": lambda: backbone_session.run(None, {"img": inputs[0]}),
                        "torch_model": eager}, repeats)
        out[f"batch_{batch}"] = {**ms, "ratio_onnx_model_over_onnx_backbone": round(ms["onnx_model"] / ms["onnx_backbone"], 2),
                                 "speedup_onnx_over_torch": round(ms["torch_model"] / ms["onnx_model"], 2),
                                 "max_vertex_difference_m": difference}
        print(name, batch, out[f"batch_{batch}"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/onnx.json")
    parser.add_argument("--models", nargs="+", default=["hmr", "pymaf", "bigraph"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    import onnxruntime

    results = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                           "cpus": os.cpu_count(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
               "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            results["models"][name] = bench_model(name, Path(tmp), args.repeats, threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
