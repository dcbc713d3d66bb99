"""Benchmark ``make demo`` on 100 images of one person against the same model's bare ONNX Runtime inference.

For each model at full width (configs/model/*.yaml, the open body model, random weights: speed does not depend on
them) a checkpoint is written, and 100 photos of one person: scikit-image's astronaut (512 x 512), each shifted
sideways by a few pixels, with her box (``<stem>_bbox.json``) and, for BiGraph, her OpenPose keypoints
(``<stem>_openpose.json``). Then, one after the other in one process:

- ``demo``: ``cli.demo.main`` with ``backend=onnx`` at ``--batch`` images per batch on the folder: reading each
  photo and its files, cropping, the network in ONNX Runtime, and every output (overlay, front and side views,
  ``.obj``, JSON). The graph is exported by a warm-up run on two photos, so export is not timed.
- ``bare``: the demo's own ONNX Runtime session on the same 100 network inputs (cropped beforehand) at the same
  batch size: the network alone.

Reported: images/s of each, their ratio (the issue's goal: the demo within 1.5x of bare inference), and where the
demo's time goes (reading, cropping, network, each picture and file), from timers wrapped around the demo's
functions. The medians of ``--repeats`` runs of each.

    python scripts/bench_demo.py --out bench/results/demo.json [--models pymaf bigraph] [--images 100] [--batch 16]
                                 [--outputs overlay,obj,views,json]   (the demo's outputs=; default all)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))          # bench_models
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))      # tests.test_demo (the astronaut's joints)

def write_photos(folder: Path, count: int) -> None:
    """``count`` shifted astronauts with their box and OpenPose files."""
    from PIL import Image
    from skimage import data

    from tests.test_demo import ASTRONAUT_OPENPOSE, openpose_json   # her joints, read off the photo

    photo = data.astronaut()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shift = (i % 21) - 10
        Image.fromarray(np.roll(photo, shift, axis=1)).save(folder / f"astronaut_{i:03d}.png")
        (folder / f"astronaut_{i:03d}_bbox.json").write_text(json.dumps({"bbox": [110 + shift, 20, 300, 492]}))
        shifted = {j: (x + shift, y) for j, (x, y) in ASTRONAUT_OPENPOSE.items()}
        (folder / f"astronaut_{i:03d}_openpose.json").write_text(json.dumps(openpose_json(shifted)))


def write_checkpoint(name: str, path: Path) -> Path:
    """A checkpoint ``load_module`` reads: the full-width module of ``scripts/bench_models.py`` (seeded)."""
    from omegaconf import OmegaConf

    from bench_models import build

    module = build(name)
    model_cfg = OmegaConf.to_container(OmegaConf.load(Path("configs/model") / f"{name}.yaml"))
    torch.save({"hyper_parameters": {"model": model_cfg, "body": {"name": "open"}, "img_res": 224},
                "state_dict": module.state_dict()}, path)
    return path


class StageTimers:
    """Wall-clock seconds spent in named functions, by wrapping them in their modules while active."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._patches: list[tuple[object, str, object]] = []

    def wrap(self, owner, attribute: str, stage: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        self._patches.append((owner, attribute, original))
        setattr(owner, attribute, timed)

    @contextmanager
    def active(self):
        from cli import demo
        from datamodules import people
        from datamodules.convert import crop
        from lightning_modules.predictor import Predictor

        self.wrap(crop, "load_rgb", "read photo")
        self.wrap(people, "people_in", "read box/keypoint files")
        self.wrap(Predictor, "network_input", "crop to network input")
        self.wrap(Predictor, "_run", "network (ONNX Runtime)")
        self.wrap(demo, "photo_overlay", "draw overlay")
        self.wrap(demo, "mesh_views", "draw front + side views")
        self.wrap(demo, "write_obj", "write .obj")
        self.wrap(demo.json, "dumps", "write JSON")
        self.wrap(sys.modules["body.render"], "save_png", "encode PNGs")
        try:
            yield self
        finally:
            for owner, attribute, original in reversed(self._patches):
                setattr(owner, attribute, original)
            self._patches.clear()


def bench_model(name: str, folder: Path, photos: Path, images: int, batch: int, repeats: int, outputs: str) -> dict:
    from cli import demo
    from datamodules.convert.crop import load_rgb
    from datamodules.people import people_in

    ckpt = write_checkpoint(name, folder / f"{name}.ckpt")
    warm = folder / f"{name}_warm"
    warm.mkdir()
    for path in sorted(photos.iterdir())[:6]:                                  # two photos and their files
        (warm / path.name).write_bytes(path.read_bytes())
    t = time.perf_counter()
    demo.main([f"ckpt={ckpt}", f"input={warm}", f"output={folder / 'warm_out'}", "backend=onnx",
               f"batch_size={batch}"])                                         # exports <ckpt>.onnx
    export_s = time.perf_counter() - t
    from lightning_modules.predictor import Predictor

    predictor = Predictor.from_checkpoint(str(ckpt), batch_size=batch, backend="onnx")   # reuses the graph
    paths = sorted(photos.glob("*.png"))[:images]
    items = []
    for path in paths:
        image, _ = load_rgb(str(path))
        (person,) = people_in(path, image.shape[1], image.shape[0], need_joints=predictor.needs_joints)
        items.append(predictor.network_input(image, person))

    def bare() -> None:
        for start in range(0, len(items), batch):
            predictor._run(items[start:start + batch])

    demo_s, bare_s, stages = [], [], []
    for r in range(repeats):
        t = time.perf_counter()
        bare()
        bare_s.append(time.perf_counter() - t)
        timers = StageTimers()
        with timers.active():
            t = time.perf_counter()
            demo.main([f"ckpt={ckpt}", f"input={photos}", f"output={folder / f'out_{r}'}", "backend=onnx",
                       f"batch_size={batch}", f"outputs={outputs}"])
            demo_s.append(time.perf_counter() - t)
        stages.append(dict(timers.seconds))
    demo_median, bare_median = statistics.median(demo_s), statistics.median(bare_s)
    middle = stages[demo_s.index(sorted(demo_s)[len(demo_s) // 2])]
    out = {"export_and_warm_up_s": round(export_s, 1), "images": len(paths), "batch": batch, "outputs": outputs,
           "demo_images_per_s": round(len(paths) / demo_median, 2),
           "bare_onnx_images_per_s": round(len(paths) / bare_median, 2),
           "ratio_demo_over_bare": round(demo_median / bare_median, 2),
           "demo_s": [round(s, 2) for s in demo_s], "bare_s": [round(s, 2) for s in bare_s],
           "demo_stages_s": {k: round(v, 2) for k, v in sorted(middle.items(), key=lambda kv: -kv[1])},
           "demo_unaccounted_s": round(demo_median - sum(middle.values()), 2)}   # start-up, bookkeeping
    print(name, json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/demo.json")
    parser.add_argument("--models", nargs="+", default=["pymaf", "bigraph"])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--outputs", default="overlay,obj,views,json")
    args = parser.parse_args()
    import onnxruntime

    results = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                           "cpus": os.cpu_count(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
               "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        write_photos(photos, args.images)
        for name in args.models:
            folder = Path(tmp) / name
            folder.mkdir()
            results["models"][name] = bench_model(name, folder, photos, args.images, args.batch, args.repeats,
                                                  args.outputs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
