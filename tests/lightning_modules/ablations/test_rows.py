"""The papers' ablation rows (``configs/ablations.yaml``) at the LightningModule level: the rows and
their composition, and every row end to end.

Every row is composed with the real config (``compose("train", ["model=...", "ablation=<row>"])``), built
as its LightningModule with reduced widths, trained one optimiser step on a real synthetic batch and
validated. What each switch changes observably is checked in ``test_pymaf_rows.py`` and
``test_bigraph_rows.py``; the network-level switch tests are in
``tests/lightning_modules/nets/test_{pymaf,bigraph}_net.py``.
"""
from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from configs.loader import compose
from lightning_modules.evaluation import metric_values
from lightning_modules.registry import MODELS, model_class
from runtime.errors import UserError
from tests.lightning_modules.ablations.support import (BIGRAPH_ROWS, FULL_BIGRAPH, N_LEVELS, PYMAF_ROWS, ROW_NAMES,
                                                       ROWS, build, build_from)

LOG_WARNING = "ignore:You are trying to `self.log"  # training_step called without a Trainer


# ----------------------------------------------------------------------------------------------
# The rows and their composition
# ----------------------------------------------------------------------------------------------
def leaves(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def test_rows_cover_the_papers_ablation_tables():
    assert {row["model"] for row in ROWS.values()} <= set(MODELS)
    tables = {(row["model"], t.strip().split(" (")[0].replace("PyMAF ", "").replace("BiGraph ", ""))
              for row in ROWS.values() for t in row["table"].split("/")}
    assert tables == {("pymaf", "Table 4"), ("pymaf", "Table 5"), ("pymaf", "Table 6"),
                      ("bigraph", "Table 4"), ("bigraph", "Table 5")}
    assert ROWS["bigraph_t4_a_mesh_only"]["overrides"] == {"net": {"skeleton_graph": False}}
    assert len(PYMAF_ROWS) == 12 and len(BIGRAPH_ROWS) == 10


@pytest.mark.parametrize("name", ROW_NAMES)
def test_every_override_is_an_existing_model_setting_and_lands_in_the_config(name):
    """OmegaConf.merge silently adds unknown keys (a typo would be ignored by PyMAFModule's ``get``):
    every override must name a key of the model's YAML, and the composed config must hold its value."""
    row = ROWS[name]
    base = OmegaConf.to_container(OmegaConf.load(f"configs/model/{row['model']}.yaml"))
    cfg = compose("train", [f"model={row['model']}", f"ablation={name}"])
    assert cfg.ablation == name and cfg.model.name == row["model"]
    for path, value in leaves(row["overrides"]):
        node = base
        for key in path:
            assert isinstance(node, dict) and key in node, f"{name}: model.{'.'.join(path)} is not a setting"
            node = node[key]
        assert OmegaConf.select(cfg.model, ".".join(path)) == value


def test_command_line_model_overrides_win_over_the_row():
    cfg = compose("train", ["model=bigraph", "ablation=bigraph_t4_c_no_fusion", "model.net.fusion_graph=true"])
    assert cfg.model.net.fusion_graph is True and cfg.ablation == "bigraph_t4_c_no_fusion"
    cfg = compose("train", ["model=bigraph", "model.net.fusion_graph=true", "ablation=bigraph_t4_c_no_fusion"])
    assert cfg.model.net.fusion_graph is True
    assert compose("train", ["model=pymaf", "ablation=null"]).ablation is None


def test_compose_rejects_an_unknown_row_naming_the_choices():
    with pytest.raises(UserError) as err:
        compose("train", ["model=pymaf", "ablation=pymaf_t4_hmr"])
    msg = str(err.value)
    assert "\n" not in msg and "'pymaf_t4_hmr'" in msg and "valid choices are" in msg
    assert all(name in msg for name in ROW_NAMES)


def test_compose_rejects_a_row_of_another_model_naming_the_model():
    with pytest.raises(UserError) as err:
        compose("train", ["model=pymaf", "ablation=bigraph_t4_a_mesh_only"])
    msg = str(err.value)
    assert "\n" not in msg and "'bigraph'" in msg and "'pymaf'" in msg and "MODEL=bigraph" in msg
    with pytest.raises(UserError, match="MODEL=pymaf") as err:   # the training default model is bigraph
        compose("train", ["ablation=pymaf_t4_grid"])
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no ablation rows"):
        compose("show_body", ["ablation=pymaf_t4_grid"])


def test_the_full_model_rows_build_the_default_models():
    """Table 5's "Dense correspondence (PyMAF)", Table 6's "Grid points (PyMAF)" and BiGraph's row D are
    the papers' own models: the same network, weight for weight, as the default model config."""
    for name in ("pymaf_t5_dense_corr", "pymaf_t6_grid_points", FULL_BIGRAPH):
        row_state = build(name, []).state_dict()
        default_state = build_from([f"model={ROWS[name]['model']}"], []).state_dict()
        assert list(row_state) == list(default_state)
        assert all(torch.equal(row_state[k], default_state[k]) for k in row_state)


# ----------------------------------------------------------------------------------------------
# Every row: build, one optimiser step, validation
# ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings(LOG_WARNING)
@pytest.mark.parametrize("name", ROW_NAMES)
def test_row_builds_trains_one_step_and_validates(data, name):
    dm, batch, val_batch = data
    module = build(name, dm.eval_names)
    assert isinstance(module, pl.LightningModule) and type(module) is model_class(ROWS[name]["model"])
    optimizer = module.configure_optimizers()
    module.train()
    torch.manual_seed(0)
    loss = module.training_step(batch, 0)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    # DistributedDataParallel(find_unused_parameters=False) needs a gradient for every trainable parameter:
    # a switched-off part must not exist rather than sit unused.
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    assert trainable
    assert [n for n, p in trainable.items() if p.grad is None] == []
    assert [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()] == []
    assert [n for n, p in trainable.items() if not p.grad.any()] == []
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer.step()
    assert [n for n, p in trainable.items() if torch.equal(p, before[n])] == []
    assert all(torch.isfinite(p).all() for p in trainable.values())

    # Validation with the module's metrics on the first evaluation set (3DPW's protocol).
    module.eval()
    evaluator = module.evaluators[0]
    assert evaluator.protocol == "3dpw"
    with torch.no_grad():
        evaluator.update(val_batch, module(val_batch))
    values = metric_values(evaluator.row())
    meshes = ["_np", "_p"] if ROWS[name]["model"] == "bigraph" else [""]
    expected = {f"{metric}{suffix}" for metric in ("mpjpe", "pa_mpjpe", "pve") for suffix in meshes}
    if ROWS[name]["model"] == "pymaf":   # PyMAF's Table 6: M0 (the mean-parameter start) and one per level
        expected |= {f"{metric}_M{t}" for metric in ("mpjpe", "pa_mpjpe") for t in range(N_LEVELS + 1)}
    # BiGraph logs detections_missing (detected joints it read with confidence 0) only when some were missing.
    counts = set(values) & {"detections_missing"} if ROWS[name]["model"] == "bigraph" else set()
    assert set(values) == expected | counts
    assert all(math.isfinite(values[k]) and values[k] > 0 for k in expected | counts)
    if ROWS[name]["model"] == "pymaf":
        assert values["mpjpe_M0"] != values[f"mpjpe_M{N_LEVELS}"]
