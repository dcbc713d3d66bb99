"""Benchmark BiGraph's network (without the backbone): parameter counts and forward latency.

Full width (the paper's 512 channels, 5 bilayer blocks, 1,723-vertex graph, SMPL regressor 1,024 wide),
random ResNet-50-shaped feature maps of a 224 x 224 crop as input, eval mode, no gradients; median of
``--repeats`` runs after 2 warm-ups at batch 1 and 32, on CPU and on CUDA when available. Writes JSON to --out.
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

from body.model import BodyModel
from lightning_modules.nets.bigraph_net import BiGraphConfig, BiGraphNet

STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}


def parameter_counts(net: BiGraphNet) -> dict[str, int]:
    counts = {name: sum(p.numel() for p in child.parameters())
              for name, child in net.named_children() if child is not None}
    counts["total"] = sum(p.numel() for p in net.parameters())
    return counts


def time_forward(net: BiGraphNet, batch: int, device: torch.device, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    feats = {k: torch.randn(batch, c, 224 // STRIDES[k], 224 // STRIDES[k], generator=g).to(device)
             for k, c in net.config.feature_channels.items()}
    joints = (0.8 * torch.rand(batch, 12, 2, generator=g) - 0.4).to(device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            net(feats, joints)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="bench/results/bigraph.json")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    net = BiGraphNet(BiGraphConfig(), BodyModel.from_config("open")).eval()
    counts = parameter_counts(net)
    print(json.dumps(counts, indent=2))
    results = {"what": "BiGraphNet forward median ms (full width, backbone excluded, eval, no grad)",
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "machine": platform.processor() or platform.machine(), "parameters": counts, "runs": []}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        net.to(dev)
        for batch in (1, 32):
            load = os.getloadavg()[0]
            ms = time_forward(net, batch, dev, a.repeats)
            name = str(dev) if dev.type == "cpu" else torch.cuda.get_device_name()
            results["runs"].append({"device": name, "batch": batch, "median_ms": round(ms, 1),
                                    "load_average_before": round(load, 2)})
            print(f"{name} batch {batch}: {ms:.1f} ms (load average before: {load:.2f})")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
