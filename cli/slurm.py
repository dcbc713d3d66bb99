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


def sbatch_script(job, train_args: list[str], run_dir: Path, command: str) -> str:
    """The script's text (module docstring)."""
    tasks = job.gpus if job.gpus > 0 else job.tasks
    lines = [
        "#!/bin/bash",
        f"# make train on SLURM, written by make slurm (cli/slurm.py) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC:",
        f"#   {command}",
        "# Edit the #SBATCH lines for your cluster (partition, account, time, memory), then: sbatch <this file>.",
        f"# Requeue: SLURM sends SIGUSR1 {job.signal_seconds} s before the time limit (or scancel --signal=USR1 <job>);",
        "# Lightning saves hpc_ckpt_<n>.ckpt in the run directory and requeues the job, which resumes from the newest",
        "# checkpoint. The log below is appended to across restarts.",
        f"#SBATCH --job-name={run_dir.name}",
        f"#SBATCH --nodes={job.nodes}",
        f"#SBATCH --ntasks-per-node={tasks}",
    ]
    if job.gpus > 0:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus}")
    lines += [f"#SBATCH --cpus-per-task={job.cpus_per_task}", f"#SBATCH --time={job.time}"]
    lines += [f"#SBATCH --{key}={value}" for key, value in
              (("partition", job.partition), ("account", job.account), ("mem", job.mem)) if value]
    lines += [
        f"#SBATCH --signal=SIGUSR1@{job.signal_seconds}",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={run_dir}/slurm-%j.out",
        "",
        "set -euo pipefail",
        f"cd {shlex.quote(str(REPO))}",
        "export PYTHONUNBUFFERED=1",
        'echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST at $(date -u)"',
        f"srun {shlex.quote(sys.executable)} -m cli.train " + " ".join(shlex.quote(a) for a in train_args),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    own, overrides = split_arguments(argv)
    job = compose("slurm", own)
    if job.nodes < 1 or job.gpus < 0 or job.tasks < 1 or job.cpus_per_task < 1:
        raise UserError("make slurm: nodes, tasks and cpus_per_task must be >= 1 and gpus >= 0")
    train_args = training_arguments(job, overrides)
    cfg = compose("train", train_args)                    # a bad training override fails here, in one line
    from cli.train import run_name

    run_dir = (Path(cfg.out_dir) / run_name(cfg)).resolve()
    script = Path(job.script) if job.script else run_dir / "slurm.sbatch"
    script.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m cli.slurm " + " ".join(shlex.quote(a) for a in argv)
    script.write_text(sbatch_script(job, train_args, run_dir, command))
    print(f"wrote {script}")
    result = {"script": str(script), "run_dir": str(run_dir), "job_id": None,
              "train_args": train_args, "slurm": OmegaConf.to_container(job)}
    if job.submit:
        try:
            done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
        except FileNotFoundError:
            raise UserError("submit=true: sbatch is not on PATH (is this a SLURM login node?); submit the script "
                            f"there with: sbatch {script}") from None
        if done.returncode != 0:
            raise UserError(f"sbatch {script} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        result["job_id"] = done.stdout.strip().split(";")[0]
        print(f"submitted job {result['job_id']}; its log: {run_dir}/slurm-{result['job_id']}.out")
    else:
        print(f"submit it with: sbatch {script}")
    return result


if __name__ == "__main__":
    run_cli(main, apply_allocator=False)
