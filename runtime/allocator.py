"""The memory-allocator policy the suite's entry points apply to their own process.

Why it is here: on CPU, glibc's malloc serves every block over its mmap threshold (at most 32 MB) with a
fresh ``mmap`` and returns it to the kernel on ``free``; a training step's activations are such blocks, so
the next step page-faults every one of them in again. A BiGraph batch-32 training run on the project's
2-core machine spent 38 % of its CPU time in the kernel that way (BENCHMARKS.md, "CPU training step").
Keeping freed memory in the process without a bound (``MALLOC_MMAP_MAX_=0`` and no trimming) removed the
tax but let a trainer grow to 13.5 GB. The policy keeps freed memory for reuse with a bound:

- ``mimalloc`` (the default): mimalloc, from the ``cmeel-mimalloc`` wheel (a dependency of the suite),
  preloaded into the process (``LD_PRELOAD``), with freed memory returned to the system once it has been
  unused for ``PURGE_DELAY_MS`` (longer than a training step, so the next step reuses it). The bound is in
  time: memory a run stops using goes back to the system; its peak stays below glibc's (measured).
- ``glibc``: where the mimalloc library is missing (e.g. a platform without the wheel): glibc without
  mmap for large blocks, trimming the heap's free top above ``GLIBC_TRIM_BYTES``.
- ``system``: the allocator as the machine has it (no change).

Data-loader workers get a policy of their own in ``datamodules.mixed`` (they start from a small server
process instead of forking the trainer's heap).

How it is applied: ``apply()`` runs first in every command-line entry point (``runtime.cli.run_cli``, the
benchmark scripts, and ``python -m runtime.launch`` which the Makefile puts before ``pytest``). A preloaded
allocator must be in place before the process starts, so ``apply()`` re-executes the same command once
with the policy's environment; ``MESHREC_ALLOCATOR_APPLIED`` records that it did (and stops a second
re-execution in the processes it starts). srun, Lightning's DDP launcher and data workers inherit it.

How to turn it off or choose: ``MESHREC_ALLOCATOR=system`` (or ``mimalloc`` / ``glibc``) in the
environment, e.g. ``MESHREC_ALLOCATOR=system make train``. An ``LD_PRELOAD`` that already names an
allocator (jemalloc, tcmalloc, mimalloc) is the user's choice and is kept as it is.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

from runtime.errors import UserError

POLICIES = ("mimalloc", "glibc", "system")
DEFAULT_POLICY = "mimalloc"
CHOICE_VAR = "MESHREC_ALLOCATOR"
APPLIED_VAR = "MESHREC_ALLOCATOR_APPLIED"
# mimalloc: freed memory unused this long goes back to the system (its default, 1 s, is shorter than a CPU
# training step, so every step faulted its buffers in again; measured in BENCHMARKS.md).
PURGE_DELAY_MS = 30_000
# glibc fallback: no mmap for large blocks; return the heap's free top above 1 GiB.
GLIBC_TRIM_BYTES = 1 << 30
_ALLOCATOR_NAMES = ("jemalloc", "tcmalloc", "mimalloc")
_OWN_PREFIXES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MIMALLOC_PURGE_DELAY")


def mimalloc_library() -> Path | None:
    """The mimalloc shared library installed by the ``cmeel-mimalloc`` wheel, or None."""
    for entry in sys.path:
        lib = Path(entry or ".") / "cmeel.prefix" / "lib"
        for name in ("libmimalloc.so.3", "libmimalloc.so"):
            if (lib / name).is_file():
                return (lib / name).resolve()
    return None


def chosen_policy(env: Mapping[str, str]) -> str:
    """The policy the environment asks for (``MESHREC_ALLOCATOR``; default ``mimalloc``, or ``glibc``
    where the mimalloc library is missing)."""
    choice = env.get(CHOICE_VAR, "").strip().lower() or DEFAULT_POLICY
    if choice not in POLICIES:
        raise UserError(f"{CHOICE_VAR}={env[CHOICE_VAR]!r}: valid choices are {', '.join(POLICIES)}")
    if choice == "mimalloc" and mimalloc_library() is None:
        if CHOICE_VAR in env:
            raise UserError(f"{CHOICE_VAR}=mimalloc but the mimalloc library is missing: "
                            "pip install cmeel-mimalloc (or set it to glibc or system)")
        return "glibc"
    return choice


def environment(policy: str, env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` that starts a process under ``policy`` (and drops the other policies' settings)."""
    if policy not in POLICIES:
        raise UserError(f"allocator policy {policy!r}: valid choices are {', '.join(POLICIES)}")
    out = {k: v for k, v in env.items() if not k.startswith(_OWN_PREFIXES)}
    preload = [p for p in out.pop("LD_PRELOAD", "").split() if "libmimalloc" not in p]
    if policy == "mimalloc":
        lib = mimalloc_library()
        if lib is None:
            raise UserError("the mimalloc library is missing: pip install cmeel-mimalloc "
                            f"(or set {CHOICE_VAR}=glibc or system)")
        preload.insert(0, str(lib))
        out["MIMALLOC_PURGE_DELAY"] = str(PURGE_DELAY_MS)
    elif policy == "glibc":
        out["MALLOC_MMAP_MAX_"] = "0"
        out["MALLOC_TRIM_THRESHOLD_"] = str(GLIBC_TRIM_BYTES)
    if preload:
        out["LD_PRELOAD"] = " ".join(preload)
    out[APPLIED_VAR] = policy
    return out


def _user_preloads_allocator(env: Mapping[str, str]) -> bool:
    return any(name in p for p in env.get("LD_PRELOAD", "").split() for name in _ALLOCATOR_NAMES)


def apply(argv: Sequence[str] | None = None) -> None:
    """Re-execute this process once under the chosen policy (module docstring); return when it is in place.

    ``argv`` is the interpreter command line to run again (default ``sys.orig_argv``: the same script or
    module with the same arguments). Nothing happens when the policy is already applied, when it is
    ``system``, or when ``LD_PRELOAD`` already names an allocator.
    """
    env = os.environ
    if APPLIED_VAR in env or _user_preloads_allocator(env):
        return
    policy = chosen_policy(env)
    if policy == "system":
        return
    argv = list(sys.orig_argv if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], environment(policy, env))


def _initial_environment() -> dict[str, str]:
    """The environment this process started with (what glibc and the dynamic loader read)."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def active_policy() -> str:
    """The policy this process actually runs under, read from the process itself: ``mimalloc`` when the
    library is mapped, ``glibc`` when it started with the glibc settings, ``user`` when ``LD_PRELOAD`` named
    another allocator, else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    if "libmimalloc" in maps:
        return "mimalloc"
    start = _initial_environment()
    if start.get("MALLOC_MMAP_MAX_") == "0":
        return "glibc"
    if _user_preloads_allocator(start):
        return "user"
    return "system"


def describe() -> str:
    """One line for a run's log: the active policy and how to change it."""
    policy = active_policy()
    detail = {"mimalloc": f"mimalloc, freed memory kept {PURGE_DELAY_MS // 1000} s",
              "glibc": f"glibc, no mmap for large blocks, heap trimmed above {GLIBC_TRIM_BYTES >> 20} MB",
              "user": "the allocator named in LD_PRELOAD",
              "system": "the system's malloc"}[policy]
    return f"allocator: {detail} ({CHOICE_VAR}=system|mimalloc|glibc changes it; runtime/allocator.py)"
