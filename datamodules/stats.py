"""What the training loader draws: per source, the configured weight, the number of samples drawn and
their share; the largest difference between share and weight in percentage points; the skipped-sample
count with reasons; and the loader's throughput with the configured workers and augmentation.

The command that prints it as JSON is :mod:`cli.data_stats` (``make data-stats``).
"""
from __future__ import annotations

import time
from collections import Counter

from datamodules.mixed import MixedDataModule


def draw_stats(dm: MixedDataModule, draws: int) -> dict:
    """Iterate one training epoch of ``draws`` samples (rounded down to whole batches) and count."""
    dm.epoch_samples = draws
    counts: Counter = Counter()
    start = time.perf_counter()
    batches = 0
    for batch in dm.train_dataloader():
        counts.update(batch["source"].tolist())
        batches += 1
    seconds = time.perf_counter() - start
    total = sum(counts.values())
    weights = {name: float(src.get("weight", 1.0)) for name, src in dm.train_cfg.items()}
    norm = sum(weights.values())
    sources = {}
    for i, name in enumerate(dm.source_names):
        share = counts[i] / total if total else 0.0
        sources[name] = {"weight": round(weights[name] / norm, 6), "count": counts[i], "share": round(share, 6),
                         "diff_points": round(100.0 * (share - weights[name] / norm), 3)}
    return {
        "draws": total, "batches": batches, "batch_size": dm.batch_size, "num_workers": dm.num_workers,
        "sources": sources,
        "max_abs_diff_points": max(abs(s["diff_points"]) for s in sources.values()),
        "skipped": dm.skipped.count, "skip_reasons": dict(dm.skipped.reasons),
        "seconds": round(seconds, 2), "samples_per_second": round(total / seconds, 1) if seconds else None,
    }

