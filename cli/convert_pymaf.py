"""``make convert-pymaf``: an official PyMAF checkpoint -> a checkpoint of this suite that ``make eval`` scores:

    python -m cli.convert_pymaf PyMAF_model_checkpoint.pt --out outputs/official/pymaf.ckpt
        [--body smpl --smpl-dir DIR]

The official file (HongwenZhang/PyMAF at a5feca1: ``{"model": state_dict, "optimizer": ..., "epoch": ...}``) is
read weights-only; its network entries are mapped by the committed table (``lightning_modules.official_pymaf``)
onto the suite's PyMAF built with the paper's config, and written as a Lightning checkpoint of plain data
(``state_dict``, ``hyper_parameters`` with the model and body configs, epoch 0) plus ``converted_from``: the
source file's name, size and SHA-256 and its own epoch / step counters. ``make eval CKPT=... MODEL=pymaf``
then rebuilds the module from it as from any checkpoint of ``make train``.

``--body`` is the body model the checkpoint evaluates with. The official network was trained with licensed
SMPL and GraphCMR's 431 feedback vertices: to reproduce the paper's numbers use ``--body smpl`` with a folder
holding SMPL_NEUTRAL.pkl, SPIN's J_regressor_extra.npy / J_regressor_h36m.npy / smpl_mean_params.npz and
GraphCMR's mesh_downsampling.npz; the converter says so when the body's down-sampling differs from the
checkpoint's. The default open body runs the same weights on another mesh (a smoke test, not the paper).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any, Sequence

from runtime.cli import run_cli
from runtime.errors import UserError

IMG_RES = 224


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cli.convert_pymaf",
        description="Convert an official PyMAF checkpoint (HongwenZhang/PyMAF, PyMAF_model_checkpoint.pt) into a "
                    "checkpoint of this suite: make eval CKPT=<out> MODEL=pymaf scores it.")
    p.add_argument("official", help="the official checkpoint (a torch file whose 'model' entry is the state dict)")
    p.add_argument("--out", required=True, help="the checkpoint to write (e.g. outputs/official/pymaf.ckpt)")
    p.add_argument("--body", choices=("open", "smpl"), default="open",
                   help="body model the checkpoint evaluates with (default: open; smpl for the paper's numbers)")
    p.add_argument("--smpl-dir", default=None, help="folder of the licensed SMPL files for --body smpl "
                                                    "(default: $SMPL_DIR)")
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain_number(value: Any) -> int | float | None:
    """An official counter (python or numpy number) as a plain number; anything else None."""
    try:
        import numpy as np

        if isinstance(value, (bool, np.bool_)):
            return None
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
    except ImportError:  # pragma: no cover
        pass
    return None


def main(argv: Sequence[str] | None = None) -> dict:
    """Convert; print one summary line (and a note on the body model); return the written checkpoint's
    ``converted_from`` record."""
    a = parser().parse_args(argv)
    import pytorch_lightning as pl
    import torch

    from configs.loader import complete_group
    from lightning_modules.checkpoints import plain_data
    from lightning_modules.official_pymaf import (
        MAPPED, OFFICIAL_CODE, PAPER_MODEL, TABLE, downsampling_difference, official_to_ours,
        our_expected_shapes, read_official_checkpoint,
    )
    from lightning_modules.registry import build_module
    from body.assets import smpl_folder

    if a.body == "smpl":
        smpl_folder(a.smpl_dir, "--smpl-dir DIR")
    src, out = Path(a.official), Path(a.out)
    state, extra = read_official_checkpoint(src)
    converted = official_to_ours(state)

    body_cfg = {"name": a.body, "gender": "neutral"}
    if a.smpl_dir is not None:
        body_cfg["smpl_dir"] = a.smpl_dir
    model_cfg = complete_group("model", PAPER_MODEL, "paper config")
    module = build_module(model_cfg, complete_group("body", body_cfg, "body config"), [], IMG_RES)
    ours = {k: tuple(v.shape) for k, v in module.net.state_dict().items()}
    if ours != our_expected_shapes():
        stale = sorted(set(ours.items()) ^ set(our_expected_shapes().items()))
        raise UserError(f"PyMAFNet's state dict differs from the mapping table at {stale[0][0]!r} "
                        f"({len(stale)} entries): regenerate lightning_modules/official_pymaf_table.py with "
                        "python scripts/compare_official_pymaf.py --write-table")
    module.net.load_state_dict(converted, strict=True)

    notes = []
    dmaps = [v for k, v in state.items() if k.endswith(".Dmap") and isinstance(v, torch.Tensor)]
    if dmaps and a.body == "smpl":
        diff = downsampling_difference(dmaps[0], module.body)
        if diff > 1e-6:
            how = "different vertex counts" if diff == float("inf") else f"max difference {diff:.3g} on random meshes"
            notes.append(f"note: the checkpoint's 431 feedback vertices (maf_extractor.*.Dmap) are not this body's "
                         f"({how}): for the paper's numbers put GraphCMR's mesh_downsampling.npz in the SMPL folder")
    if a.body == "open":
        notes.append("note: body=open evaluates the official weights on the open body model, not SMPL: "
                     "use --body smpl --smpl-dir DIR for the paper's numbers")

    record = {
        "file": src.name, "bytes": src.stat().st_size, "sha256": _sha256(src), "code": OFFICIAL_CODE,
        "table": "lightning_modules/official_pymaf_table.py",
        "entries": {"mapped": len(MAPPED), "dropped": len(TABLE) - len(MAPPED),
                    "in_file": len(state)},
        **{k: n for k in ("epoch", "total_step_count") if (n := _plain_number(extra.get(k))) is not None},
    }
    ckpt = {
        "epoch": 0, "global_step": 0, "pytorch-lightning_version": pl.__version__,
        "state_dict": module.state_dict(),
        "hparams_name": "kwargs",
        "hyper_parameters": plain_data(dict(module.hparams), "hyper_parameters"),
        "converted_from": record,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    print(f"wrote {out}: {len(converted)} network tensors from {src.name} ({len(MAPPED)} official entries mapped, "
          f"{len(state) - sum(r.official in state for r in MAPPED)} dropped: SMPL data, mesh down-sampling, grid); "
          f"score it with: make eval CKPT={out} MODEL=pymaf")
    for note in notes:
        print(note, file=sys.stderr)
    return record


if __name__ == "__main__":
    run_cli(main)
