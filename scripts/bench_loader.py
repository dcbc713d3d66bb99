"""Benchmark the training loader: samples per second per worker process, full augmentation.

Reads the synthetic set (``make data``) through ``MixedDataModule`` with the synthetic data config:
- per worker: ``num_workers=0``, so the main process does exactly what one worker process does
  (read tar, decode JPEG and annotation, validate, augment, collate); torch limited to one thread;
- with N worker processes (--workers): the whole loader's rate as the training loop sees it.
Also times the two halves of a worker's work on single samples (decode; augment and prepare).
Writes JSON (--out). The goal (issue 3): >= 400 samples/s per worker process.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from configs.loader import compose
from datamodules.augment import AugmentConfig, prepare_sample, sample_augment_params
from datamodules.mixed import MixedDataModule
from datamodules.shards import decode_sample, iter_shard_members


def loader_rate(dm: MixedDataModule, samples: int, workers: int) -> float:
    dm.num_workers = workers
    dm.epoch_samples = samples
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # start-up (worker processes, first shard) is not throughput
    start, n = time.perf_counter(), 0
    for batch in it:
        n += len(batch["key"])
    return n / (time.perf_counter() - start)


def stage_times(dm: MixedDataModule, count: int = 300) -> dict:
    url = sorted(Path(dm.root).glob("train/h36m/*.tar"))[0]
    members = [m for _, m in zip(range(count), iter_shard_members(str(url)))]
    t = time.perf_counter()
    samples = [decode_sample(m) for m in members]
    decode = (time.perf_counter() - t) / len(members)
    rng, cfg = np.random.default_rng(0), AugmentConfig()
    t = time.perf_counter()
    for s in samples:
        prepare_sample(s, sample_augment_params(rng, cfg), dm.img_res)
    prepare = (time.perf_counter() - t) / len(samples)
    jpeg_kb = float(np.mean([len(m["jpg"]) for m in members]) / 1024)
    return {"decode_ms": round(1e3 * decode, 3), "augment_prepare_ms": round(1e3 * prepare, 3),
            "mean_jpeg_kb": round(jpeg_kb, 1), "crop_px": list(samples[0].crop_size)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="bench/results/loader.json")
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = compose("data_stats", [f"data.batch_size={a.batch_size}"])
    dm = MixedDataModule(cfg.data, rank=0, world_size=1)
    stages = stage_times(dm)
    per_worker = loader_rate(dm, a.samples, 0)
    multi = loader_rate(dm, a.samples, a.workers)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        "cpu_count": __import__("os").cpu_count(), "samples": a.samples, "batch_size": a.batch_size,
        "augmentation": "rotation 30 deg (p 0.4), scale 0.25, flip 0.5, per-channel gain 0.4",
        "per_worker_samples_per_s": round(per_worker, 1),
        f"loader_{a.workers}_workers_samples_per_s": round(multi, 1),
        **stages,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
