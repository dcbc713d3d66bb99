"""make train's callbacks come from the config: BiGraph's joint-mixing schedule starts at model.gt_joint_ratio."""
from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch

from callbacks.registry import callback_names, checkpoint_monitor
from cli import train
from configs.loader import compose
from metrics.protocols import protocol_of_set
from runtime.errors import UserError


def _bigraph_args(root, out, *extra: str) -> list[str]:
    return ["model=bigraph", "model.backbone.width=8", "model.net.width=0.125", f"data.root={root}",
            "data.batch_size=4", "data.eval_batch_size=4", "data.num_workers=0", "data.train.epoch_samples=4",
            "trainer.limit_train_batches=1", "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1",
            f"out_dir={out}", *extra]


def test_gt_joint_ratio_starts_the_schedule(tiny_data_module, tmp_path):
    """Through the real entry point: with model.gt_joint_ratio=0.3 over 3 epochs the share the module uses
    (logged by the callback at each epoch start) is 0.3, 0.15, 0 -- not the callback's own default of 1."""
    summary = train.main(_bigraph_args(tiny_data_module.root, tmp_path, "model.gt_joint_ratio=0.3",
                                       "trainer.max_epochs=3"))
    with open(f"{summary['run_dir']}/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/gt_joint_ratio")]
    shares = {int(r["epoch"]): float(r["train/gt_joint_ratio"]) for r in rows}
    assert shares == pytest.approx({0: 0.3, 1: 0.15, 2: 0.0})


def test_callbacks_listed_by_the_config():
    assert callback_names(compose("train", ["model=bigraph"])) == ["checkpoint", "preemption", "progress", "overlays", "gt_joint_mixing"]
    assert callback_names(compose("train", ["model=pymaf"])) == ["checkpoint", "preemption", "progress", "overlays"]
    assert callback_names(compose("train", ["model=hmr", "callbacks=[]"])) == []
    with pytest.raises(UserError, match="callbacks: unknown callback 'ema'; valid choices are checkpoint, "
                                        "preemption, progress, overlays, gt_joint_mixing"):
        callback_names(compose("train", ["model=hmr", "callbacks=[checkpoint,ema]"]))


def test_without_checkpoint_callback_nothing_is_saved(tiny_data_module, tmp_path):
    summary = train.main(_bigraph_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=1", "callbacks=[]",
                                       "model.callbacks=[]"))
    assert summary["last_checkpoint"] == "" and not (tmp_path / "bigraph-synthetic-s0" / "checkpoints").exists()


def test_best_checkpoint_follows_the_final_mesh_of_the_first_set(tiny_data_module, tmp_path):
    """BiGraph's prediction is its graph mesh: the best checkpoint is chosen by val/3dpw/pa_mpjpe_np, a key
    its validation logs (Lightning would otherwise save no best checkpoint)."""
    summary = train.main(_bigraph_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=1",
                                       "trainer.limit_val_batches=1"))
    assert "val/3dpw/pa_mpjpe_np" in summary["validation"] and "val/3dpw/pa_mpjpe_p" in summary["validation"]
    assert summary["best_checkpoint"].endswith("best-epoch=000.ckpt")
    best = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
    monitor = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint{'monitor': 'val/")][0]
    assert float(monitor["best_model_score"]) == pytest.approx(summary["validation"]["val/3dpw/pa_mpjpe_np"], abs=1e-3)


@pytest.mark.parametrize("sets, expected", [(["3dpw", "lsp"], ("val/3dpw/pa_mpjpe", "min")),
                                            (["up3d"], ("val/up3d/mpve", "min")),
                                            (["lsp", "3dpw"], ("val/lsp/parts_f1", "max")),
                                            (["coco"], ("val/coco/ap", "max")), ([], (None, "min"))])
def test_checkpoint_monitor_is_the_first_sets_primary_metric(sets, expected):
    module = SimpleNamespace(final_mesh_suffix="", eval_sets=sets,   # what checkpoint_monitor reads of a module
                             evaluators=[SimpleNamespace(protocol=protocol_of_set(s)) for s in sets])
    assert checkpoint_monitor(module) == expected
    module.final_mesh_suffix = "_np"
    if sets and sets[0] == "3dpw":
        assert checkpoint_monitor(module) == ("val/3dpw/pa_mpjpe_np", "min")


def test_last_checkpoint_is_the_last_epoch_also_when_the_best_is_earlier(tiny_data_module, tmp_path):
    """In this (seeded) run the last epoch does not validate best; last.ckpt must still hold the final step
    (Lightning's save_last alone rewrites it only when a best checkpoint is saved)."""
    summary = train.main(_bigraph_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=3",
                                       "trainer.limit_val_batches=1", "model.optim.lr=0.0"))
    assert not summary["best_checkpoint"].endswith("best-epoch=002.ckpt")   # what makes the case
    last = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    assert summary["last_checkpoint"].endswith("last.ckpt") and (last["epoch"], last["global_step"]) == (2, 3)
