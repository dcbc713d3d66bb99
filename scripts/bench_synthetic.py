"""Generation speed of the synthetic data set (datamodules/synthetic): samples per second.

Two measurements on the bundled open body model:
- ``render``: ``SceneGenerator.samples`` in this process (single-threaded torch, as the generator runs):
  draws, body model, placement, backgrounds, rasterisation, shading, compositing and annotation of
  ``--render-samples`` training samples, no file writing;
- ``generate``: the whole ``make data`` path (``datamodules.synthetic.generate``: the above plus JPEG/PNG
  encoding, validation and tar shards) at ``--size`` (0.1 = 500 training + 50 evaluation samples) for
  each ``--workers`` value, into a temporary folder. Worker processes are spawned, so their start-up
  (about 3 s: importing torch, loading the body model) is included.

    python scripts/bench_synthetic.py [--out bench/results/synthetic.json] [--size 0.1] [--workers 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.synthetic.dataset import generate  # noqa: E402
from datamodules.synthetic.scene import SceneGenerator  # noqa: E402
from datamodules.synthetic.sources import TRAIN_SOURCES  # noqa: E402


def bench_render(n: int) -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = SceneGenerator.from_config("open")
        gen.samples(0, TRAIN_SOURCES["coco"], range(4))  # warm-up
        t0 = time.perf_counter()
        for start in range(0, n, 16):
            gen.samples(0, TRAIN_SOURCES["coco"], range(start, min(n, start + 16)))
        dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    row = {"samples": n, "seconds": round(dt, 2), "samples_per_s": round(n / dt, 1)}
    if load is not None:  # other processes inflate CPU timings: record how busy the machine was
        row["loadavg_1min_before"] = round(load, 2)
    return row


def bench_generate(size: float, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        t0 = time.perf_counter()
        manifest = generate(Path(tmp) / "data", seed=0, size=size, workers=workers, log=None)
        dt = time.perf_counter() - t0
        mib = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2 ** 20
    n = sum(v["count"] for split in ("train", "eval") for v in manifest[split].values())
    row = {"workers": workers, "size": size, "samples": n, "seconds": round(dt, 2),
           "samples_per_s": round(n / dt, 1), "mib_on_disk": round(mib, 1)}
    if load is not None:
        row["loadavg_1min_before"] = round(load, 2)
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/synthetic.json")
    p.add_argument("--size", type=float, default=0.1)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--render-samples", type=int, default=64)
    args = p.parse_args(argv)
    results = {"torch": torch.__version__, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
               "render": bench_render(args.render_samples), "generate": []}
    print(f"render: {results['render']['samples_per_s']} samples/s (1 thread, no writing)", flush=True)
    for w in args.workers:
        row = bench_generate(args.size, w)
        results["generate"].append(row)
        print(f"generate --size {args.size:g} --workers {w}: {row['samples']} samples in {row['seconds']} s = "
              f"{row['samples_per_s']} samples/s ({row['mib_on_disk']} MiB)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
