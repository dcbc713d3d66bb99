"""``make convert``: a SPIN-format annotation npz plus its image folder -> shards (:mod:`datamodules.convert`).

    python -m cli.convert <dataset> --npz FILE --images ROOT --out DIR [...]
"""
from __future__ import annotations

import argparse
from typing import Sequence

from body.assets import smpl_folder
from datamodules.convert.datasets import DATASET_NAMES, DATASETS, SPLITS
from datamodules.convert.detections import DEFAULT_THRESHOLD
from datamodules.convert.fits import EXTREME_BETAS_MODES
from datamodules.convert.pipeline import MASK_MODES, ConvertSettings, convert, summary_line
from datamodules.sample import CROP_SIZE
from runtime.cli import run_cli


def parser() -> argparse.ArgumentParser:
    files = "; ".join(f"{n}: {', '.join(f'{k} {v}' for k, v in s.spin_files.items())}" for n, s in DATASETS.items())
    p = argparse.ArgumentParser(
        prog="python -m cli.convert",
        description="Convert a SPIN-format annotation npz plus its image folder into WebDataset shards "
                    "<out>/<dataset>-%06d.tar and <out>/convert_report.json.",
        epilog=f"SPIN/PyMAF/GraphCMR file names: {files}.")
    p.add_argument("dataset", choices=DATASET_NAMES, help="which dataset the npz is (its quirks and required keys)")
    p.add_argument("--npz", required=True, help="SPIN-format annotation file (data/dataset_extras/*.npz)")
    p.add_argument("--images", required=True, help="image root: imgname paths are relative to it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="which split the npz is (default: train); test also stores masks uncropped (mask_original)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default: 1000)")
    p.add_argument("--crop-size", type=int, default=CROP_SIZE, help=f"crop side in pixels (default: {CROP_SIZE})")
    p.add_argument("--body", choices=("open", "smpl"), default="open",
                   help="body model for 3dpw's ground-truth meshes (default: open, neutral only)")
    p.add_argument("--smpl-dir", default=None, help="folder of the licensed SMPL files for --body smpl")
    p.add_argument("--limit", type=int, default=None, help="convert only the first N rows")
    p.add_argument("--masks", default=None,
                   help="root of maskname/partname paths (default: --images; LSP test: the upi-s1h folder)")
    p.add_argument("--mask", choices=MASK_MODES, default="auto",
                   help="mask to store: parts (partname), silhouette (maskname), none; auto = parts if present")
    p.add_argument("--s-units", choices=("m", "mm"), default="m",
                   help="units of S in the npz (default: m, SPIN's; mm divides by 1000)")
    p.add_argument("--fits", default=None,
                   help="SMPL pseudo ground truth for rows without SMPL: SPIN's final fits (.npz: pose, betas, "
                        "valid_fit; one row per npz row), a (N, 82) .npy, or an EFT fitting file (.json)")
    p.add_argument("--fits-extreme-betas", choices=EXTREME_BETAS_MODES, default="zero",
                   help="a fit with any |beta| > 3: zero all its betas (default, SPIN's trainer) or keep them")
    p.add_argument("--detections", default="auto",
                   help="BiGraph's 2D joints: auto (the npz's openpose, else none), none, ground-truth (the npz's "
                        "part, on request only), an OpenPose JSON folder (<image stem>_keypoints.json, BODY_25), or "
                        "a COCO keypoint results .json (HRNet, ViTPose)")
    p.add_argument("--detections-images", default=None,
                   help="COCO annotation json whose images [{id, file_name}] map the results' image ids to images")
    p.add_argument("--detection-threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"drop detected people scoring below this (default {DEFAULT_THRESHOLD:g})")
    p.add_argument("--allow-pickle", action="store_true", help="read npz object arrays (pickles; trusted files only)")
    p.add_argument("--overwrite", action="store_true", help="replace existing <dataset>-*.tar shards in --out")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv``, convert, print the one-line summary; return the report."""
    a = parser().parse_args(argv)
    if a.body == "smpl":
        smpl_folder(a.smpl_dir, "--smpl-dir DIR")
    settings = ConvertSettings(
        dataset=a.dataset, npz=a.npz, images=a.images, out=a.out, split=a.split, shard_size=a.shard_size,
        crop_size=a.crop_size, body=a.body, smpl_dir=a.smpl_dir, limit=a.limit, masks=a.masks, mask=a.mask,
        s_units=a.s_units, allow_pickle=a.allow_pickle, overwrite=a.overwrite, fits=a.fits,
        fits_extreme_betas=a.fits_extreme_betas, detections=a.detections, detections_images=a.detections_images,
        detection_threshold=a.detection_threshold)
    report = convert(settings)
    print(summary_line(report))
    return report


if __name__ == "__main__":
    run_cli(main)
