"""Official PyMAF checkpoints load: the committed name/shape table, the mapping both ways, the converter.

The official-shaped state dicts here are made from the table (random tensors of the official shapes), so the
tests need neither the official code nor licensed files. ``scripts/compare_official_pymaf.py`` checks the
table and the outputs against the official code itself (the last test, skipped without that code).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from cli import convert_pymaf, evaluate
from configs.loader import complete_group
from lightning_modules.nets.mesh_aligned import grid_points
from lightning_modules.official_pymaf import (
    BY_OFFICIAL, MAPPED, PAPER_MODEL, TABLE, official_to_ours, our_expected_shapes, ours_to_official,
    read_official_checkpoint,
)
from lightning_modules.registry import build_module, load_module
from runtime.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[2]
OFFICIAL_ROOT = pathlib.Path(os.environ.get("PYMAF_OFFICIAL_ROOT", "/work/ref/pymaf_a5feca1"))


def official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """An official-shaped state dict from the table: random tensors of the official shapes at a network's usual
    scales (weights N(0, 1 / fan-in), BatchNorm near identity, counters int64, the mean parameters in float64
    as the official code keeps them: near-identity rotations, camera scale 0.9), the grid as PyMAF's, dropped
    entries as zeros."""
    g = torch.Generator().manual_seed(seed)
    theta = {"init_pose": torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64).repeat(24),
             "init_shape": torch.zeros(10, dtype=torch.float64),
             "init_cam": torch.tensor([0.9, 0.0, 0.0], dtype=torch.float64)}
    state = {}
    for r in TABLE:
        name, shape = r.official, r.official_shape
        if name == "points_grid":
            value = grid_points(21).t().unsqueeze(0)
        elif r.rule == "drop":
            value = torch.zeros(shape)
        elif name.endswith("num_batches_tracked"):
            value = torch.randint(0, 10**6, shape, generator=g)
        elif r.rule.startswith("theta:"):
            base = theta[name.rsplit(".", 1)[1]]
            value = (base + 0.05 * torch.randn(base.shape, generator=g, dtype=torch.float64)).reshape(shape)
        elif name.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 1:   # biases, running means (0.1 N(0, 1)) and BatchNorm weights (1 + 0.1 N(0, 1))
            value = 0.1 * torch.randn(shape, generator=g) + float(name.endswith("weight"))
        else:
            value = torch.randn(shape, generator=g) / float(np.prod(shape[1:])) ** 0.5
        state[name] = value
    return state


@pytest.fixture(scope="module")
def paper_module():
    """Our PyMAF LightningModule with the paper's config (ResNet-50 width 64, 3 levels, IUV head), open body."""
    torch.manual_seed(0)
    return build_module(complete_group("model", PAPER_MODEL, "paper config"), {"name": "open"}, [], 224)


@pytest.fixture(scope="module")
def state():
    return official_state()


def one_line_naming(err: pytest.ExceptionInfo, key: str) -> bool:
    return key in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------
def test_table_maps_every_entry_of_our_paper_network_with_its_shape(paper_module):
    ours = {k: tuple(v.shape) for k, v in paper_module.net.state_dict().items()}
    assert ours == our_expected_shapes()


def test_table_rows_are_consistent_with_their_rules():
    assert len(BY_OFFICIAL) == len(TABLE) == 441                  # official names are unique
    by_ours: dict[str, list] = {}
    for r in MAPPED:
        by_ours.setdefault(r.ours, []).append(r)
        if r.rule == "copy":
            assert r.official_shape == r.our_shape, r
        elif r.rule == "conv1d":
            assert r.official_shape == r.our_shape + (1,), r
        else:
            assert r.rule.startswith("theta:") and r.our_shape == (157,), r
            assert r.official_shape == (1, r.theta_slice.stop - r.theta_slice.start), r
    for name, rows in by_ours.items():
        if len(rows) > 1:   # mean_theta = [init_pose | init_shape | init_cam]
            cuts = sorted((r.theta_slice.start, r.theta_slice.stop) for r in rows)
            assert cuts == [(0, 144), (144, 154), (154, 157)], name
    dropped = {r.official for r in TABLE if r.rule == "drop"}
    assert {"points_grid", "maf_extractor.0.Dmap"} <= dropped
    assert all(k == "points_grid" or k.endswith(".Dmap") or ".smpl." in k for k in dropped)
    # the official head, as its iuv_predictor.py: 25-class index, 15-class coarse parts, U and V of 25 channels
    assert {r.official: (r.ours, r.official_shape) for r in MAPPED if r.official.startswith("dp_head.")
            and r.official.endswith("weight")} == {
        "dp_head.predict_uv_index.weight": ("iuv_head.index.weight", (25, 256, 3, 3)),
        "dp_head.predict_ann_index.weight": ("iuv_head.coarse.weight", (15, 256, 3, 3)),
        "dp_head.predict_u.weight": ("iuv_head.u.weight", (25, 256, 3, 3)),
        "dp_head.predict_v.weight": ("iuv_head.v.weight", (25, 256, 3, 3))}


