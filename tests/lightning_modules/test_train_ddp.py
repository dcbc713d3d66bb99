"""make train on two processes (DDP with gloo on the CPU), each model: both ranks take the same number of
steps (a rank with fewer batches would leave the other waiting in its gradient all-reduce until the timeout),
validation gathers both ranks' samples, and the side effects (config, log, checkpoints, printing) are rank 0's.

Not verifiable here and left to a GPU cluster: SyncBatchNorm (CUDA only), NCCL, several nodes."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BATCH, EPOCH_SAMPLES, EPOCHS = 2, 16, 2     # 16 samples per epoch over 2 ranks of batch 2: 4 steps each


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hmr", "pymaf", "bigraph"])
def test_two_process_training(synthetic_5_per_set, tmp_path, model):
    extra = ["model.net.width=0.125"] if model == "bigraph" else []
    cmd = [sys.executable, "-m", "cli.train", f"model={model}", "model.backbone.width=8", *extra,
           f"data.root={synthetic_5_per_set}", f"data.batch_size={BATCH}", "data.eval_batch_size=2",
           "data.num_workers=0", f"data.train.epoch_samples={EPOCH_SAMPLES}", f"trainer.max_epochs={EPOCHS}",
           "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.limit_train_batches=null",
           "trainer.limit_val_batches=null", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
           f"out_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run_dir = tmp_path / f"{model}-synthetic-s0"
    steps = EPOCH_SAMPLES // (2 * BATCH) * EPOCHS
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == steps and last["epoch"] == EPOCHS - 1
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({int(r["step"]) for r in rows if r.get("train/loss")}) == list(range(steps))
    validated = [r for r in rows if r.get("val/3dpw/mpjpe") or r.get("val/3dpw/mpjpe_np")]
    assert len(validated) == EPOCHS
    assert done.stdout.count(f"new run {run_dir}") == 1 and done.stdout.count('"run_dir"') == 1   # rank 0 prints
    assert done.stdout.count("(mean pose ") == 1                          # the baseline, over both ranks
    assert not list(run_dir.glob(".config.yaml.*")) and (run_dir / "config.yaml").is_file()
