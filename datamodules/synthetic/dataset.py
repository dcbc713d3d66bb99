"""Write the synthetic data set: the plan, the batches, worker processes, shards, manifest, atomic replace.

Layout under ``out``::

    train/<source>/<source>-000000.tar ...   (SHARD_SIZE samples a shard)
    eval/<set>/<set>-000000.tar ...
    manifest.json   {"format": "meshrec-synthetic", "version": 1, "seed", "size", "asset_set", "generator",
                     "train": {source: {"count", "shards": [paths relative to out], "shard_counts"}},
                     "eval": {...}}

The data set is written into a sibling temporary folder and renamed into place when complete, so an
interrupted run never leaves a folder that looks complete; the manifest is written last. A folder with
a manifest of the same format, version, seed, size, asset set and generator fingerprint (a hash of
the generating code) is kept as it is (:func:`generate`
returns without work); one with another manifest is replaced; any other non-empty folder is refused.

Batches are fixed: every source is cut into batches of ``BATCH`` consecutive indices, whatever the
number of workers, and torch runs single-threaded inside each (worker) process, so the shards are
byte-identical for any ``workers`` (see :mod:`.scene` for the seeding).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from body.assets import load_asset_set
from datamodules.sample import Sample
from datamodules.shards import write_shards
from datamodules.synthetic.scene import SceneGenerator
from datamodules.synthetic.sources import SPLITS, SourceSpec, scaled_count
from runtime.errors import UserError

FORMAT_NAME: str = "meshrec-synthetic"
FORMAT_VERSION: int = 1
SHARD_SIZE: int = 500
BATCH: int = 16
MANIFEST: str = "manifest.json"


@dataclass(frozen=True)
class Task:
    """One batch: samples ``start .. start + count - 1`` of ``split``/``source``."""

    split: str
    source: str
    start: int
    count: int


def plan(size: float) -> list[tuple[SourceSpec, int]]:
    """Every source of every split with its sample count for ``size`` (train first, then eval)."""
    if not (size > 0 and math.isfinite(size)):
        raise UserError(f"--size must be a positive number, got {size}")
    return [(spec, scaled_count(spec, size)) for split in ("train", "eval") for spec in SPLITS[split].values()]


def tasks_for(spec: SourceSpec, count: int, batch: int = BATCH) -> list[Task]:
    """The fixed batches of a source."""
    return [Task(spec.split, spec.name, s, min(batch, count - s)) for s in range(0, count, batch)]


def shard_counts(count: int, shard_size: int = SHARD_SIZE) -> list[int]:
    """Samples per shard when ``count`` samples are cut into shards of ``shard_size``."""
    return [min(shard_size, count - s) for s in range(0, count, shard_size)]


def generator_fingerprint() -> str:
    """Short hash of the code that decides the samples' content (this package, the pose library, the
    sample format), so that a changed generator regenerates instead of reusing stale data."""
    import hashlib

    root = Path(__file__).resolve().parent
    files = sorted(root.glob("*.py")) + [
        root.parent.parent / "body" / "poses.py", root.parent / "schema.py", root.parent / "sample.py",
        root.parent / "shards.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def manifest_matches(out: Path, seed: int, size: float, asset_set: str) -> bool:
    """``out/manifest.json`` exists and describes this very data set, made by this generator."""
    try:
        m = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(m, dict) and m.get("format") == FORMAT_NAME and m.get("version") == FORMAT_VERSION
            and m.get("seed") == seed and m.get("size") == size and m.get("asset_set") == asset_set
            and m.get("generator") == generator_fingerprint())


# ----------------------------------------------------------------------------------------------
# Running batches, in this process or in workers
# ----------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(asset_set: str, smpl_dir: str | None, seed: int) -> None:
    torch.set_num_threads(1)
    _WORKER.update(generator=SceneGenerator.from_config(asset_set, smpl_dir), seed=seed)


def _run_task(task: Task) -> list[Sample]:
    spec = SPLITS[task.split][task.source]
    return _WORKER["generator"].samples(_WORKER["seed"], spec, range(task.start, task.start + task.count))


def _results(tasks: list[Task], workers: int, asset_set: str, smpl_dir: str | None, seed: int) -> Iterator[list[Sample]]:
    """Samples of each task, in task order."""
    if workers <= 1:
        threads = torch.get_num_threads()
        try:
            _init_worker(asset_set, smpl_dir, seed)
            for task in tasks:
                yield _run_task(task)
        finally:
            torch.set_num_threads(threads)
            _WORKER.clear()
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(asset_set, smpl_dir, seed)) as pool:
        yield from pool.imap(_run_task, tasks, chunksize=1)


# ----------------------------------------------------------------------------------------------
# The data set
# ----------------------------------------------------------------------------------------------
def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise UserError(f"--out {out} is a non-empty folder without a synthetic-data manifest: "
                        "refusing to replace it; remove it or choose another --out")


def _write_split_source(tmp: Path, spec: SourceSpec, count: int, batches: Iterator[list[Sample]],
                        n_tasks: int) -> dict:
    folder = Path(spec.split) / spec.name
    pattern = str(tmp / folder / f"{spec.name}-%06d.tar")

    def samples() -> Iterator[Sample]:
        for _ in range(n_tasks):
            yield from next(batches)

    paths = write_shards(samples(), pattern, max_count=SHARD_SIZE)
    counts = shard_counts(count)
    if len(paths) != len(counts):  # write_shards starts a shard only on count (sizes are far below max_size)
        raise RuntimeError(f"{spec.split}/{spec.name}: {len(paths)} shards written, {len(counts)} expected")
    return {"count": count, "shards": [str(Path(p).relative_to(tmp)) for p in paths], "shard_counts": counts}


def generate(out: str | os.PathLike, seed: int = 0, size: float = 1.0, workers: int = 1, asset_set: str = "open",
             smpl_dir: str | None = None, log: Callable[[str], None] | None = print) -> dict:
    """Generate the synthetic data set into ``out`` (module docstring); returns the manifest.

    Raises:
        UserError: a bad argument or an ``out`` that is not ours to replace.
    """
    if not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    size = float(size)
    items = plan(size)
    if manifest_matches(out, seed, size, asset_set):
        manifest = json.loads((out / MANIFEST).read_text())
        if log:
            log(f"{out}: synthetic data (seed {seed}, size {size:g}, body {asset_set}) already there; nothing to do")
        return manifest
    _check_target(out)
    load_asset_set(asset_set, "neutral", smpl_dir)  # fail here, in one line, not in a worker's initializer
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    manifest: dict = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "seed": seed, "size": size,
                      "asset_set": asset_set, "generator": generator_fingerprint(), "train": {}, "eval": {}}
    all_tasks = [tasks_for(spec, count) for spec, count in items]
    batches = _results([t for ts in all_tasks for t in ts], workers, asset_set, smpl_dir, seed)
    start = time.perf_counter()
    try:
        for (spec, count), tasks in zip(items, all_tasks):
            t0 = time.perf_counter()
            entry = _write_split_source(tmp, spec, count, batches, len(tasks))
            manifest[spec.split][spec.name] = entry
            if log:
                log(f"{spec.split}/{spec.name}: {count} samples, {len(entry['shards'])} shard(s), "
                    f"{time.perf_counter() - t0:.1f} s")
        batches.close()
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace(tmp, out)
    except BaseException:
        batches.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log:
        total = sum(v["count"] for split in ("train", "eval") for v in manifest[split].values())
        log(f"wrote {total} samples to {out} in {time.perf_counter() - start:.1f} s")
    return manifest


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``, replacing an older data set there."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
