"""``make export-body``: write an asset set in the formats other codebases read (a stable command):

    python -m cli.export_body --asset-set open --out DIR

The files and their layouts are described in :mod:`body.export` (``SMPL_NEUTRAL.pkl``,
``mesh_downsampling.npz``, ``vertex_ids.json``, SPIN's regressors and mean parameters).
"""
from __future__ import annotations

import argparse
import sys

from body.assets import ASSET_SETS, GENDERS, load_asset_set
from body.export import export_asset_set
from runtime.cli import run_cli


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Export a body asset set for SMPL/SPIN/GraphCMR-style codebases.")
    p.add_argument("--asset-set", default="open", choices=ASSET_SETS)
    p.add_argument("--gender", default="neutral", choices=GENDERS)
    p.add_argument("--smpl-dir", default=None, help="folder of licensed SMPL files (asset set 'smpl')")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    for path in export_asset_set(load_asset_set(a.asset_set, a.gender, a.smpl_dir), a.out):
        print(path)
    print("note: pass vertex_ids=json.load(open('vertex_ids.json')) to smplx.SMPL for correct extra joints",
          file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
