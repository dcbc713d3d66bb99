"""Compose a config from YAML groups (the lightning-hydra-template idea, without hydra).

A root file (``configs/<root>.yaml``) lists ``defaults``: one ``- group: choice`` per group, each read
from ``configs/<group>/<choice>.yaml`` and placed under the key ``group``. Command-line style overrides
then apply: ``group=choice`` swaps a group, ``a.b=value`` sets a value (omegaconf dot-list syntax).
``ablation=<row>`` (roots with an ``ablation`` key) merges a paper ablation row of ``configs/ablations.yaml``
into ``model`` after the groups and before the other overrides, so ``model.*`` overrides still win.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from body.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent


def group_choices(group: str) -> list[str]:
    """Names of the YAML files available for a group."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _load_group(group: str, choice: str) -> DictConfig:
    path = CONFIG_DIR / group / f"{choice}.yaml"
    if not path.exists():
        raise UserError(f"unknown {group} config {choice!r}: valid choices are {', '.join(group_choices(group))}")
    return OmegaConf.load(path)


def ablation_rows() -> dict:
    """The rows of ``configs/ablations.yaml``: name -> {model, table, row, overrides}."""
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "ablations.yaml"))


def apply_ablation(cfg: DictConfig, name: str) -> DictConfig:
    """Merge ablation row ``name``'s overrides into ``cfg.model`` (its model must be ``cfg.model.name``)."""
    rows = ablation_rows()
    if name not in rows:
        raise UserError(f"unknown ablation {name!r}: valid choices are {', '.join(rows)}")
    row = rows[name]
    if row["model"] != cfg.model.name:
        raise UserError(f"ablation {name!r} is a row of {row['table']} for model {row['model']!r}, "
                        f"not {cfg.model.name!r}: pass MODEL={row['model']} (or model={row['model']})")
    cfg.model = OmegaConf.merge(cfg.model, row["overrides"])
    cfg.ablation = name
    return cfg


def compose(root: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``configs/<root>.yaml`` with its groups and apply ``overrides``. Resolves interpolations."""
    root_path = CONFIG_DIR / f"{root}.yaml"
    if not root_path.exists():
        raise UserError(f"unknown config {root!r}: valid choices are {', '.join(sorted(p.stem for p in CONFIG_DIR.glob('*.yaml')))}")
    base = OmegaConf.load(root_path)
    defaults = base.pop("defaults", [])
    groups = {}
    for entry in defaults:
        (group, choice), = entry.items()
        groups[group] = choice
    values = []
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. body=smpl or body.smpl_dir=/data/smpl)")
        key, value = item.split("=", 1)
        if key in groups:
            groups[key] = value
        else:
            values.append(item)
    cfg = OmegaConf.create({})
    for group, choice in groups.items():
        cfg[group] = _load_group(group, choice)
    cfg = OmegaConf.merge(cfg, base)
    ablation = [item.split("=", 1)[1] for item in values if item.split("=", 1)[0] == "ablation"]
    values = [item for item in values if item.split("=", 1)[0] != "ablation"]
    if ablation and ablation[-1] not in ("", "null"):
        if "ablation" not in cfg:
            raise UserError(f"config {root!r} has no ablation rows; ablation=... applies to training configs")
        cfg = apply_ablation(cfg, ablation[-1])
    for item in values:
        key = item.split("=", 1)[0]
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise UserError(f"unknown config key {key!r}: top-level keys are {', '.join(str(k) for k in cfg.keys())}")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(values))
    OmegaConf.resolve(cfg)
    return cfg
