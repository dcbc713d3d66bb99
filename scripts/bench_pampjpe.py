"""Benchmark PA-MPJPE: the batched torch core (metrics.functional.pa_mpjpe) vs a per-sample numpy loop.

Both run in one process on the same random float64 data (--samples x 14 joints, metres) and must
agree to 1e-6 mm. Prints and writes JSON (--out) with both times and their ratio; on a machine
with CUDA, the batched time on the GPU is added.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from metrics.functional import pa_mpjpe


def numpy_pa_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """One sample, (J, 3) metres -> mm: Umeyama with an SVD of the 3x3 cross-covariance, det fix."""
    mu_p, mu_t = pred.mean(axis=0), target.mean(axis=0)
    xc, yc = pred - mu_p, target - mu_t
    u, s, vt = np.linalg.svd(yc.T @ xc)
    d = np.array([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = (u * d) @ vt
    scale = (s * d).sum() / (xc ** 2).sum()
    aligned = scale * xc @ rot.T + mu_t
    return float(np.linalg.norm(aligned - target, axis=1).mean() * 1000.0)


def timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="bench/results/pampjpe.json")
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--joints", type=int, default=14)
    p.add_argument("--repeats", type=int, default=3, help="batched timing: best of this many runs")
    a = p.parse_args()

    g = torch.Generator().manual_seed(0)
    target = torch.randn(a.samples, a.joints, 3, generator=g, dtype=torch.float64) * 0.3
    pred = target + torch.randn(a.samples, a.joints, 3, generator=g, dtype=torch.float64) * 0.05
    pred_np, target_np = pred.numpy(), target.numpy()

    pa_mpjpe(pred[:64], target[:64])                                      # warm-up
    batched_s, batched = timed(lambda: pa_mpjpe(pred, target), a.repeats)
    loop_s, looped = timed(lambda: np.array([numpy_pa_mpjpe(x, y) for x, y in zip(pred_np, target_np)]), 1)
    max_diff = float(np.abs(batched.numpy() - looped).max())
    if max_diff > 1e-6:
        raise SystemExit(f"batched and numpy PA-MPJPE disagree by {max_diff:.3g} mm")

    results = {
        "what": f"PA-MPJPE of {a.samples} samples x {a.joints} joints, float64, seconds",
        "torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "batched_torch_cpu_s": round(batched_s, 4),
        "numpy_loop_s": round(loop_s, 4),
        "speedup_loop_over_batched": round(loop_s / batched_s, 1),
        "mean_pa_mpjpe_mm": round(float(batched.mean()), 4),
        "max_abs_diff_mm": max_diff,
    }
    if torch.cuda.is_available():
        pc, tc = pred.cuda(), target.cuda()
        pa_mpjpe(pc, tc)
        torch.cuda.synchronize()

        def on_gpu():
            out = pa_mpjpe(pc, tc)
            torch.cuda.synchronize()
            return out
        gpu_s, _ = timed(on_gpu, a.repeats)
        results["batched_torch_cuda_s"] = round(gpu_s, 4)
        results["cuda_device"] = torch.cuda.get_device_name()

    print(f"batched torch (cpu): {batched_s:.3f} s")
    print(f"numpy per-sample loop: {loop_s:.3f} s")
    print(f"ratio loop / batched: {loop_s / batched_s:.1f}x   (max |diff| {max_diff:.2e} mm)")
    if "batched_torch_cuda_s" in results:
        print(f"batched torch (cuda): {results['batched_torch_cuda_s']:.4f} s")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
