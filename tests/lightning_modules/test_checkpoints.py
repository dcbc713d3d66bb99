"""Checkpoints are untrusted input: read weights-only, a code-running pickle is refused in one line."""
from __future__ import annotations

import pathlib
from enum import Enum

import pytest
import torch
from omegaconf import OmegaConf

from cli import evaluate, train
from lightning_modules.checkpoints import plain_data, read_checkpoint
from lightning_modules.registry import load_module
from runtime.errors import UserError


class _WritesAFile:
    """Unpickling this calls ``Path.write_text``: what a crafted checkpoint could do."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return pathlib.Path.write_text, (self.target, "code ran while loading a checkpoint")


@pytest.fixture(scope="module")
def pymaf_run(tiny_data_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train.main(["model=pymaf", "model.backbone.width=8", "model.deconv_channels=32",
                       f"data.root={tiny_data_module.root}", "data.batch_size=4", "data.num_workers=0",
                       "data.train.epoch_samples=4", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                       "trainer.limit_val_batches=0", f"out_dir={out}"])


def _is_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str, torch.Tensor))


def test_make_train_checkpoints_load_weights_only_and_hold_plain_data(pymaf_run):
    raw = torch.load(pymaf_run["last_checkpoint"], map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["model"]["name"] == "pymaf"
    assert _is_plain(raw["hyper_parameters"]) and _is_plain(raw["callbacks"]) and _is_plain(raw["loops"])
    module = load_module(pymaf_run["last_checkpoint"], "pymaf")
    assert torch.equal(module.state_dict()["net.backbone.conv1.weight"], raw["state_dict"]["net.backbone.conv1.weight"])


def test_a_code_running_pickle_is_refused_by_every_loader(pymaf_run, tiny_data_module, tmp_path):
    target = tmp_path / "written.txt"
    evil = tmp_path / "evil.ckpt"
    good = torch.load(pymaf_run["last_checkpoint"], map_location="cpu", weights_only=True)
    torch.save({**good, "extra": _WritesAFile(target)}, evil)
    for load in (lambda: load_module(evil),
                 lambda: evaluate.main([f"ckpt={evil}", f"data.root={tiny_data_module.root}", "data.num_workers=0"]),
                 lambda: read_checkpoint(evil),
                 lambda: train.main(["model=pymaf", "model.backbone.width=8", f"data.root={tiny_data_module.root}",
                                     f"out_dir={tmp_path / 'runs'}", f"ckpt_path={evil}"])):
        with pytest.raises(UserError) as err:
            load()
        assert "refused" in str(err.value) and "\n" not in str(err.value)
        assert not target.exists()
    # The control: an unrestricted load of the same file does run its code.
    torch.load(evil, map_location="cpu", weights_only=False)
    assert target.read_text() == "code ran while loading a checkpoint"


def test_plain_data_converts_configs_and_rejects_objects():
    class Fusion(Enum):
        graph = 1

    cfg = OmegaConf.create({"net": {"fusion_layers": "all", "roi_stages": [2, 3]}, "lr": 2.5e-4})
    assert plain_data({"cfg": cfg, "mode": Fusion.graph, "t": (1, 2)}) == {
        "cfg": {"net": {"fusion_layers": "all", "roi_stages": [2, 3]}, "lr": 2.5e-4}, "mode": "graph", "t": [1, 2]}
    with pytest.raises(TypeError, match=r"model.net: object is not plain data"):
        plain_data({"net": object()}, "model")
