"""``make slurm``: write (and with ``submit=true`` submit) an sbatch script that runs ``make train`` on a cluster.

    python -m cli.slurm model=bigraph nodes=2 gpus=8 [time=24:00:00] [partition=gpu] [submit=true] [key=value ...]

Keys of ``configs/slurm.yaml`` shape the job; every other ``key=value`` is a training override, checked here by
composing the training config (so a typo fails now, not in the queue). The script starts ``python -m cli.train``
on every task with ``srun`` (``--ntasks-per-node`` = GPUs, as Lightning's SLURM environment needs), the same
entry point as ``make train`` with the same CPU allocator policy (``runtime.cli``). It asks SLURM for
``--signal=SIGUSR1@<signal_seconds>`` and ``--requeue``: Lightning saves ``hpc_ckpt_<n>.ckpt`` on the signal and
requeues the job, which then resumes from the newest checkpoint (``cli.train``'s rule: the same config), and
``--open-mode=append`` keeps one log across restarts. ``gpus=0`` writes a CPU job (``tasks`` processes per node,
DDP with gloo) for clusters without GPUs and for the local test.

``ablations=[a,b,...]`` and/or ``seeds=[0,1,2]`` write a job array over the grid instead (ablation-major, one
array task per pair, ``none`` for the model as configured): each task is one run with its own run directory
(``<ablation>-<data>-s<seed>``), requeued and resumed on its own; the logs go to ``<out_dir>/slurm-logs/``.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import OmegaConf

from configs.loader import compose
from configs.schema import SlurmRoot
from runtime.cli import run_cli
from runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the script's keys, the training overrides): a ``key=value`` whose key is a field of ``SlurmRoot``."""
    own = set(SlurmRoot.__dataclass_fields__)
    slurm, training = [], []
    for item in argv:
        key, _, value = item.partition("=")
        if key == "time" and value and value[0] not in "'\"":
            item = f"time='{value}'"   # a YAML reader would take 12:00:00 for the base-60 number 43200
        (slurm if key in own else training).append(item)
    return slurm, training


def training_arguments(job, overrides: list[str]) -> list[str]:
    """The training overrides the tasks run with: ``trainer=ddp`` for a GPU job (unless a trainer group is
    chosen), the user's overrides, then the device layout, which wins (Lightning requires ``devices`` = tasks
    per node and ``num_nodes`` = nodes)."""
    chose_trainer = any(item.split("=", 1)[0] == "trainer" for item in overrides)
    group = ["trainer=ddp"] if job.gpus > 0 and not chose_trainer else []
    layout = [f"trainer.accelerator={'gpu' if job.gpus > 0 else 'cpu'}",
              f"trainer.devices={job.gpus if job.gpus > 0 else job.tasks}", f"trainer.num_nodes={job.nodes}",
              "trainer.strategy=ddp"]
    return group + list(overrides) + layout


def grid_arguments(job) -> list[list[str]]:
    """The extra training overrides of each array task (ablation-major), or ``[[]]`` for a single job."""
    if not job.ablations and not job.seeds:
        return [[]]
    ablations = [None] if not job.ablations else [None if a in ("none", "null") else str(a) for a in job.ablations]
    seeds = [None] if not job.seeds else [int(seed) for seed in job.seeds]
    return [[f"ablation={'null' if a is None else a}"] * bool(job.ablations) + [f"seed={seed}"] * bool(job.seeds)
            for a in ablations for seed in seeds]


