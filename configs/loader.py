"""Compose a config from YAML groups (the lightning-hydra-template idea, without hydra).

A root file (``configs/<root>.yaml``) lists ``defaults``: one ``- group: choice`` per group, each read
from ``configs/<group>/<choice>.yaml`` and placed under the key ``group``. Command-line style overrides
then apply: ``group=choice`` swaps a group, ``a.b=value`` sets a value (omegaconf dot-list syntax).
``experiment=<recipe>`` (roots with an ``experiment`` key) reads ``configs/experiment/<recipe>.yaml``: its group
choices replace the root's defaults (a group chosen on the command line wins, except ``model``, which must be
the recipe's), and its values are merged after the groups and before everything else below.
``ablation=<row>`` (roots with an ``ablation`` key) merges a paper ablation row of ``configs/ablations.yaml``
into ``model`` after the groups and before the other overrides, so ``model.*`` overrides still win.

Every group, the root's own keys, the ablation row and the overrides are checked against the typed schemas
of ``configs/schema.py``: an unknown key or a value of the wrong type is a one-line ``UserError`` that names
the valid keys or the expected type, and so is a mandatory key no file sets.
"""
from __future__ import annotations

from pathlib import Path

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from configs.schema import GROUPS, ROOTS, ExperimentConfig, model_schema
from runtime.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent


def group_choices(group: str) -> list[str]:
    """Names of the YAML files available for a group."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _load_group(group: str, choice: str) -> DictConfig:
    path = CONFIG_DIR / group / f"{choice}.yaml"
    if not path.exists():
        raise UserError(f"unknown {group} config {choice!r}: valid choices are {', '.join(group_choices(group))}")
    return OmegaConf.load(path)


def _valid_keys(node: Any, path: str) -> str:
    parent = OmegaConf.select(node, path.rsplit(".", 1)[0], default=None) if "." in path else node
    keys = [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []
    return ", ".join(keys) if keys else "none"


def checked_merge(base: DictConfig, update: Any, where: str, prefix: str = "") -> DictConfig:
    """``OmegaConf.merge(base, update)``; a key ``base``'s schema lacks or a value of the wrong type becomes a
    one-line ``UserError`` (``where`` says what was merged; ``prefix`` is ``base``'s own key path)."""
    try:
        return OmegaConf.merge(base, update)
    except (ConfigKeyError, ValidationError, OmegaConfBaseException) as err:
        key = str(getattr(err, "full_key", "") or "")
        full = f"{prefix}.{key}" if prefix and key else (prefix or key)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, ConfigKeyError) or "not in" in message:
            raise UserError(f"{where}: unknown config key {full!r}; valid keys there are "
                            f"{_valid_keys(base, key) if key else 'none'}") from None
        raise UserError(f"{where}: {full}: {message}") from None


def _group_node(group: str, choice: str) -> DictConfig:
    """Group ``group``'s YAML ``choice`` checked against its schema (``GROUPS``; a model by its ``name``)."""
    raw = _load_group(group, choice)
    where = f"configs/{group}/{choice}.yaml"
    if group == "model":
        schema = model_schema(str(raw.get("name")))
        if schema is None:
            raise UserError(f"{where}: name {raw.get('name')!r} is not a model: valid names are hmr, pymaf, bigraph")
    else:
        schema = GROUPS.get(group)
        if schema is None:
            raise UserError(f"{where}: {group!r} is not a config group: valid groups are model, "
                            f"{', '.join(GROUPS)}")
    return checked_merge(OmegaConf.structured(schema), raw, where, group)


def complete_group(group: str, values: Any, where: str) -> dict:
    """``values`` of a ``model`` or ``body`` group over its YAML (the file its ``name`` names), checked by its
    schema, as plain containers: every key present. This is how a model is built from a checkpoint's saved
    config too, so a checkpoint written before a key existed gets the key's YAML value (the migration)."""
    values = OmegaConf.to_container(values, resolve=True) if isinstance(values, DictConfig) else dict(values)
    if "name" not in values:
        raise UserError(f"{where}: no 'name' (valid: {', '.join(group_choices(group))})")
    node = _group_node(group, str(values["name"]))
    return OmegaConf.to_container(checked_merge(node, values, where, group), resolve=True)


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
    cfg.model = checked_merge(cfg.model, row["overrides"], f"ablation {name}", "model")
    cfg.ablation = name
    return cfg


def load_experiment(name: str) -> DictConfig:
    """The recipe ``configs/experiment/<name>.yaml``, checked against ``ExperimentConfig``."""
    raw = _load_group("experiment", name)
    return checked_merge(OmegaConf.structured(ExperimentConfig), raw, f"configs/experiment/{name}.yaml")


def _experiment_groups(experiment: DictConfig, name: str, groups: dict, chosen: dict) -> None:
    """Put the recipe's group choices into ``groups``. A group chosen on the command line wins (e.g.
    ``trainer=ddp`` for several GPUs), except the model: a recipe is one model's, so another is an error."""
    for group, choice in experiment.groups.items():
        if group not in groups:
            raise UserError(f"configs/experiment/{name}.yaml: {group!r} is not a group of this config: valid "
                            f"groups are {', '.join(groups)}")
        if group == "model" and chosen.get("model", choice) != choice:
            raise UserError(f"experiment {name!r} is a recipe for model {choice!r}, not {chosen['model']!r}: pass "
                            f"MODEL={choice} (or model={choice})")
        groups[group] = choice


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
    values, chosen = [], {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. body=smpl or body.smpl_dir=/data/smpl)")
        key, value = item.split("=", 1)
        if key in groups:
            chosen[key] = value
        else:
            values.append(item)
    named = [item.split("=", 1)[1] for item in values if item.split("=", 1)[0] == "experiment"]
    values = [item for item in values if item.split("=", 1)[0] != "experiment"]
    experiment = None
    if named and named[-1] not in ("", "null"):
        if "experiment" not in base:
            raise UserError(f"config {root!r} has no experiments; experiment=... applies to training configs")
        experiment = load_experiment(named[-1])
        _experiment_groups(experiment, named[-1], groups, chosen)
    groups.update(chosen)
    typed = root in ROOTS
    cfg = OmegaConf.structured(ROOTS[root]) if typed else OmegaConf.create({})
    for group, choice in groups.items():
        cfg[group] = _group_node(group, choice)
    cfg = checked_merge(cfg, base, f"configs/{root}.yaml")
    if experiment is not None:
        cfg = checked_merge(cfg, experiment["values"], f"configs/experiment/{named[-1]}.yaml")
        cfg.experiment = named[-1]
    ablation = [item.split("=", 1)[1] for item in values if item.split("=", 1)[0] == "ablation"]
    values = [item for item in values if item.split("=", 1)[0] != "ablation"]
    if ablation and ablation[-1] not in ("", "null"):
        if "ablation" not in cfg:
            raise UserError(f"config {root!r} has no ablation rows; ablation=... applies to training configs")
        cfg = apply_ablation(cfg, ablation[-1])
    for item in values:
        key = item.split("=", 1)[0]
        if not typed and OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise UserError(f"unknown config key {key!r}: top-level keys are {', '.join(str(k) for k in cfg.keys())}")
    try:
        dotlist = OmegaConf.from_dotlist(values)
    except OmegaConfBaseException as err:
        raise UserError(f"overrides: {str(err).strip().splitlines()[0]}") from None
    cfg = checked_merge(cfg, dotlist, "override")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(f"config {root!r}: mandatory keys not set: {', '.join(missing)} (set them in the group's "
                        "YAML or as key=value)")
    OmegaConf.resolve(cfg)
    return cfg
