"""``make eval`` on two processes (DDP with gloo on the CPU) gives the row of one process, every set."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from cli import train

REPO = Path(__file__).resolve().parents[2]


def run_eval(ckpt: str, root: Path, out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "cli.evaluate", f"ckpt={ckpt}", f"data.root={root}", "data.eval_batch_size=2",
           "data.num_workers=0", "trainer.accelerator=cpu", f"out={out}", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_processes_give_the_row_of_one(tmp_path, synthetic_5_per_set):
    root = synthetic_5_per_set
    summary = train.main(["model=pymaf", "model.backbone.width=8", f"data.root={root}", "data.batch_size=4",
                          "data.eval_batch_size=2", "data.num_workers=0", "trainer.max_epochs=1",
                          "trainer.limit_train_batches=1", "trainer.limit_val_batches=0", f"out_dir={tmp_path}"])
    one = run_eval(summary["last_checkpoint"], root, tmp_path / "one.json")
    two = run_eval(summary["last_checkpoint"], root, tmp_path / "two.json", "trainer.devices=2",
                   "trainer.strategy=ddp")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert list(one["sets"]) == ["3dpw", "h36m", "up3d", "lsp", "coco"]
    for name, row in one["sets"].items():
        assert row["samples"] == row["evaluated"] == 5, name
        assert all(v is not None for v in row["columns"].values()), name
    assert_same_values(two["sets"], one["sets"], "sets")


def assert_same_values(got, want, where: str) -> None:
    """Equal structure, counts and names; numbers equal to float32 precision. The two runs put different
    samples in each forward (and each process runs on fewer threads), so float32 kernels may round the last
    bit differently, and the JSON's 4-decimal rounding can then fall on either side (454.9551 / 454.9552)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            assert_same_values(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_values(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert math.isclose(got, want, rel_tol=2e-6, abs_tol=2e-4), (where, got, want)
    else:
        assert got == want, (where, got, want)