def sbatch_script(job, train_args: list[str], runs: list[tuple[list[str], Path]], log: str, name: str,
                  command: str) -> str:
    """The script's text (module docstring). ``runs``: (extra overrides, run directory) of each array task, one
    entry for a single job; ``log``: the --output pattern."""
    tasks = job.gpus if job.gpus > 0 else job.tasks
    lines = [
        "#!/bin/bash",
        f"# make train on SLURM, written by make slurm (cli/slurm.py) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC:",
        f"#   {command}",
        "# Edit the #SBATCH lines for your cluster (partition, account, time, memory), then: sbatch <this file>.",
        f"# Requeue: SLURM sends SIGUSR1 {job.signal_seconds} s before the time limit (or scancel --signal=USR1 <job>);",
        "# the run saves hpc_ckpt_<n>.ckpt in its run directory and requeues the job, which resumes from the newest",
        "# checkpoint. The log below is appended to across restarts.",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --nodes={job.nodes}",
        f"#SBATCH --ntasks-per-node={tasks}",
    ]
    if job.gpus > 0:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus}")
    lines += [f"#SBATCH --cpus-per-task={job.cpus_per_task}", f"#SBATCH --time={job.time}"]
    lines += [f"#SBATCH --{key}={value}" for key, value in
              (("partition", job.partition), ("account", job.account), ("mem", job.mem)) if value]
    lines += ["#SBATCH --signal=SIGUSR1@{}".format(job.signal_seconds), "#SBATCH --requeue", "#SBATCH --open-mode=append",
              f"#SBATCH --output={log}"]
    grid = len(runs) > 1 or bool(runs[0][0])
    if grid:
        lines += [f"#SBATCH --array=0-{len(runs) - 1}",
                  "# One array task per run; each has its own run directory and is requeued and resumed on its own:"]
        lines += [f"#   task {i}: {' '.join(extra)} -> {run_dir}" for i, (extra, run_dir) in enumerate(runs)]
    train = f"srun {shlex.quote(sys.executable)} -m cli.train " + " ".join(shlex.quote(a) for a in train_args)
    lines += ["", "set -euo pipefail", f"cd {shlex.quote(str(REPO))}", "export PYTHONUNBUFFERED=1",
              'echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST at $(date -u)"']
    if grid:
        lines += ["RUNS=("] + [f"  {shlex.quote(' '.join(extra))}" for extra, _ in runs] + [")",
                  "read -r -a THIS_RUN <<< \"${RUNS[$SLURM_ARRAY_TASK_ID]}\"", train + ' "${THIS_RUN[@]}"']
    else:
        lines.append(train)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    own, overrides = split_arguments(argv)
    job = compose("slurm", own)
    if job.nodes < 1 or job.gpus < 0 or job.tasks < 1 or job.cpus_per_task < 1:
        raise UserError("make slurm: nodes, tasks and cpus_per_task must be >= 1 and gpus >= 0")
    train_args = training_arguments(job, overrides)
    from cli.train import run_name

    runs = []
    for extra in grid_arguments(job):
        cfg = compose("train", train_args + extra)          # a bad training override fails here, in one line
        runs.append((extra, (Path(cfg.out_dir) / run_name(cfg)).resolve()))
    if len({run_dir for _, run_dir in runs}) < len(runs):
        raise UserError("make slurm: the grid's runs share a run directory (a run_name= override?); leave run_name "
                        "unset so that each ablation and seed gets its own")
    out_dir = Path(cfg.out_dir).resolve()
    if len(runs) == 1 and not runs[0][0]:
        run_dir = runs[0][1]
        name, log, default_script = run_dir.name, f"{run_dir}/slurm-%j.out", run_dir / "slurm.sbatch"
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        name = f"{cfg.model.name}-{cfg.data.get('name', 'data')}-grid"
        log, default_script = f"{out_dir}/slurm-logs/%x-%A_%a.out", out_dir / f"{name}.sbatch"
        (out_dir / "slurm-logs").mkdir(parents=True, exist_ok=True)
    script = Path(job.script) if job.script else default_script
    script.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m cli.slurm " + " ".join(shlex.quote(a) for a in argv)
    script.write_text(sbatch_script(job, train_args, runs, log, name, command))
    print(f"wrote {script}" + (f": an array of {len(runs)} runs" if len(runs) > 1 else ""))
    result = {"script": str(script), "run_dir": str(runs[0][1]), "run_dirs": [str(r) for _, r in runs],
              "log": log, "job_id": None, "train_args": train_args, "slurm": OmegaConf.to_container(job)}
    if job.submit:
        try:
            done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
        except FileNotFoundError:
            raise UserError("submit=true: sbatch is not on PATH (is this a SLURM login node?); submit the script "
                            f"there with: sbatch {script}") from None
        if done.returncode != 0:
            raise UserError(f"sbatch {script} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        result["job_id"] = done.stdout.strip().split(";")[0]
        where = log.replace("%j", result["job_id"]).replace("%A", result["job_id"]).replace("%x", name)
        print(f"submitted job {result['job_id']}; its log: {where}")
    else:
        print(f"submit it with: sbatch {script}")
    return result


if __name__ == "__main__":
    run_cli(main, apply_allocator=False)
