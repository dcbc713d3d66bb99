"""The models by name, and the module of a model config or of a ``make train`` checkpoint.

``MODELS``: the names ``model=`` accepts; :func:`model_class` imports only the one needed. Adding a model:
its network, its loss and a config (``configs/model/<name>.yaml``, ``configs/schema.py``), a module of a few
lines on ``base.MeshRecoveryModule``, and a line here.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from lightning_modules.checkpoints import read_checkpoint
from runtime.errors import UserError

MODELS = ("hmr", "pymaf", "bigraph")


def model_class(name: str):
    """The LightningModule class of a model name."""
    if name == "hmr":
        from lightning_modules.hmr import HMRModule
        return HMRModule
    if name == "pymaf":
        from lightning_modules.pymaf import PyMAFModule
        return PyMAFModule
    if name == "bigraph":
        from lightning_modules.bigraph import BiGraphModule
        return BiGraphModule
    raise UserError(f"unknown model {name!r}: valid choices are {', '.join(MODELS)}")


def build_module(model_cfg: Mapping[str, Any], body_cfg: Mapping[str, Any], eval_sets: Sequence[str], img_res: int):
    """The LightningModule of a model config; an invalid switch value becomes a one-line ``UserError``."""
    cls = model_class(model_cfg["name"])
    try:
        return cls(model=model_cfg, optim=model_cfg["optim"], body=body_cfg, eval_sets=eval_sets, img_res=img_res)
    except ValueError as e:   # the networks validate their switches with ValueError naming the choices
        raise UserError(f"model config ({model_cfg['name']}): {e}") from e


def load_module(path: str, expected_model: str | None = None):
    """The LightningModule saved in a ``make train`` checkpoint (read weights-only), in eval mode on the CPU.

    Raises a one-line ``UserError`` for a missing or foreign file, or a model other than ``expected_model``.
    """
    if expected_model is not None and expected_model not in MODELS:
        raise UserError(f"unknown model {expected_model!r}: valid choices are {', '.join(MODELS)}")
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    model_cfg = hparams.get("model")
    if not isinstance(model_cfg, dict) or "name" not in model_cfg:
        raise UserError(f"ckpt={path}: not a checkpoint of make train (no model hyper-parameters or weights)")
    if expected_model is not None and model_cfg["name"] != expected_model:
        raise UserError(f"ckpt={path} holds a {model_cfg['name']!r} model, not {expected_model!r}: "
                        f"pass MODEL={model_cfg['name']} (or leave MODEL out)")
    module = build_module(model_cfg, hparams.get("body") or {"name": "open"}, [], int(hparams.get("img_res", 224)))
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def load_weights(module, path: str, what: str = "init_weights") -> None:
    """Start ``module`` from the model weights of a ``make train`` checkpoint (read weights-only): a new run
    from trained weights (PyMAF's ``--pretrained_checkpoint``), not a resume (no optimiser, epoch or RNG
    state is read). The checkpoint's model must be ``module``'s, and every weight must match by name and
    shape, or the run stops in one line."""
    ckpt = read_checkpoint(path, what=what)
    saved = ((ckpt.get("hyper_parameters") or {}).get("model") or {}).get("name")
    own = module.model_cfg["name"]
    if saved is not None and saved != own:
        raise UserError(f"{what}={path} holds a {saved!r} model, not {own!r}: use a checkpoint of MODEL={own}")
    state = ckpt["state_dict"]
    mine = module.state_dict()
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    wrong = sorted(k for k in set(mine) & set(state) if tuple(mine[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(f"{what}={path}: its weights do not fit this model ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. {first!r}): train it "
                        "with the same model settings")
    module.load_state_dict(state)