# ----------------------------------------------------------------------------------------------
# The mapping both ways
# ----------------------------------------------------------------------------------------------
def test_official_state_round_trips_through_our_network(paper_module, state):
    ours = official_to_ours(state)
    net = paper_module.net
    net.load_state_dict(ours, strict=True)
    assert torch.equal(net.backbone.conv1.weight, state["feature_extractor.conv1.weight"])
    assert torch.equal(net.point_features[1].mlp.layers[2].weight, state["maf_extractor.1.conv2.weight"][..., 0])
    assert torch.equal(net.deconv.blocks[2][1].running_var, state["deconv_layers.7.running_var"])
    theta = net.regressors[2].mean_theta
    assert torch.equal(theta[144:154], state["regressor.2.init_shape"][0].float())
    assert ours["regressors.0.mean_theta"].dtype == torch.float64      # conversion keeps the official dtype

    back = ours_to_official(net.state_dict())
    assert set(back) == {r.official for r in MAPPED}                     # dropped entries are not produced
    for r in MAPPED:
        expected = state[r.official].to(back[r.official].dtype)
        assert back[r.official].shape == state[r.official].shape and torch.equal(back[r.official], expected), r


def test_smpl_entries_are_dropped_whatever_smplx_wrote_and_a_module_prefix_is_stripped(state):
    extra = dict(state)
    extra["regressor.1.smpl.some_future_buffer"] = torch.zeros(3)
    del extra["regressor.0.smpl.betas"]                                  # dropped entries may be absent
    plain = official_to_ours(state)
    for variant in (extra, {f"module.{k}": v for k, v in state.items()}):
        converted = official_to_ours(variant)
        assert converted.keys() == plain.keys()
        assert all(torch.equal(converted[k], plain[k]) for k in plain)


@pytest.mark.parametrize("change, key", [
    (lambda s: s.update({"dp_head.predict_extra.weight": torch.zeros(1)}), "dp_head.predict_extra.weight"),
    (lambda s: s.pop("maf_extractor.2.conv1.weight"), "maf_extractor.2.conv1.weight"),
    (lambda s: s.pop("regressor.1.init_cam"), "regressor.1.init_cam"),
    (lambda s: s.update({"dp_head.predict_u.weight": torch.zeros(24, 256, 3, 3)}), "dp_head.predict_u.weight"),
    (lambda s: s.update({"regressor.0.fc1.weight": torch.zeros(1024, 2312)}), "regressor.0.fc1.weight"),
    (lambda s: s.update({"regressor.0.fc1.bias": [0.0] * 1024}), "regressor.0.fc1.bias"),
    (lambda s: s.update({"points_grid": s["points_grid"].flip(-1)}), "points_grid"),
])
def test_unmapped_or_mismatched_official_entries_fail_in_one_line_naming_them(state, change, key):
    broken = dict(state)
    change(broken)
    with pytest.raises(UserError) as err:
        official_to_ours(broken)
    assert one_line_naming(err, key), str(err.value)


def test_our_unmapped_or_mismatched_entries_fail_in_one_line_naming_them(state):
    ours = official_to_ours(state)
    for change, key in ((lambda s: s.update({"iuv_head.extra.weight": torch.zeros(1)}), "iuv_head.extra.weight"),
                        (lambda s: s.pop("regressors.1.mean_theta"), "regressors.1.mean_theta"),
                        (lambda s: s.update({"iuv_head.u.bias": torch.zeros(24)}), "iuv_head.u.bias")):
        broken = dict(ours)
        change(broken)
        with pytest.raises(UserError) as err:
            ours_to_official(broken)
        assert one_line_naming(err, key), str(err.value)


