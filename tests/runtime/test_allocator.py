"""The allocator policy (runtime/allocator.py): the environments it builds and that entry points apply it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import allocator
from runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
PROBE = "from runtime import allocator; print(allocator.active_policy())"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any allocator settings (a user's shell), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MALLOC_", "MIMALLOC_", "MESHREC_ALLOCATOR")) and k != "LD_PRELOAD"}
    env.update(extra)
    return env


def run_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mimalloc_library_is_installed():
    lib = allocator.mimalloc_library()
    assert lib is not None and lib.is_file() and "libmimalloc" in lib.name


def test_environment_per_policy():
    user = {"PATH": "/bin", "LD_PRELOAD": "/opt/libfoo.so", "MALLOC_MMAP_MAX_": "0"}
    mi = allocator.environment("mimalloc", user)
    assert mi["LD_PRELOAD"].split() == [str(allocator.mimalloc_library()), "/opt/libfoo.so"]
    assert mi["MIMALLOC_PURGE_DELAY"] == str(allocator.PURGE_DELAY_MS)
    assert "MALLOC_MMAP_MAX_" not in mi and mi[allocator.APPLIED_VAR] == "mimalloc" and mi["PATH"] == "/bin"
    gl = allocator.environment("glibc", mi)
    assert gl["LD_PRELOAD"] == "/opt/libfoo.so" and "MIMALLOC_PURGE_DELAY" not in gl
    assert gl["MALLOC_MMAP_MAX_"] == "0" and gl["MALLOC_TRIM_THRESHOLD_"] == str(allocator.GLIBC_TRIM_BYTES)
    sy = allocator.environment("system", mi)
    assert sy["LD_PRELOAD"] == "/opt/libfoo.so" and not any(k.startswith(("MALLOC_", "MIMALLOC_")) for k in sy)


def test_a_bad_choice_names_the_valid_ones():
    with pytest.raises(UserError, match="valid choices are mimalloc, glibc, system"):
        allocator.chosen_policy({allocator.CHOICE_VAR: "tcmalloc"})
    assert allocator.chosen_policy({}) == "mimalloc"
    assert allocator.chosen_policy({allocator.CHOICE_VAR: "System"}) == "system"


@pytest.mark.parametrize("choice, expected", [(None, "mimalloc"), ("glibc", "glibc"), ("system", "system")])
def test_launch_applies_the_chosen_policy(choice, expected):
    """``python -m runtime.launch`` (what make test and make bench use) re-executes under the policy; the
    probe reads the allocator from its own process (mapped library, starting environment)."""
    env = clean_env() if choice is None else clean_env(MESHREC_ALLOCATOR=choice)
    proc = run_python(["-m", "runtime.launch", "-c", PROBE], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_a_preloaded_user_allocator_is_kept():
    lib = str(allocator.mimalloc_library())
    proc = run_python(["-m", "runtime.launch", "-c", "import os; print(os.environ.get('MESHREC_ALLOCATOR_APPLIED'))"],
                      clean_env(LD_PRELOAD=lib.replace("libmimalloc", "libmimalloc")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"     # not re-executed: the user's LD_PRELOAD names an allocator


def test_bad_choice_is_one_line_exit_2():
    proc = run_python(["-m", "runtime.launch", "-c", PROBE], clean_env(MESHREC_ALLOCATOR="bogus"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: MESHREC_ALLOCATOR='bogus': valid choices are mimalloc, glibc, system"]


def test_make_train_entry_point_runs_under_the_policy(tmp_path):
    """The real training entry point, started as a user starts it (no allocator settings in the
    environment), trains one step of a narrow HMR with a loader worker and reports the allocator it ran
    under, read from its own process; its loader workers started from the forkserver, not as forks."""
    from datamodules.synthetic.dataset import generate

    root = tmp_path / "synthetic"
    generate(root, seed=0, size=0.01, workers=1, log=None)
    args = ["-m", "cli.train", "model=hmr", f"data.root={root}", f"out_dir={tmp_path / 'runs'}",
            "data.batch_size=4", "data.eval_batch_size=2", "data.num_workers=1", "data.train.epoch_samples=4",
            "model.backbone.width=8", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1"]
    proc = run_python(args, clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0].startswith("allocator: mimalloc")
    summary = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])[0]   # the JSON, then "done: ..."
    assert summary["allocator"] == "mimalloc"
    off = run_python(args, clean_env(MESHREC_ALLOCATOR="system"))
    assert off.returncode == 0, off.stderr[-3000:]
    assert json.JSONDecoder().raw_decode(off.stdout[off.stdout.index("{"):])[0]["allocator"] == "system"


def test_every_make_target_that_runs_python_applies_the_policy():
    """``make -n`` of the targets that train, evaluate, test or benchmark: each Python command either goes
    through ``runtime.launch`` or is an entry point whose ``run_cli`` applies the policy."""
    out = subprocess.run(["make", "-n", "-W", "pyproject.toml", "train", "eval", "demo", "export", "test", "test-fast", "bench",
                          "data", "show-data", "data-stats"], cwd=ROOT, capture_output=True, text=True, check=True)
    commands = [line for line in out.stdout.splitlines()
                if "bin/python" in line and "-m pip" not in line and "-m venv" not in line]
    assert len(commands) >= 12, out.stdout
    for line in commands:
        words = line.split()
        module = words[words.index("-m") + 1] if "-m" in words else None
        if module == "runtime.launch":
            continue
        assert module is not None, f"a script started without the policy: {line}"
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / module.replace(".", "/") / "__main__.py"
        source = path.read_text()
        assert "run_cli(main)" in source and "apply_allocator=False" not in source, line
