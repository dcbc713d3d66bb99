"""Benchmark the models' inference: parameter counts, latency, and each model's cost over its bare ResNet-50.

For hmr, pymaf and bigraph at full width (configs/model/*.yaml, the open body model): the module in eval
mode, no gradients, on random 224 x 224 uint8 crops (and random detected 2D joints for BiGraph). "model" is
image -> final prediction (``module(batch)`` + ``BodyDecoder.final``: mesh, joints, SMPL parameters, camera,
i.e. what ``predict_step`` returns); "backbone" is the same module's ResNet-50 up to the pooled c5 feature
(what every model runs first). Both are timed alternately in one loop, so the ratio model / backbone
compares runs under the same machine load; medians over ``--repeats`` after 2 warm-ups, batch 1 and 32, on
CPU and on CUDA when available (``--precision bf16`` adds bf16 autocast runs on CUDA). PyMAF's breakdown adds
the deconvolution pyramid alone, one mesh-aligned feedback level (mesh points + point MLP + regressor) and
the final decoding (full body-model forward + keypoints + projection).

    python scripts/bench_models.py --out bench/results/models.json [--models pymaf bigraph] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lightning_modules.registry import MODELS, model_class

IMG_RES = 224


def build(name: str):
    cfg = OmegaConf.to_container(OmegaConf.load(Path("configs/model") / f"{name}.yaml"))
    torch.manual_seed(0)
    return model_class(name)(model=cfg, optim=cfg["optim"], eval_sets=[]).eval()


def parameter_counts(module) -> dict[str, int]:
    backbone = module.net.backbone
    total = sum(p.numel() for p in module.net.parameters())
    bb = sum(p.numel() for p in backbone.parameters())
    return {"total": total, "backbone": bb, "head": total - bb}


def make_batch(batch: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(batch)
    return {"img": torch.randint(0, 256, (batch, 3, IMG_RES, IMG_RES), generator=g, dtype=torch.uint8).to(device),
            "bigraph_joints_2d": (0.8 * torch.rand(batch, 12, 3, generator=g) - 0.4).to(device)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def alternate(fns: dict, device: torch.device, repeats: int) -> dict[str, float]:
    """Median ms of each function, run in turn inside one loop (same load for all)."""
    times = {k: [] for k in fns}
    for i in range(repeats + 2):
        for name, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            if i >= 2:
                times[name].append((time.perf_counter() - t) * 1000)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def timed_functions(name: str, module, batch: dict) -> dict:
    backbone = module.net.backbone
    x = module.normalize(batch["img"])
    fns = {"backbone": lambda: backbone.forward_features(x)["c5"].mean(dim=(2, 3)),
           "model": lambda: module.decoder.final(module(batch))}
    if name == "pymaf":
        net = module.net
        c5 = backbone.forward_features(x)["c5"]
        maps = net.deconv(c5)
        theta = net.regressors[0].initial_theta(x.shape[0])
        level = net.plan[-1]

        def feedback_level():
            points = net.mesh_points(theta)
            features = net.point_features[level.module](maps[level.map_index], points)
            return net.regressors[level.module].step(features, theta)

        estimate = net(x).iterations[-1]
        fns.update({"deconv_pyramid": lambda: net.deconv(c5), "feedback_level": feedback_level,
                    "final_decode": lambda: module.decoder.decode(estimate)})
    return fns


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/results/models.json")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast runs on CUDA too")
    a = p.parse_args(argv)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = {"what": "inference median ms (eval, no grad): model = image -> final prediction; backbone = its "
                       "ResNet-50 to the pooled c5 feature; ratio = model / backbone, timed alternately in one loop",
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "machine": platform.processor() or platform.machine(), "parameters": {}, "runs": []}
    for name in a.models:
        module = build(name)
        results["parameters"][name] = parameter_counts(module)
        print(f"{name}: parameters {results['parameters'][name]}")
        for device in devices:
            module.to(device)
            dtypes = [None] + ([torch.bfloat16] if device.type == "cuda" and a.precision == "bf16" else [])
            for batch_size in a.batches:
                for dtype in dtypes:
                    batch = make_batch(batch_size, device)
                    load = os.getloadavg()[0]
                    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                                         enabled=dtype is not None):
                        ms = alternate(timed_functions(name, module, batch), device, a.repeats)
                    dev = "cpu" if device.type == "cpu" else torch.cuda.get_device_name()
                    run = {"model": name, "device": dev, "precision": "bf16" if dtype else "fp32",
                           "batch": batch_size, "ms": ms, "ratio": round(ms["model"] / ms["backbone"], 3),
                           "load_average_before": round(load, 2)}
                    results["runs"].append(run)
                    print(f"{name} {dev} {run['precision']} batch {batch_size}: {ms} ratio {run['ratio']:.2f}x "
                          f"(load {load:.2f})")
        module.to("cpu")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.out}")
    return results


if __name__ == "__main__":
    main()
