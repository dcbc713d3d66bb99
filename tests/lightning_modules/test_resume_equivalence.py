"""A stopped and resumed run is the uninterrupted run: 20 steps in one go, and 10 steps + SIGTERM + the same
command + the rest, give bitwise-identical weights, optimiser state, step counts and logged losses.

The runs have what makes this hard: dropout (PyMAF's regressor) and BiGraph's ground-truth joint mixing draw from
torch's global generator, augmentation from the stream's own, two loader workers split the batches, and the 20
steps cross two epoch ends with a validation at each. The stop lands inside an epoch, so the resumed run must
continue the data stream mid-epoch (``datamodules.loaders``) and the random states (``callbacks.random_states``).
"""
from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import torch

from cli import train
from lightning_modules.base import MeshRecoveryModule

BATCH, EPOCH_SAMPLES, STEPS = 2, 16, 20      # 8 steps per epoch: epoch ends after steps 8 and 16
STOP_AT = 10                                  # inside the second epoch


def _args(root, out: Path, model: str) -> list[str]:
    extra = ["model.net.width=0.125"] if model == "bigraph" else []
    return [f"model={model}", "model.backbone.width=8", *extra, f"data.root={root}", f"data.batch_size={BATCH}",
            "data.eval_batch_size=2", "data.num_workers=2", "data.img_res=64", "data.shuffle_buffer=8",
            f"data.train.epoch_samples={EPOCH_SAMPLES}", "data.augment.enabled=true", "trainer.max_epochs=3",
            f"trainer.max_steps={STEPS}", "trainer.limit_train_batches=null", "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1", "checkpoint_minutes=null", "callbacks=[checkpoint,preemption]",
            f"out_dir={out}"]


def _train_rows(run_dir: Path) -> dict[int, dict[str, str]]:
    """step -> the training losses logged at it (throughput columns are wall-clock, left out)."""
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    out: dict[int, dict[str, str]] = {}
    for row in rows:
        losses = {k: v for k, v in row.items() if k.startswith("train/") and v and k not in
                  ("train/samples_per_s", "train/data_share")}
        if losses:
            out.setdefault(int(row["step"]), {}).update(losses)
    return out


def _assert_bitwise(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        same = torch.equal(a, b)
        assert same, f"{where}: max difference {(a.double() - b.double()).abs().max().item():.3g}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=str) == sorted(b, key=str), where
        for k in a:
            _assert_bitwise(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_bitwise(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pymaf", "bigraph"])
def test_stopped_and_resumed_run_equals_the_uninterrupted_one(synthetic_5_per_set, tmp_path, monkeypatch, model):
    whole = train.main(_args(synthetic_5_per_set, tmp_path / "whole", model))

    def stop(self, outputs, batch, batch_idx):     # as a cluster would: SIGTERM from outside, mid-epoch
        if self.global_step == STOP_AT - 1:         # the ranks agree at the end of the next step, then save
            os.kill(os.getpid(), signal.SIGTERM)

    args = _args(synthetic_5_per_set, tmp_path / "parts", model)
    with monkeypatch.context() as patched:
        patched.setattr(MeshRecoveryModule, "on_train_batch_end", stop, raising=False)
        with pytest.raises(SystemExit):
            train.main(args)
    run_dir = tmp_path / "parts" / f"{model}-synthetic-s0"
    saved = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == STOP_AT
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == STOP_AT - EPOCH_SAMPLES // BATCH
    parts = train.main(args)                        # the same command resumes

    a = torch.load(whole["last_checkpoint"], map_location="cpu", weights_only=True)
    b = torch.load(parts["last_checkpoint"], map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS and a["epoch"] == b["epoch"]
    _assert_bitwise(a["state_dict"], b["state_dict"], "weights")
    _assert_bitwise(a["optimizer_states"], b["optimizer_states"], "optimiser")
    _assert_bitwise(a["loops"]["fit_loop"]["epoch_loop.batch_progress"],
                    b["loops"]["fit_loop"]["epoch_loop.batch_progress"], "batch progress")
    logged_a, logged_b = _train_rows(Path(whole["run_dir"])), _train_rows(run_dir)
    assert sorted(logged_a) == list(range(STEPS)) and logged_a == logged_b
