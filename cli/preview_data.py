"""A contact sheet of a generated synthetic data set (for looking at it, and at its annotations).

One row per source (training sources, then evaluation sets); per sample two tiles: the crop as stored,
and the crop with its annotations drawn on it: labelled 2D keypoints (green dots, SPIN-49), BiGraph's
detected joints (red crosses, size by score), the part mask tinted (sources with masks) and, for the
evaluation sets, every 8th ground-truth vertex re-projected with the stored camera and the inverse of
``crop_to_image`` (blue dots): a check that images and annotations agree.

``make preview-data`` runs

    python -m cli.preview_data --data data/synthetic --out outputs/synthetic_preview.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from body.render import label_image, part_palette, save_png
from datamodules.sample import Sample
from datamodules.shards import read_shard
from datamodules.synthetic.placement import image_to_crop, project
from runtime.cli import run_cli
from runtime.errors import UserError


def _overlay(sample: Sample) -> np.ndarray:
    img = sample.image.astype(np.float64)
    if sample.mask is not None:
        pal = part_palette(6).numpy() * 255.0
        fg = sample.mask > 0
        img[fg] = 0.55 * img[fg] + 0.45 * pal[sample.mask[fg]]
    pil = Image.fromarray(img.astype(np.uint8))
    d = ImageDraw.Draw(pil)
    if sample.vertices is not None and sample.camera is not None:
        uv = image_to_crop(project(sample.vertices[::8], sample.camera["focal_length"],
                                   sample.camera["principal_point"]), sample.crop_to_image)
        for x, y in uv:
            d.point((float(x), float(y)), fill=(40, 90, 255))
    for x, y, c in sample.keypoints_2d:
        if c > 0:
            d.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=(40, 220, 60))
    for x, y, s in sample.bigraph_joints_2d:
        r = 2.0 + 3.0 * float(s)
        d.line([x - r, y - r, x + r, y + r], fill=(255, 40, 40), width=2)
        d.line([x - r, y + r, x + r, y - r], fill=(255, 40, 40), width=2)
    return np.asarray(pil)


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def contact_sheet(data: str | Path, per_source: int = 4, tile: int = 256) -> np.ndarray:
    """(H, W, 3) uint8 sheet of the first ``per_source`` samples of every source of the data set."""
    data = Path(data)
    try:
        manifest = json.loads((data / "manifest.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{data}/manifest.json not found or unreadable: generate the data first (make data)") from None
    rows = []
    for split in ("train", "eval"):
        for name, entry in manifest[split].items():
            samples: list[Sample] = []
            for shard in entry["shards"]:
                for s in read_shard(str(data / shard)):
                    samples.append(s)
                    if len(samples) == per_source:
                        break
                if len(samples) == per_source:
                    break
            cells = []
            for i, s in enumerate(samples):
                cells.append(label_image(_tile(s.image, tile), f"{split}/{name} {s.key}" if i == 0 else s.key or ""))
                cells.append(_tile(_overlay(s), tile))
            while len(cells) < 2 * per_source:
                cells.append(np.full((tile, tile, 3), 255, np.uint8))
            rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cli.preview_data", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--out", default="outputs/synthetic_preview.png")
    p.add_argument("--per-source", type=int, default=4)
    p.add_argument("--tile", type=int, default=256)
    args = p.parse_args(argv)
    path = save_png(args.out, contact_sheet(args.data, args.per_source, args.tile))
    print(f"wrote {path}")


if __name__ == "__main__":
    run_cli(main)
