"""make train's progress in a log file: plain lines instead of a bar, throughput metrics, a last summary line."""
from __future__ import annotations

import csv
import re

from callbacks.progress import format_duration
from cli import train


def test_a_run_without_a_terminal_prints_plain_lines_and_logs_throughput(tiny_data_module, tmp_path, capsys):
    summary = train.main(["model=hmr", "model.backbone.width=8", f"data.root={tiny_data_module.root}",
                          "data.batch_size=2", "data.eval_batch_size=4", "data.num_workers=0",
                          "data.train.epoch_samples=8", "trainer.max_epochs=2", "trainer.limit_train_batches=null",
                          "trainer.limit_val_batches=1", "trainer.log_every_n_steps=2", f"out_dir={tmp_path}"])
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    pattern = r"epoch (\d)/2 step (\d+)/8 loss [-\d.e+]+ \| [\d,]+ samples/s, data \d+% \| ETA .+"
    assert [re.fullmatch(pattern, line).groups() for line in lines] == \
        [("1", "2"), ("1", "4"), ("2", "6"), ("2", "8")], lines
    assert "\r" not in captured.err                                    # no progress bar redraws in the log
    assert captured.out.rstrip().splitlines()[-1].startswith(f"done: {summary['run_dir']} at step 8 after ")
    assert "val/3dpw/pa_mpjpe " in captured.out.rstrip().splitlines()[-1]
    with open(f"{summary['run_dir']}/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/samples_per_s")]
    assert [int(r["step"]) for r in rows] == [1, 3, 5, 7]              # logged at the logging interval
    assert all(float(r["train/samples_per_s"]) > 0 and 0 <= float(r["train/data_share"]) <= 1 for r in rows)


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (0, 59, 61, 3599, 3600 * 3 + 60 * 12, 86400 * 2 + 3600 * 5)] == \
        ["0 s", "59 s", "1m01s", "59m59s", "3h12m", "2d05h"]
