"""``python -m cli.make_data``: generate the synthetic data set (``make data``).

    python -m cli.make_data --out data/synthetic --seed 0 --size 1.0 [--workers N]
                            [--body open|smpl] [--smpl-dir DIR]

The generator is :mod:`datamodules.synthetic`. Skips the work when ``<out>/manifest.json`` already
describes the same seed, size and body; errors are one line (exit status 2).
"""
from __future__ import annotations

import argparse
import os

from datamodules.synthetic.dataset import generate
from runtime.cli import run_cli


def default_workers() -> int:
    """The CPUs this process may use, at most 8 (the output does not depend on it)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cli.make_data", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/synthetic", help="output folder (default: data/synthetic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--size", type=float, default=1.0,
                   help="multiplier of the default counts: 1000 per training source, 100 per evaluation set")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="worker processes (default: the CPUs available, at most 8; same output for any value)")
    p.add_argument("--body", choices=("open", "smpl"), default="open", help="body asset set (default: open)")
    p.add_argument("--smpl-dir", default=None, help="folder of the licensed SMPL files (with --body smpl)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    generate(args.out, seed=args.seed, size=args.size, workers=args.workers, asset_set=args.body,
             smpl_dir=args.smpl_dir)


if __name__ == "__main__":
    run_cli(main)
