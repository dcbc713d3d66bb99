"""``make slurm``: the sbatch script it writes, and (marked ``slurm``, run by ``make test`` in a pytest invocation
of its own) that script on a real SLURM cluster started on this machine: a 2-task CPU DDP job runs to completion,
and ``scancel --signal=USR1`` makes the job save, requeue itself, resume and finish with one log and one W&B
run id."""
from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import pytest
import torch

from cli import slurm
from runtime.errors import UserError


def test_the_script_asks_for_what_lightning_needs_under_slurm(tmp_path):
    out = slurm.main(["model=pymaf", "nodes=2", "gpus=4", "time=12:00:00", "partition=gpu", "model.optim.lr=1e-4",
                      f"out_dir={tmp_path}"])
    text = Path(out["script"]).read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --time=12:00:00", "#SBATCH --partition=gpu",
                 "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 f"#SBATCH --output={tmp_path / 'pymaf-synthetic-s0'}/slurm-%j.out", "#SBATCH --job-name=pymaf-synthetic-s0"):
        assert line in text.splitlines(), line
    srun = [line for line in text.splitlines() if line.startswith("srun ")][0]
    assert srun.split()[2:4] == ["-m", "cli.train"]
    assert srun.split()[4:] == ["trainer=ddp", "model=pymaf", "model.optim.lr=1e-4", f"out_dir={tmp_path}",
                                "trainer.accelerator=gpu", "trainer.devices=4", "trainer.num_nodes=2",
                                "trainer.strategy=ddp"]
    cpu = Path(slurm.main(["model=hmr", "gpus=0", "tasks=3", f"out_dir={tmp_path}"])["script"]).read_text()
    assert "#SBATCH --ntasks-per-node=3" in cpu and "--gpus-per-node" not in cpu
    assert "trainer.accelerator=cpu trainer.devices=3" in cpu


def test_a_grid_is_one_array_task_per_ablation_and_seed(tmp_path):
    out = slurm.main(["model=pymaf", "gpus=2", "ablations=[pymaf_t4_grid_pyramid,none]", "seeds=[0,1,2]",
                      f"out_dir={tmp_path}"])
    lines = Path(out["script"]).read_text().splitlines()
    assert out["script"] == str(tmp_path / "pymaf-synthetic-grid.sbatch") and "#SBATCH --array=0-5" in lines
    assert f"#SBATCH --output={tmp_path}/slurm-logs/%x-%A_%a.out" in lines
    names = [f"pymaf_t4_grid_pyramid-synthetic-s{s}" for s in range(3)] + [f"pymaf-synthetic-s{s}" for s in range(3)]
    assert out["run_dirs"] == [str(tmp_path / n) for n in names]
    start = lines.index("RUNS=(")
    assert lines[start + 1:start + 8] == ["  'ablation=pymaf_t4_grid_pyramid seed=0'", "  'ablation=pymaf_t4_grid_pyramid seed=1'",
                                          "  'ablation=pymaf_t4_grid_pyramid seed=2'", "  'ablation=null seed=0'",
                                          "  'ablation=null seed=1'", "  'ablation=null seed=2'", ")"]
    assert lines[-1].startswith("srun ") and lines[-1].endswith(' "${THIS_RUN[@]}"')
    with pytest.raises(UserError) as err:       # a BiGraph row in a PyMAF grid: before anything is queued
        slurm.main(["model=pymaf", "ablations=[bigraph_t4_a_mesh_only]", f"out_dir={tmp_path}"])
    assert "bigraph_t4_a_mesh_only" in str(err.value) and "\n" not in str(err.value)


def test_bad_arguments_fail_before_anything_is_queued(tmp_path):
    cases = [(["model=pymaf", "model.net.fusion_graf=true"], "unknown config key"),
             (["model=pymaf", "gpus=-1"], "gpus >= 0"),
             (["model=pymaf", "nodes=two"], "nodes")]
    for argv, message in cases:
        with pytest.raises(UserError) as err:
            slurm.main(argv + [f"out_dir={tmp_path}"])
        assert message in str(err.value) and "\n" not in str(err.value), argv


# ------------------------------------------------------------------------------------- a real SLURM cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tests.slurm_cluster import LocalCluster, install

    why = install()
    if why:
        pytest.skip(why)
    local = LocalCluster(tmp_path_factory.mktemp("slurm"))
    local.start()
    yield local
    local.stop()


