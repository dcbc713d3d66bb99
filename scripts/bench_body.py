"""Benchmark the body model forward pass (vertices + 24 joints + 49 keypoints).

Times BodyModel.forward at batch 1 and 64 with random poses (rotation matrices, as the networks
call it) on CPU, and on CUDA when available. Writes JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat


def time_forward(model: BodyModel, batch: int, device: torch.device, repeats: int, dtype=torch.float32) -> float:
    g = torch.Generator().manual_seed(0)
    pose = axis_angle_to_rotmat(torch.randn(batch, 24, 3, generator=g) * 0.3).to(device, dtype)
    betas = torch.randn(batch, 10, generator=g).to(device, dtype)
    times = []
    with torch.no_grad():
        for i in range(repeats + 3):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(betas, pose[:, 1:], pose[:, :1])
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:  # warm-up
                times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="bench/results/body.json")
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    model = BodyModel.from_config("open")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = {"what": "BodyModel.forward median ms (open model, 6890 vertices, float32)",
               "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "runs": []}
    for dev in devices:
        model.to(dev)
        for batch in (1, 64):
            ms = time_forward(model, batch, dev, a.repeats)
            results["runs"].append({"device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(), "batch": batch,
                                    "median_ms": round(ms, 3)})
            print(f"{dev} batch {batch}: {ms:.2f} ms")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
