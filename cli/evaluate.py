"""``make eval``: a trained checkpoint on evaluation sets, printing each paper's table row and writing JSON.

    python -m cli.evaluate ckpt=<path> [model=bigraph] [sets=3dpw,lsp|all] [data=pymaf_mix]
        [protocol=...] [data.eval.coco.annotations=person_keypoints_val2014.json] [trainer.accelerator=cpu]
        [trainer.devices=2 trainer.strategy=ddp | trainer=eval_ddp] [out=file.json]

Each set's protocol comes from its name (``metrics.protocols.protocol_of_set``); the row's columns are
the paper's (``metrics.protocols.PROTOCOL_COLUMNS``). The model, its body model and input size are
rebuilt from the checkpoint's saved hyper-parameters. The rows come from Lightning's validation loop with
the module's own evaluation metrics (``lightning_modules.evaluation.ProtocolMetrics``), the ones training's
validation logs, so ``metrics`` in the JSON holds exactly the values validation logs as ``val/<set>/<key>``,
and several processes give the row of one. Errors in mm, scores in [0, 1]. The JSON's ``mean_pose`` holds the
mean-pose baseline's values on the same samples (``lightning_modules.mean_pose``), as ``make train``'s summary does.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from configs.loader import compose
from configs.schema import trainer_kwargs
from runtime.cli import run_cli
from runtime.errors import UserError

THREE_D_UNITS = ("3dpw", "h36m", "up3d")


def default_out(ckpt: Path, model: str, data_name: str) -> Path:
    """<run dir>/eval/<checkpoint>-<data>.json for a checkpoint in <run dir>/checkpoints, else outputs/eval/."""
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "eval" / f"{ckpt.stem}-{data_name}.json"
    return Path("outputs/eval") / f"{model}-{ckpt.stem}-{data_name}.json"


def format_row(name: str, result: dict[str, Any]) -> str:
    """One readable line per set (plus PyMAF's per-iteration errors, M0 .. MT)."""
    cells = " | ".join(f"{k} {'-' if v is None else f'{v:.4g}'}" for k, v in result["columns"].items())
    unit = "mm" if result["protocol"] in THREE_D_UNITS else "fraction"
    line = f"{name} [{result['protocol']}, {result['evaluated']}/{result['samples']} samples]: {cells} ({unit})"
    for metric, values in result.get("per_iteration", {}).items():
        line += f"\n    {metric} per iteration: " + " ".join(f"{label} {v:.4g}" for label, v in values.items())
    return line


def _total_over_ranks(trainer, value: int) -> int:
    import torch

    return int(trainer.strategy.reduce(torch.tensor(float(value)), reduce_op="sum").item())


def main(argv: list[str] | None = None) -> dict:
    cfg = compose("eval", sys.argv[1:] if argv is None else argv)
    if not cfg.ckpt:
        raise UserError("ckpt=<path> is required (make eval CKPT=outputs/runs/bigraph-synthetic-s0/checkpoints/last.ckpt)")
    import pytorch_lightning as pl

    from datamodules.mixed import MixedDataModule
    from lightning_modules.evaluation import metric_values
    from lightning_modules.registry import load_module
    from metrics.protocols import protocol_of_set

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    available = list(data_cfg["eval"])
    sets = available if str(cfg.sets) == "all" else [s.strip() for s in str(cfg.sets).split(",") if s.strip()]
    unknown = [s for s in sets if s not in available]
    if unknown or not sets:
        raise UserError(f"sets={cfg.sets}: unknown evaluation set(s) {', '.join(unknown) or '(none given)'}; "
                        f"data={data_cfg.get('name', '?')} has {', '.join(available) or 'none'} (or all)")
    protocols = {s: protocol_of_set(s, cfg.protocol) for s in sets}
    module = load_module(str(cfg.ckpt), cfg.model)
    module.configure_evaluation(sets, protocols)
    data_cfg["eval"] = {s: data_cfg["eval"][s] for s in sets}
    data = MixedDataModule(data_cfg)   # each rank reads its share (the trainer's rank)
    trainer = pl.Trainer(**trainer_kwargs(OmegaConf.to_container(cfg.trainer, resolve=True)), logger=False,
                         enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False)
    trainer.validate(module, datamodule=data, verbose=False)
    skipped = _total_over_ranks(trainer, data.skipped.count)
    from lightning_modules.mean_pose import mean_pose_rows

    module.to(trainer.strategy.root_device)
    mean_pose = mean_pose_rows(module, data.val_dataloader(), [float("inf")] * len(sets))

    model = module.model_cfg["name"]
    results = {}
    for name in sets:
        row = module.last_rows[name]
        if protocols[name] == "lsp" and row["evaluated"] == 0 and row["samples"]:
            raise UserError(f"evaluation set {name!r}: no sample has an original-resolution mask (mask_original); "
                            "convert the LSP test set with its UP-3D annotations: make convert DATASET=lsp ... "
                            "SPLIT=test MASKS=<up-3d folder>")
        results[name] = {"protocol": protocols[name], **row, "metrics": metric_values(row)}
    summary = {"model": model, "checkpoint": str(cfg.ckpt), "data": data_cfg.get("name", "data"),
               "units": {"3d": "mm", "lsp": "fraction of pixels / F1", "coco": "AP (fraction)"},
               "processes": trainer.world_size, "skipped_samples": skipped, "sets": results, "mean_pose": mean_pose}
    if trainer.is_global_zero:
        for name in sets:
            print(format_row(name, results[name]), flush=True)
            if mean_pose.get(name):
                print("    mean pose: " + " ".join(f"{k} {v:.4g}" for k, v in mean_pose[name].items()), flush=True)
        out = Path(cfg.out) if cfg.out else default_out(Path(str(cfg.ckpt)), model, summary["data"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        print(f"wrote {out}")
    from runtime.ranks import close_process_group

    close_process_group()
    return summary


if __name__ == "__main__":
    run_cli(main)
