"""Stopping and resuming make train: a signal saves the state, the same command resumes from the newest
checkpoint (only under the same config), and the metrics log keeps every row."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli import train
from lightning_modules.base import MeshRecoveryModule
from runtime.errors import UserError

STEPS_PER_EPOCH = 3


def _hmr_args(root, out, *extra: str) -> list[str]:
    return ["model=hmr", "model.backbone.width=8", f"data.root={root}", "data.batch_size=4", "data.eval_batch_size=4",
            "data.num_workers=0", "data.train.epoch_samples=12", "trainer.max_epochs=2",
            f"trainer.limit_train_batches={STEPS_PER_EPOCH}", "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1", f"out_dir={out}", *extra]


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _train_steps(rows: list[dict]) -> list[int]:
    return sorted({int(r["step"]) for r in rows if r.get("train/loss")})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_saves_and_the_same_command_resumes(tiny_data_module, tmp_path, monkeypatch, capsys, signum):
    args = _hmr_args(tiny_data_module.root, tmp_path)
    run_dir = tmp_path / "hmr-synthetic-s0"
    signal_at = STEPS_PER_EPOCH + 1                     # inside the second epoch, after a validation
    stop_at = signal_at + 1    # sent after this step's check: the ranks agree at the end of the next step

    def send(self, outputs, batch, batch_idx):
        if self.global_step == signal_at:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(MeshRecoveryModule, "on_train_batch_end", send, raising=False)
    with pytest.raises(SystemExit) as stopped:
        train.main(args)
    assert stopped.value.code == 143
    saved = run_dir / "hpc_ckpt_1.ckpt"
    assert torch.load(saved, map_location="cpu", weights_only=True)["global_step"] == stop_at
    before = _rows(run_dir)
    assert _train_steps(before)[-1] == stop_at - 1     # logged steps count from 0
    monkeypatch.undo()
    capsys.readouterr()

    summary = train.main(args)                          # the same command
    first = capsys.readouterr().out.splitlines()
    assert any(line == f"resuming {run_dir} from {saved} (step {stop_at})" for line in first[:3]), first[:3]
    after = _rows(run_dir)
    filled = lambda rows: [{k: v for k, v in r.items() if v} for r in rows]   # noqa: E731  (the header may grow)
    assert filled(after[:len(before)]) == filled(before)          # the interrupted run's rows, kept as they were
    assert _train_steps(after) == list(range(2 * STEPS_PER_EPOCH))
    final = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    assert final["global_step"] == 2 * STEPS_PER_EPOCH


def test_a_run_directory_with_another_config_is_not_resumed(tiny_data_module, tmp_path, capsys):
    args = _hmr_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=1")
    train.main(args)
    assert capsys.readouterr().out.splitlines()[1] == f"new run {tmp_path / 'hmr-synthetic-s0'}"
    with pytest.raises(UserError) as err:
        train.main(args + ["model.optim.lr=1e-3"])
    message = str(err.value)
    assert "another config (model.optim.lr: " in message and "run_name=" in message and "\n" not in message
    summary = train.main(args + ["model.optim.lr=1e-3", "trainer.max_epochs=2", "ckpt_path=last"])   # explicit
    assert torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)["global_step"] == \
        2 * STEPS_PER_EPOCH
    run_dir = tmp_path / "hmr-synthetic-s0"
    assert (run_dir / "config.1.yaml").is_file() and "0.001" in (run_dir / "config.yaml").read_text()
    assert _train_steps(_rows(run_dir)) == list(range(2 * STEPS_PER_EPOCH))   # one log, both parts


def test_a_new_run_moves_an_earlier_log_aside(tiny_data_module, tmp_path):
    args = _hmr_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=1", "callbacks=[]")
    train.main(args)                                    # no checkpoint: the next run is a new one
    train.main(args)
    run_dir = tmp_path / "hmr-synthetic-s0"
    assert _train_steps(_rows(run_dir)) == list(range(STEPS_PER_EPOCH))
    assert (run_dir / "metrics.1.csv").is_file() and _train_steps(_rows_of(run_dir / "metrics.1.csv")) == \
        list(range(STEPS_PER_EPOCH))


def _rows_of(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_loader_workers_saves_and_exits(tiny_data_module, tmp_path):
    """As a cluster stops a job: SIGTERM to every process (trainer and its two loader workers). The workers
    ignore it, the trainer saves and exits with 143, and no loader traceback is printed."""
    args = _hmr_args(tiny_data_module.root, tmp_path, "data.num_workers=2", "trainer.limit_train_batches=40",
                     "data.train.epoch_samples=160", "trainer.max_epochs=1", "trainer.limit_val_batches=0")
    run_dir = tmp_path / "hmr-synthetic-s0"
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cli.train", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.time() + 300
        while time.time() < deadline and "epoch 1/1 step 2/" not in (tmp_path / "log.txt").read_text() \
                and proc.poll() is None:                # the second step's progress line: training runs
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=300) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "log.txt").read_text()
    assert "stopped by a signal after step" in output, output[-3000:]
    assert "DataLoader worker" not in output and "Traceback" not in output, output[-3000:]
    saved = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    assert 2 <= saved["global_step"] < 40


def test_logger_none_writes_no_log_and_a_bad_name_lists_the_choices(tiny_data_module, tmp_path):
    summary = train.main(_hmr_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=1", "logger=none"))
    run_dir = Path(summary["run_dir"])
    assert Path(summary["last_checkpoint"]).is_file() and (run_dir / "config.yaml").is_file()
    assert not list(run_dir.glob("*.csv"))
    with pytest.raises(UserError) as err:
        train.main(_hmr_args(tiny_data_module.root, tmp_path, "logger.name=tensorboard", "run_name=other"))
    assert "valid choices are csv, wandb, none" in str(err.value)


def test_last_checkpoint_within_an_epoch_by_training_time_and_the_config_inside(tiny_data_module, tmp_path,
                                                                                monkeypatch):
    """checkpoint_minutes: last.ckpt is rewritten inside an epoch once that much training time has passed (here a
    few microseconds: at every step), and every checkpoint carries the run's resolved config."""
    seen = []

    def look(self, outputs, batch, batch_idx):   # module hooks run after the callbacks' (the checkpoint is written)
        seen.append((self.global_step, torch.load(tmp_path / "hmr-synthetic-s0" / "checkpoints" / "last.ckpt",
                                                  map_location="cpu", weights_only=True)["global_step"]))

    monkeypatch.setattr(MeshRecoveryModule, "on_train_batch_end", look, raising=False)
    summary = train.main(_hmr_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=1", "checkpoint_minutes=1e-7"))
    assert seen == [(1, 1), (2, 2), (3, 3)]
    saved = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    assert saved["run_config"]["checkpoint_minutes"] == 1e-7 and saved["run_config"]["model"]["name"] == "hmr"


@pytest.mark.parametrize("model", ["hmr", "pymaf", "bigraph"])
def test_a_saved_config_reads_back_equal_to_the_composed_one(tmp_path, model):
    """The same command resumes: the run directory's config.yaml compares equal to what the command composes
    (BiGraph's structured defaults held a tuple, which the YAML reads back as a list, and every resume stopped)."""
    from configs.loader import compose

    (tmp_path / "checkpoints").mkdir()
    args = [f"model={model}", f"out_dir={tmp_path}"]
    plain = train.plain_config(compose("train", args))
    train.save_config(plain, tmp_path)
    torch.save({"global_step": 3, "state_dict": {}}, tmp_path / "checkpoints" / "last.ckpt")
    ckpt, how = train.resume_point(train.plain_config(compose("train", args)), tmp_path)
    assert ckpt == str(tmp_path / "checkpoints" / "last.ckpt") and how.startswith("resuming"), how
