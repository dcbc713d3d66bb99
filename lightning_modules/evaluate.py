"""``make eval``: a trained checkpoint on evaluation sets, printing each paper's table row and writing JSON.

    python -m lightning_modules.evaluate ckpt=<path> [model=bigraph] [sets=3dpw,lsp|all] [data=pymaf_mix]
        [protocol=...] [coco_annotations=person_keypoints_val2014.json] [device=auto|cpu|cuda] [out=file.json]

Each set's protocol comes from its name (``metrics.protocols.protocol_of_set``); the row's columns are
the paper's (``metrics.protocols.PROTOCOL_COLUMNS``). The model, its body model and input size are
rebuilt from the checkpoint's saved hyper-parameters. One process; errors in mm, scores in [0, 1].
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from body.cli import run_cli
from body.errors import UserError
from configs.loader import compose
from lightning_modules.evaluation import CocoAnnotations, ProtocolEvaluator
from lightning_modules.train import MODELS, build_module
from metrics.protocols import protocol_of_set

DEVICES = ("auto", "cpu", "cuda")


def load_checkpoint(path: str, expected_model: str | None = None, device: str = "cpu"):
    """The LightningModule saved in a ``make train`` checkpoint, in eval mode on ``device``.

    Raises a one-line ``UserError`` for a missing or foreign file, or a model other than ``expected_model``.
    """
    if expected_model is not None and expected_model not in MODELS:
        raise UserError(f"unknown model {expected_model!r}: valid choices are {', '.join(MODELS)}")
    if not Path(path).is_file():
        raise UserError(f"ckpt={path}: no such file (a checkpoint of make train, e.g. "
                        "outputs/runs/bigraph-synthetic/checkpoints/last.ckpt)")
    # Our own training checkpoints: Lightning stores the hyper-parameters as plain Python containers.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    model_cfg = hparams.get("model")
    if not isinstance(model_cfg, dict) or "name" not in model_cfg or "state_dict" not in ckpt:
        raise UserError(f"ckpt={path}: not a checkpoint of make train (no model hyper-parameters or weights)")
    if expected_model is not None and model_cfg["name"] != expected_model:
        raise UserError(f"ckpt={path} holds a {model_cfg['name']!r} model, not {expected_model!r}: "
                        f"pass MODEL={model_cfg['name']} (or leave MODEL out)")
    module = build_module(model_cfg, hparams.get("body") or {"name": "open"}, [], int(hparams.get("img_res", 224)))
    module.load_state_dict(ckpt["state_dict"])
    return module.eval().to(device)


def resolve_device(name: str) -> str:
    if name not in DEVICES:
        raise UserError(f"device={name}: valid choices are {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA device here; use device=cpu or device=auto")
    return name


def _to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def evaluate_set(module, data, name: str, protocol: str, coco: CocoAnnotations | None = None) -> dict[str, Any]:
    """One evaluation set's row: ``{"protocol", "samples", "evaluated", "skipped", "columns", ...}``."""
    evaluator = ProtocolEvaluator(module, protocol, coco if protocol == "coco" else None)
    skipped_before = data.skipped.count
    with torch.no_grad():
        for batch in data.eval_dataloader(name):
            if "img" not in batch:   # a batch that only reports skipped samples
                continue
            batch = _to_device(batch, str(module.device))
            evaluator.update(batch, module.run_network(batch))
    if protocol == "lsp" and evaluator.evaluated == 0 and evaluator.samples:
        raise UserError(f"evaluation set {name!r}: no sample has an original-resolution mask (mask_original); "
                        "convert the LSP test set with its UP-3D annotations: make convert DATASET=lsp ... "
                        "SPLIT=test MASKS=<up-3d folder>")
    return {"protocol": protocol, "samples": evaluator.samples, "evaluated": evaluator.evaluated,
            "skipped": data.skipped.count - skipped_before, **evaluator.row()}


def default_out(ckpt: Path, model: str, data_name: str) -> Path:
    """<run dir>/eval/<checkpoint>-<data>.json for a checkpoint in <run dir>/checkpoints, else outputs/eval/."""
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "eval" / f"{ckpt.stem}-{data_name}.json"
    return Path("outputs/eval") / f"{model}-{ckpt.stem}-{data_name}.json"


def format_row(name: str, result: dict[str, Any]) -> str:
    """One readable line per set (plus PyMAF's per-iteration errors)."""
    cells = " | ".join(f"{k} {'-' if v is None else f'{v:.4g}'}" for k, v in result["columns"].items())
    unit = "mm" if result["protocol"] in ("3dpw", "h36m", "up3d") else "fraction"
    line = f"{name} [{result['protocol']}, {result['evaluated']}/{result['samples']} samples]: {cells} ({unit})"
    for metric, values in result.get("per_iteration", {}).items():
        line += f"\n    {metric} per iteration: " + " ".join(f"{v:.4g}" for v in values)
    return line


def main(argv: list[str] | None = None) -> dict:
    cfg = compose("eval", sys.argv[1:] if argv is None else argv)
    if not cfg.ckpt:
        raise UserError("ckpt=<path> is required (make eval CKPT=outputs/runs/bigraph-synthetic/checkpoints/last.ckpt)")
    from datamodules.mixed import MixedDataModule

    data = MixedDataModule(OmegaConf.to_container(cfg.data, resolve=True), rank=0, world_size=1)
    sets = data.eval_names if str(cfg.sets) == "all" else [s.strip() for s in str(cfg.sets).split(",") if s.strip()]
    unknown = [s for s in sets if s not in data.eval_names]
    if unknown or not sets:
        raise UserError(f"sets={cfg.sets}: unknown evaluation set(s) {', '.join(unknown) or '(none given)'}; "
                        f"data={cfg.data.get('name', '?')} has {', '.join(data.eval_names) or 'none'} (or all)")
    protocols = {s: protocol_of_set(s, cfg.protocol) for s in sets}
    coco = CocoAnnotations.from_json(str(cfg.coco_annotations)) if cfg.coco_annotations else None
    module = load_checkpoint(str(cfg.ckpt), cfg.model, resolve_device(str(cfg.device)))
    model = module.model_cfg["name"]
    results = {}
    for name in sets:
        results[name] = evaluate_set(module, data, name, protocols[name], coco)
        print(format_row(name, results[name]), flush=True)
    summary = {"model": model, "checkpoint": str(cfg.ckpt), "data": cfg.data.get("name", "data"),
               "units": {"3d": "mm", "lsp": "fraction of pixels / F1", "coco": "AP (fraction)"}, "sets": results}
    out = Path(cfg.out) if cfg.out else default_out(Path(str(cfg.ckpt)), model, summary["data"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    run_cli(main)
