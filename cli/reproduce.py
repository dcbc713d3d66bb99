"""``make reproduce [SCALE=cpu|full|smoke] [SEEDS=0,1,2]``: the papers' central ablations in miniature, then the report.

    python -m cli.reproduce [scale=cpu] ['seeds=[0,1,2]'] [out_dir=...] [report=...] [key=value ...]

Every row of ``configs/reproduce.yaml`` (HMR's Baseline, PyMAF's feedback and auxiliary-supervision ablations,
BiGraph and its mesh-only row) is trained once per seed with the scale's optimiser steps, batch, backbone width
and input size, the same for every row, through ``make train``'s entry point (``cli.train``), and evaluated on the
evaluation sets through ``make eval``'s (``cli.evaluate``). A run whose evaluation JSON exists is not trained
again, so rerunning the command after an interruption continues where it stopped (a run cut short resumes from
its last checkpoint, as ``make train`` does). ``cli.report`` then writes ``reports/reproduction.md`` and its
figures from the runs' evaluation JSONs and training logs.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from configs.loader import compose
from runtime.cli import run_cli
from runtime.errors import UserError


def scale_settings(cfg) -> dict[str, Any]:
    """The chosen scale's settings; an unknown scale is a one-line error naming the valid ones."""
    scales = OmegaConf.to_container(cfg.scales, resolve=True)
    if cfg.scale not in scales:
        raise UserError(f"scale={cfg.scale}: valid choices are {', '.join(scales)}")
    return scales[cfg.scale]


def train_arguments(run: dict, seed: int, scale: dict, cfg, out_dir: Path) -> list[str]:
    """``make train`` arguments of one row and seed at one scale: every row alike but for its model and ablation."""
    steps, batch = int(scale["steps"]), int(scale["batch_size"])
    args = [f"model={run['model']}", f"seed={seed}", f"out_dir={out_dir}", f"run_name={run['name']}-s{seed}",
            f"data.root={scale['data_root']}", f"data.batch_size={batch}", f"data.img_res={scale['img_res']}",
            f"data.train.epoch_samples={steps * batch}", f"model.backbone.width={scale['backbone_width']}",
            f"trainer={scale['trainer']}", "trainer.max_epochs=1", f"trainer.max_steps={steps}",
            "trainer.limit_train_batches=null", "trainer.limit_val_batches=0",
            f"trainer.log_every_n_steps={scale['log_every_n_steps']}", "logger=csv", "callbacks=[checkpoint,progress]"]
    if run.get("ablation"):
        args.append(f"ablation={run['ablation']}")
    if run["model"] == "pymaf":
        args.append(f"model.deconv_channels={scale['deconv_channels']}")
    if run["model"] == "bigraph":
        args.append(f"model.net.width={scale['graph_width']}")
    return args + [str(a) for a in cfg.train_args]


def evaluate_arguments(ckpt: Path, out: Path, scale: dict, cfg) -> list[str]:
    """``make eval`` arguments of one trained run."""
    return [f"ckpt={ckpt}", f"sets={','.join(cfg.eval_sets)}", f"data.root={scale['data_root']}",
            f"data.eval_batch_size={scale['eval_batch_size']}", f"out={out}"]


def ensure_data(cfg, scale: dict) -> None:
    """``make data`` at the scale's size (skipped when ``data_root`` already holds that seed and size)."""
    from datamodules.synthetic.dataset import generate

    from cli.make_data import default_workers

    generate(scale["data_root"], seed=int(cfg.data_seed), size=float(scale["data_size"]), workers=default_workers())


def git_revision() -> str:
    """The checkout's commit, with ``+changes`` when tracked files differ from it (``unknown`` outside git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def hardware() -> str:
    """One line: CPU model and cores (and the GPU, when torch sees one), torch's version."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    line = f"{cpu}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"{line}; torch {torch.__version__}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    cfg = compose("reproduce", argv)
    scale = scale_settings(cfg)
    seeds = [int(s) for s in cfg.seeds]
    if len(seeds) < 2:
        raise UserError(f"seeds={seeds}: the report's standard errors need at least two seeds (e.g. seeds=[0,1,2])")
    from cli import evaluate, train

    out_dir = Path(cfg.out_dir) / str(cfg.scale)
    ensure_data(cfg, scale)
    revision = git_revision()
    runs = []
    for run in OmegaConf.to_container(cfg.runs, resolve=True):
        for seed in seeds:
            run_dir = out_dir / f"{run['name']}-s{seed}"
            result, timing = run_dir / "eval.json", run_dir / "reproduce_timing.json"
            if not result.is_file():
                print(f"reproduce: training {run['name']} seed {seed} ({run_dir})", flush=True)
                started = time.perf_counter()
                summary = train.main(train_arguments(run, seed, scale, cfg, out_dir))
                if not summary["last_checkpoint"]:
                    raise UserError(f"{run_dir}: training wrote no checkpoint; see the lines above")
                evaluate.main(evaluate_arguments(run_dir / "checkpoints" / "last.ckpt", result, scale, cfg))
                # the run's own time (train + eval), kept with it: a rerun that skips it reports the same duration
                timing.write_text(json.dumps({"seconds": round(time.perf_counter() - started, 1),
                                              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                              "git_revision": revision}) + "\n")
            times = json.loads(timing.read_text()) if timing.is_file() else \
                {"seconds": 0.0, "finished": "", "git_revision": "unknown"}
            runs.append({**run, "seed": seed, "run_dir": str(run_dir), "eval": str(result), **times})
    seconds = sum(r["seconds"] for r in runs)
    command = "python -m cli.reproduce" + "".join(f" {shlex.quote(a)}" for a in argv)
    command = f"make reproduce ({command})" if os.environ.get("MAKELEVEL") else command
    record = {"command": command, "scale": str(cfg.scale), "settings": scale, "seeds": seeds,
              "eval_sets": list(cfg.eval_sets), "data_root": scale["data_root"], "runs": runs,
              "seconds": round(seconds, 1), "hardware": hardware(),
              "git_revision": ", ".join(sorted({r["git_revision"] for r in runs})),
              "finished": max(r["finished"] for r in runs)}
    (out_dir / "reproduce.json").write_text(json.dumps(record, indent=2) + "\n")
    from cli.report import write_report

    report = Path(cfg.report) if cfg.report else \
        Path("reports/reproduction.md") if cfg.scale == "cpu" else out_dir / "reproduction.md"
    report = write_report(record, report, figure_samples=int(cfg.figure_samples))
    print(f"wrote {report} ({len(runs)} runs in {seconds / 60:.1f} min)", flush=True)
    return record


if __name__ == "__main__":
    run_cli(main)
