"""Benchmark a CPU training step with and without the suite's allocator policy (``runtime/allocator.py``).

For each model (hmr, pymaf, bigraph at full width, configs/model/*.yaml) and each variant, a fresh child
process trains through Lightning's ``Trainer`` on the synthetic data (``make data``) with the default data
config's loader (batch 32, 2 worker processes, augmentation): ``--warmup`` steps, then ``--steps`` measured
ones. Variants (``VARIANTS``): ``before`` (the system allocator, workers forked from the trainer: the suite
before the policy), ``workers`` (only the workers' half: forkserver), ``policy`` (mimalloc in the trainer
and forkserver workers: the default now) and ``glibc`` (the fallback allocator, forkserver workers).

A step is forward, backward and the optimiser (Lightning's ``on_train_batch_start`` to
``on_train_batch_end``); the data wait before it is recorded apart. Per run: median step time, the
trainer's user and system CPU time over the measured steps and the system share, and peak resident memory
(VmHWM) of the trainer and of every process below it (data workers; with the forkserver also the server
and multiprocessing's resource tracker), polled at every step. A forked worker's figure counts the pages it
shares with the trainer, so ``total_peak_mb`` overstates the ``before`` variant's real use.

Children run one after the other in one invocation, the variants in turn per model, so the ratios compare
runs on the same machine under the same load.

    python -m runtime.launch scripts/bench_train_step.py --out bench/results/train_step.json [--models bigraph]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runtime import allocator  # noqa: E402

MODELS = ("hmr", "pymaf", "bigraph")


def _descendants(pid: int) -> list[int]:
    """Pids of every process below ``pid``: forked data workers, or the forkserver, its workers and
    multiprocessing's resource tracker."""
    found, queue = [], [pid]
    while queue:
        for task in Path(f"/proc/{queue.pop()}/task").glob("*"):
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            queue += kids
    return sorted(set(found))


def _vm_hwm_mb(pid: int | str) -> float:
    """Peak resident memory (MB) of a live process; 0 for one that has exited (a zombie has no VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def child(model: str, warmup: int, steps: int, data_root: str, worker_start: str) -> dict:
    """One measured run in this process (the allocator policy is whatever the environment applied)."""
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from configs.loader import compose
    from datamodules.mixed import MixedDataModule
    from lightning_modules.registry import build_module

    total = warmup + steps
    cfg = compose("train", [f"model={model}", f"data.root={data_root}"])
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    data_cfg["train"]["epoch_samples"] = total * int(data_cfg["batch_size"])
    data_cfg["worker_start"] = worker_start
    data = MixedDataModule(data_cfg)
    pl.seed_everything(0, workers=True)
    module = build_module(OmegaConf.to_container(cfg.model, resolve=True),
                          OmegaConf.to_container(cfg.body, resolve=True), [], data.img_res)

    record = {"step_s": [], "data_wait_s": []}
    workers_peak: dict[int, float] = {}   # a worker that has finished its share may exit before the last step

    class StepTimer(pl.Callback):
        def __init__(self):
            self.t_end = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            now = time.perf_counter()
            if batch_idx >= warmup:
                record["data_wait_s"].append(now - self.t_end)
            if batch_idx == warmup:
                self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
            self.t0 = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.t_end = time.perf_counter()
            if batch_idx >= warmup:
                record["step_s"].append(self.t_end - self.t0)
            if batch_idx == total - 1:
                ru = resource.getrusage(resource.RUSAGE_SELF)
                record["user_s"] = ru.ru_utime - self.ru0.ru_utime
                record["system_s"] = ru.ru_stime - self.ru0.ru_stime
            for pid in _descendants(os.getpid()):
                workers_peak[pid] = max(workers_peak.get(pid, 0.0), _vm_hwm_mb(pid))

    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=total,
                         limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[StepTimer()])
    trainer.fit(module, datamodule=data)
    cpu = record["user_s"] + record["system_s"]
    workers = [round(v, 1) for v in workers_peak.values()]
    return {"model": model, "allocator": allocator.active_policy(), "worker_start": worker_start,
            "steps": steps, "warmup": warmup,
            "step_s_median": round(statistics.median(record["step_s"]), 3),
            "step_s": [round(s, 3) for s in record["step_s"]],
            "data_wait_s_median": round(statistics.median(record["data_wait_s"]), 3),
            "user_s": round(record["user_s"], 2), "system_s": round(record["system_s"], 2),
            "system_share": round(record["system_s"] / cpu, 4) if cpu else float("nan"),
            "trainer_peak_mb": round(_vm_hwm_mb("self"), 1),
            "workers_peak_mb": workers,
            "total_peak_mb": round(_vm_hwm_mb("self") + sum(workers), 1),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


# (name, trainer allocator, loader workers' start): the suite before the policy, each half of it, and all of it
# ("policy"); "glibc" is the fallback where the mimalloc library is missing.
VARIANTS = {"before": ("system", "fork"), "workers": ("system", "forkserver"),
            "policy": ("mimalloc", "forkserver"), "glibc": ("glibc", "forkserver")}


def run_child(model: str, variant: str, args) -> dict:
    policy, worker_start = VARIANTS[variant]
    env = allocator.environment(policy, dict(os.environ))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", model, "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--data", args.data, "--worker-start", worker_start]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} / {variant} failed:\n{proc.stderr[-4000:]}")
    return {"variant": variant, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/train_step.json")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--child", choices=MODELS)
    parser.add_argument("--worker-start", default="forkserver")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.warmup, args.steps, args.data, args.worker_start)))
        return

    runs = []
    for model in args.models:
        for variant in args.variants:
            result = run_child(model, variant, args)
            print(json.dumps(result), flush=True)
            runs.append(result)
    summary = {}
    base = args.variants[0]
    for model in args.models:
        by = {r["variant"]: r for r in runs if r["model"] == model}
        summary[model] = {v: {"speedup": round(by[base]["step_s_median"] / by[v]["step_s_median"], 2),
                              "system_share": by[v]["system_share"],
                              "memory_ratio": round(by[v]["total_peak_mb"] / by[base]["total_peak_mb"], 3)}
                          for v in args.variants}
    out = {"machine": platform.machine(), "cpus": os.cpu_count(), "load_avg_before": os.getloadavg(),
           "runs": runs, "against": base, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
