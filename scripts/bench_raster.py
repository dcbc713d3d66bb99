"""Micro-benchmark of the torch rasteriser (body/raster.py) with silhouette + IUV rendering.

The mesh is a smooth random blob on a latitude-longitude sphere with SMPL's sizes (6,890 vertices,
13,776 faces), rotated differently per batch element and placed so that its silhouette covers about
half of the image pixels. Timings are wall-clock medians over a few repeats after one warm-up run
(CPU timings are sensitive to other processes on the machine).

    python scripts/bench_raster.py [--out bench/results/raster.json] [--batch 64] [--sizes 56 224]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from body.raster import rasterize  # noqa: E402
from body.render import iuv_map, silhouette  # noqa: E402


def blob_mesh(n_rings: int = 82, n_lon: int = 84, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed latitude-longitude sphere with a smooth random radial bump field.

    Returns:
        verts: (n_rings * n_lon + 2, 3) float32 (6,890 for the defaults), centred, radius ~1.
        faces: (2 * n_lon * n_rings, 3) long (13,776 for the defaults), outward counter-clockwise.
    """
    g = torch.Generator().manual_seed(seed)
    theta = torch.arange(1, n_rings + 1, dtype=torch.float64) * math.pi / (n_rings + 1)  # polar angle
    phi = torch.arange(n_lon, dtype=torch.float64) * 2 * math.pi / n_lon
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([th.sin() * ph.cos(), th.cos(), th.sin() * ph.sin()], -1).reshape(-1, 3)
    dirs = torch.cat([torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), ring,
                      torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)])
    k = torch.randn(6, 3, generator=g, dtype=torch.float64) * 2.0
    a = torch.rand(6, generator=g, dtype=torch.float64) * 0.08
    radius = 1.0 + (a * torch.sin(dirs @ k.t() * 1.5)).sum(-1)
    verts = dirs * radius[:, None] * torch.tensor([0.8, 1.0, 0.7], dtype=torch.float64)

    def idx(r, c):
        return 1 + r * n_lon + c % n_lon

    c = torch.arange(n_lon)
    top = torch.stack([torch.zeros_like(c), idx(0, c + 1), idx(0, c)], -1)
    bottom_pole = n_rings * n_lon + 1
    bottom = torch.stack([torch.full_like(c, bottom_pole), idx(n_rings - 1, c), idx(n_rings - 1, c + 1)], -1)
    r = torch.arange(n_rings - 1)[:, None]
    q00, q01, q10, q11 = idx(r, c), idx(r, c + 1), idx(r + 1, c), idx(r + 1, c + 1)
    quads = torch.cat([torch.stack([q00, q01, q11], -1).reshape(-1, 3),
                       torch.stack([q00, q11, q10], -1).reshape(-1, 3)])
    faces = torch.cat([top, quads, bottom])
    # orient outwards (counter-clockwise around the outward normal)
    v = verts[faces]
    n = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
    flip = (n * v.mean(1)).sum(-1) < 0
    faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    return verts.float(), faces


def screen_batch(verts: torch.Tensor, batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """(B, V, 3) pixel x, y and depth of randomly rotated copies of the blob, SPIN-like focal length
    (5000 px at 224), placed so that the silhouettes cover about half of the image pixels."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 4, generator=g)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).view(batch, 3, 3)
    focal = 5000.0 * size / 224
    dist = 2.2 * focal / size  # projected extent ~2 * focal / dist ~ 0.9 * size: about half the pixels
    cam = verts[None] @ R.transpose(1, 2) + torch.tensor([0.0, 0.0, dist])
    u = focal * cam[..., 0] / cam[..., 2] + size / 2
    v = focal * cam[..., 1] / cam[..., 2] + size / 2
    return torch.stack([u, v, cam[..., 2]], -1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/raster.json")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sizes", type=int, nargs="+", default=[56, 224])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    verts, faces = blob_mesh()
    vertex_iuv = torch.cat([(torch.arange(verts.shape[0]) % 24 + 1)[:, None].float(),
                            (verts[:, :2] + 1) / 2], -1)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    results = {"mesh": {"verts": verts.shape[0], "faces": faces.shape[0]}, "batch": args.batch,
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "machine": platform.processor() or platform.machine(), "runs": []}
    for dname in devices:
        device = torch.device(dname)
        f_d, iuv_d = faces.to(device), vertex_iuv.to(device)
        for size in args.sizes:
            vs = screen_batch(verts, args.batch, size).to(device)
            frag = rasterize(vs, f_d, (size, size))
            coverage = frag.mask.float().mean().item()

            def raster_only():
                rasterize(vs, f_d, (size, size))

            def full():
                fr = rasterize(vs, f_d, (size, size))
                silhouette(fr)
                iuv_map(fr, f_d, iuv_d)

            row = {"device": str(device), "size": size, "coverage": round(coverage, 4)}
            if hasattr(os, "getloadavg"):  # a loaded machine inflates CPU timings: record how busy it was
                row["loadavg_1min_before"] = round(os.getloadavg()[0], 2)
            for name, fn in (("rasterize", raster_only), ("rasterize+silhouette+iuv", full)):
                ts = time_ms(fn, device, args.repeats)
                row[name + "_ms"] = round(statistics.median(ts), 2)
            results["runs"].append(row)
            print(f"{dname:5s} {size:4d}x{size:<4d} B={args.batch}  coverage {coverage:.3f}  "
                  f"rasterize {row['rasterize_ms']:9.1f} ms   "
                  f"+silhouette+iuv {row['rasterize+silhouette+iuv_ms']:9.1f} ms", flush=True)
    if sys.platform != "win32":
        import resource

        results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
