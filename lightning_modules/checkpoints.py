"""Reading checkpoints: untrusted input, loaded as weights and plain data only.

Checkpoints are downloaded and shared, and a pickle can run code when it is loaded. Every loader of the
suite (``make eval``, resuming ``make train``) reads them with ``torch.load(..., weights_only=True)``, which
accepts tensors and plain containers (dicts, lists, tuples, strings, numbers, None) and refuses anything
else before it runs. The suite's own checkpoints hold only such data: ``MeshRecoveryModule`` saves its
configs as plain containers (``save_hyperparameters`` of the dicts ``OmegaConf.to_container`` returns), and
Lightning's loop, optimiser and callback states are plain too. A file that needs more is refused in one line.
There is no switch to unpickle fully: a file that holds more than plain data must be re-saved as weights by
whoever trusts it.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from runtime.errors import UserError

HINT = "a checkpoint of make train, e.g. outputs/runs/bigraph-synthetic-s0/checkpoints/last.ckpt"


def plain_data(value: Any, where: str = "hyper-parameters") -> Any:
    """``value`` as plain containers (dict, list, str, int, float, bool, None), what a weights-only load
    reads back: mappings (omegaconf's included) become dicts, sequences lists, enums their names; anything
    else raises ``TypeError`` naming where it was."""
    from enum import Enum

    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, Mapping):
        return {str(k): plain_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not plain data (a checkpoint must load weights-only)")


def read_checkpoint(path: str | Path, what: str = "ckpt") -> dict[str, Any]:
    """The checkpoint's dictionary, loaded weights-only on the CPU.

    Raises a one-line ``UserError`` for a missing file, a file that is no checkpoint, or one that needs
    more than tensors and plain containers to load (nothing in it runs).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what}={path}: no such file ({HINT})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{what}={path}: refused, it holds more than tensors and plain containers and could run "
                        f"code when loaded ({first[:160]}); only weights-only checkpoints are read") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"{what}={path}: not a readable checkpoint ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:160] if str(err).strip() else ''}); expected {HINT}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{what}={path}: not a checkpoint of make train (no weights); expected {HINT}")
    return ckpt


def resumable_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run directory's checkpoints a resume may start from: ``checkpoints/last.ckpt`` and the ones saved when
    the run was stopped by a signal (Lightning's ``hpc_ckpt_<n>.ckpt`` in the run directory)."""
    run_dir = Path(run_dir)
    found = sorted(run_dir.glob("hpc_ckpt_*.ckpt"))
    last = run_dir / "checkpoints" / "last.ckpt"
    return ([last] if last.is_file() else []) + found


def newest_checkpoint(run_dir: str | Path) -> tuple[Path, int] | None:
    """The resumable checkpoint (:func:`resumable_checkpoints`) with the largest global step, and that step
    (later files win ties), or None. Each is read weights-only."""
    best: tuple[Path, int] | None = None
    for path in resumable_checkpoints(run_dir):
        step = int(read_checkpoint(path, what="resume").get("global_step", 0))
        if best is None or step >= best[1]:
            best = (path, step)
    return best


def next_signal_checkpoint(run_dir: str | Path) -> Path:
    """Where a run stopped by a signal saves: ``hpc_ckpt_<n>.ckpt`` with the next free n, Lightning's name for
    the checkpoint its SLURM requeue handler writes, so both kinds are found by :func:`newest_checkpoint`."""
    taken = [int(p.stem.rsplit("_", 1)[1]) for p in Path(run_dir).glob("hpc_ckpt_*.ckpt")
             if p.stem.rsplit("_", 1)[1].isdigit()]
    return Path(run_dir) / f"hpc_ckpt_{max(taken, default=0) + 1}.ckpt"