def submit(cluster, monkeypatch, synthetic_5_per_set, out: Path, epoch_samples: int, epochs: int, *extra: str,
           tasks: int = 2) -> tuple[str, Path]:
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    result = slurm.main(["model=hmr", "gpus=0", f"tasks={tasks}", "cpus_per_task=1", "time=00:20:00", "submit=true",
                         "model.backbone.width=8", f"data.root={synthetic_5_per_set}", "data.batch_size=2", "data.eval_batch_size=2",
                         "data.num_workers=0", f"data.train.epoch_samples={epoch_samples}",
                         f"trainer.max_epochs={epochs}", "trainer.limit_train_batches=null",
                         "trainer.limit_val_batches=null", "trainer.log_every_n_steps=1", f"out_dir={out}", *extra])
    return result["job_id"], Path(result["run_dir"])


def train_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv") as f:
        return sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")})


@pytest.mark.slurm
def test_a_two_task_cpu_job_runs_to_completion(cluster, monkeypatch, synthetic_5_per_set, tmp_path):
    job, run_dir = submit(cluster, monkeypatch, synthetic_5_per_set, tmp_path, epoch_samples=16, epochs=2)
    info = cluster.wait(job)
    log = (run_dir / f"slurm-{job}.out").read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", log[-3000:]
    steps = 16 // (2 * 2) * 2
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == steps
    assert train_steps(run_dir) == list(range(steps))
    assert log.count(f"new run {run_dir}") == 1                       # rank 0 prints, once


@pytest.mark.slurm
def test_usr1_saves_requeues_and_the_job_resumes(cluster, monkeypatch, synthetic_5_per_set, tmp_path):
    epochs, per_epoch = 2, 400
    job, run_dir = submit(cluster, monkeypatch, synthetic_5_per_set, tmp_path, per_epoch, epochs, "logger=wandb",
                          "logger.offline=true")
    out = run_dir / f"slurm-{job}.out"
    deadline = time.time() + 600
    while time.time() < deadline and not (out.exists() and re.search(r"epoch 1/2 step \d+/", out.read_text())):
        time.sleep(0.5)
    time.sleep(2.0)                                                   # some steps into the epoch
    cluster.run("scancel", "--signal=USR1", job)
    info = cluster.wait(job, timeout=1200)
    log = out.read_text()
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) >= 1, log[-4000:]
    assert list(run_dir.glob("hpc_ckpt_*.ckpt")), log[-4000:]
    assert re.search(rf"resuming {re.escape(str(run_dir))} from {re.escape(str(run_dir))}/hpc_ckpt_\d+\.ckpt", log), \
        log[-4000:]
    steps = per_epoch // (2 * 2) * epochs
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == steps
    assert len(list(run_dir.glob("slurm-*.out"))) == 1                # one log, appended across the restart
    run_id = (run_dir / "wandb_run_id").read_text().strip()           # one W&B run: every attempt's offline
    attempts = sorted((run_dir / "wandb").glob("offline-run-*"))      # folder carries its id (wandb sync: one run)
    assert len(attempts) == int(info["Restarts"]) + 1 and all(a.name.endswith(f"-{run_id}") for a in attempts)
    # One continuous history on the dashboards' axis (Lightning's trainer/global_step): the attempts' training rows,
    # in order, are every step once. (Offline W&B cannot continue a run's own _step counter; wandb
    # sync uploads every attempt's folder into the one run id, where the rows line up on trainer/global_step.)
    from tests.wandb_records import history_rows

    logged = [row["trainer/global_step"] for attempt in attempts for row in history_rows(
        next(attempt.glob("run-*.wandb"))) if "train/loss" in row]
    assert logged == list(range(steps))


@pytest.mark.slurm
def test_a_seed_grid_runs_as_a_job_array(cluster, monkeypatch, synthetic_5_per_set, tmp_path):
    job, _ = submit(cluster, monkeypatch, synthetic_5_per_set, tmp_path, 8, 1, "seeds=[0,1]", tasks=1)
    for task, seed in enumerate((0, 1)):
        info = cluster.wait(f"{job}_{task}")
        run_dir = tmp_path / f"hmr-synthetic-s{seed}"
        log = (tmp_path / "slurm-logs" / f"hmr-synthetic-grid-{job}_{task}.out").read_text()
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", log[-3000:]
        assert f"new run {run_dir}" in log and train_steps(run_dir) == list(range(8 // 2))
    first, second = [torch.load(tmp_path / f"hmr-synthetic-s{seed}" / "checkpoints" / "last.ckpt", map_location="cpu",
                                weights_only=True)["state_dict"] for seed in (0, 1)]
    assert any(not torch.equal(first[k], second[k]) for k in first)   # two seeds, two runs
