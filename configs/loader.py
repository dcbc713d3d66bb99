"""Compose a config from YAML groups (the lightning-hydra-template idea, without hydra).

A root file (``configs/<root>.yaml``) lists ``defaults``: one ``- group: choice`` per group, each read
from ``configs/<group>/<choice>.yaml`` and placed under the key ``group``. Command-line style overrides
then apply: ``group=choice`` swaps a group, ``a.b=value`` sets a value (omegaconf dot-list syntax).
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
    for item in values:
        key = item.split("=", 1)[0]
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise UserError(f"unknown config key {key!r}: top-level keys are {', '.join(str(k) for k in cfg.keys())}")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(values))
    OmegaConf.resolve(cfg)
    return cfg