# ----------------------------------------------------------------------------------------------
# Reading the official file: weights-only
# ----------------------------------------------------------------------------------------------
class _WritesAFile:
    """Unpickling this calls ``Path.write_text``: what a crafted checkpoint could do."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return pathlib.Path.write_text, (self.target, "code ran while loading a checkpoint")


def test_official_file_is_read_weights_only_with_numpy_counters(tmp_path):
    layer = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    path = tmp_path / "official.pt"
    torch.save({"model": layer.state_dict(), "optimizer": torch.optim.Adam(layer.parameters()).state_dict(),
                "epoch": np.int64(60), "batch_idx": 0, "batch_size": 64, "total_step_count": np.int64(7)}, path)
    state, extra = read_official_checkpoint(path)
    assert set(state) == set(layer.state_dict()) and int(extra["epoch"]) == 60
    torch.save(layer.state_dict(), tmp_path / "bare.pt")                 # a bare state dict is accepted too
    assert set(read_official_checkpoint(tmp_path / "bare.pt")[0]) == set(state)


def test_official_file_with_code_or_without_weights_is_refused_in_one_line(tmp_path):
    target = tmp_path / "written.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _WritesAFile(target)}, evil)
    with pytest.raises(UserError) as err:
        read_official_checkpoint(evil)
    assert one_line_naming(err, "refused") and "getattr" in str(err.value), str(err.value)
    assert not target.exists()
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    for path, word in ((tmp_path / "empty.pt", "no PyMAF state dict"), (tmp_path / "missing.pt", "no such file")):
        with pytest.raises(UserError) as err:
            read_official_checkpoint(path)
        assert one_line_naming(err, word), str(err.value)


# ----------------------------------------------------------------------------------------------
# The command: official file -> a checkpoint make eval scores
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_converted_checkpoint_loads_weights_only_and_make_eval_scores_it(state, tiny_data_module, tmp_path, capsys):
    src, out = tmp_path / "PyMAF_model_checkpoint.pt", tmp_path / "converted.ckpt"
    torch.save({"model": state, "epoch": np.int64(60), "batch_idx": 0, "batch_size": 64, "total_step_count": 100},
               src)
    record = convert_pymaf.main([str(src), "--out", str(out)])
    assert record["epoch"] == 60 and record["total_step_count"] == 100 and len(record["sha256"]) == 64
    captured = capsys.readouterr()
    assert "make eval CKPT=" in captured.out and "body=open" in captured.err

    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["model"]["name"] == "pymaf" and raw["converted_from"]["code"].endswith("a5feca1")
    module = load_module(str(out), "pymaf")
    expected = official_to_ours(state)
    got = module.net.state_dict()
    assert all(torch.equal(got[k], v.to(got[k].dtype)) for k, v in expected.items())

    summary = evaluate.main([f"ckpt={out}", "model=pymaf", "sets=3dpw", f"data.root={tiny_data_module.root}",
                             "data.num_workers=0", f"out={tmp_path / 'eval.json'}"])
    row = summary["sets"]["3dpw"]
    assert row["evaluated"] == row["samples"] > 0
    assert all(v is not None and np.isfinite(v) for v in row["columns"].values())
    assert json.loads((tmp_path / "eval.json").read_text())["model"] == "pymaf"


@pytest.mark.slow
@pytest.mark.skipif(not (OFFICIAL_ROOT / "models" / "pymaf_net.py").is_file(),
                    reason=f"the official PyMAF code (HongwenZhang/PyMAF at a5feca1) is not at {OFFICIAL_ROOT}: "
                           "set PYMAF_OFFICIAL_ROOT to run the float64 comparison")
def test_converted_weights_reproduce_the_official_forward_in_float64():
    run = subprocess.run([sys.executable, "scripts/compare_official_pymaf.py", "--official-root", str(OFFICIAL_ROOT)],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "tolerance 1e-06: PASS" in run.stdout and "bit for bit" in run.stdout


@pytest.mark.parametrize("command", ["convert_pymaf", "convert"])
def test_body_smpl_without_a_folder_names_the_commands_own_option(tmp_path, monkeypatch, command):
    """The converters take the licensed folder as --smpl-dir, so that is what their one-line error names."""
    from cli import convert

    monkeypatch.delenv("SMPL_DIR", raising=False)
    argv = {"convert_pymaf": lambda: convert_pymaf.main([str(tmp_path / "x.pt"), "--out", str(tmp_path / "o.ckpt"),
                                                         "--body", "smpl"]),
            "convert": lambda: convert.main(["3dpw", "--npz", str(tmp_path / "x.npz"), "--images", str(tmp_path),
                                             "--out", str(tmp_path / "out"), "--body", "smpl"])}[command]
    with pytest.raises(UserError) as err:
        argv()
    assert one_line_naming(err, "--smpl-dir DIR") and "SMPL_DIR" in str(err.value), str(err.value)
