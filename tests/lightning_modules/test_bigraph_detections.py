"""BiGraph on missing detections: where a joint without a detection is centred, the counts in the evaluation
row and validation log, and the start-of-run refusal of a set without any detection (with its override)."""
from __future__ import annotations

import dataclasses

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from body.camera import normalized_to_pixels, project_to_normalized_crop
from body.joints import SPIN49_TO_BIGRAPH12
from configs.loader import compose
from datamodules.mixed import MixedDataModule
from datamodules.shards import read_shard, write_shards
from lightning_modules.evaluation import metric_values
from lightning_modules.registry import model_class
from runtime.errors import UserError


def small_bigraph(eval_sets):
    cfg = OmegaConf.to_container(OmegaConf.load("configs/model/bigraph.yaml"))
    cfg["backbone"]["width"] = 8
    cfg["net"]["width"] = 0.125
    torch.manual_seed(0)
    return model_class("bigraph")(model=cfg, optim=cfg["optim"], eval_sets=eval_sets)


@pytest.fixture(scope="module")
def batch(tiny_data_module):
    return next(iter(tiny_data_module.val_dataloader()[0]))


def with_missing(batch, joints=(0, 5, 11)):
    """The batch with the detections of some joints removed (confidence 0, stored zeros) in every sample."""
    det = batch["bigraph_joints_2d"].clone()
    det[:, list(joints)] = 0.0
    return {**batch, "bigraph_joints_2d": det}


def test_a_missing_joint_sits_at_the_box_centre_never_at_the_stored_zeros(batch):
    model = small_bigraph(["3dpw"]).eval()
    missing = with_missing(batch)
    joints = model.roi_joints(missing)
    assert torch.equal(joints[:, [0, 5, 11]], torch.zeros_like(joints[:, [0, 5, 11]]))
    assert torch.equal(joints[:, 1], batch["bigraph_joints_2d"][:, 1, :2])
    model.train()                                   # training: the ground truth where labelled, else the centre
    model.roi_joints.gt_ratio = 0.0
    gt = missing["keypoints_2d"][:, SPIN49_TO_BIGRAPH12]
    joints = model.roi_joints(missing)
    for j in (0, 5, 11):
        labelled = gt[:, j, 2] > 0
        assert torch.equal(joints[labelled, j], gt[labelled, j, :2])
        assert not joints[~labelled, j].any()
    assert torch.equal(joints[:, 1], batch["bigraph_joints_2d"][:, 1, :2])


def test_missing_joints_take_the_roi_centre_of_the_models_own_estimate(batch):
    model = small_bigraph(["3dpw"]).eval()
    missing = with_missing(batch)
    with torch.no_grad():
        prediction = model(missing)
        # By hand: the first pass with the missing joints at the box centre, its skeleton estimate projected.
        image = model.normalize(missing["img"])
        features = model.net.backbone.forward_features(image)
        start = model.roi_joints(missing)
        first = model.net.graph(features, start)
        estimate = project_to_normalized_crop(first.skeleton_joints, first.final.cam, model.img_res)
        second = model.net.graph(features, torch.where(model.roi_joints.missing(missing)[..., None], estimate, start))
    centres = 0.5 * (prediction.roi_boxes[..., :2] + prediction.roi_boxes[..., 2:])
    torch.testing.assert_close(centres[:, [0, 5, 11]], normalized_to_pixels(estimate[:, [0, 5, 11]], model.img_res))
    torch.testing.assert_close(centres[:, [1, 2]], normalized_to_pixels(batch["bigraph_joints_2d"][:, [1, 2], :2],
                                                                        model.img_res))
    torch.testing.assert_close(prediction.vertices_np, second.vertices_np)
    assert not torch.allclose(prediction.vertices_np, first.vertices_np)


def test_the_row_counts_missing_detections_and_validation_logs_them(batch):
    model = small_bigraph(["3dpw"]).eval()
    with torch.no_grad():
        model.validation_step(with_missing(batch, joints=(2, 3)), 0)
    row = model.evaluators[0].row()
    b = batch["img"].shape[0]
    assert row["detections"] == {"joints": 12 * b, "missing": 2 * b, "missing_allowed": False}
    assert metric_values(row)["detections_missing"] == 2 * b
    model.evaluators[0].reset()
    with torch.no_grad():
        model.validation_step(batch, 0)
    full = model.evaluators[0].row()
    assert full["detections"]["missing"] == 0 and "detections_missing" not in metric_values(full)   # logged when not 0
    hmr = model_class("hmr")(model={**OmegaConf.to_container(OmegaConf.load("configs/model/hmr.yaml")),
                                    "backbone": {"weights": None, "width": 8}}, eval_sets=["3dpw"]).eval()
    with torch.no_grad():
        hmr.validation_step(batch, 0)
    assert "detections" not in hmr.evaluators[0].row()   # a model without detected joints counts none


def undetected_set(tiny_data_module, root, name="3dpw"):
    """The tiny 3dpw evaluation set with every detection removed, as a converted H36M test set has it."""
    urls = tiny_data_module.eval_stream(name).urls
    samples = [dataclasses.replace(s, bigraph_joints_2d=s.bigraph_joints_2d * 0, bigraph_joints_from="none")
               for url in urls for s in read_shard(url)]
    write_shards(samples, str(root / name / "s-%06d.tar"))
    return {"shards": f"{name}/*.tar"}


def data_module(tiny_data_module, root, **set_cfg):
    cfg = {"root": str(root), "eval": {"3dpw": {**undetected_set(tiny_data_module, root), **set_cfg}},
           "eval_batch_size": 4, "num_workers": 0}
    return MixedDataModule(cfg)


def validate(model, dm):
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False, limit_val_batches=1)
    trainer.validate(model, datamodule=dm, verbose=False)


def test_a_set_without_detections_stops_a_run_in_one_line_unless_allowed(tiny_data_module, tmp_path):
    model = small_bigraph(["3dpw"])
    with pytest.raises(UserError) as info:
        validate(model, data_module(tiny_data_module, tmp_path / "a"))
    message = str(info.value)
    assert "\n" not in message and "'3dpw': no sample has a detected 2D joint" in message
    assert "allow_missing_detections=true" in message
    model = small_bigraph(["3dpw"])
    validate(model, data_module(tiny_data_module, tmp_path / "b", allow_missing_detections=True))
    row = model.last_rows["3dpw"]
    assert row["detections"]["missing_allowed"] is True and row["detections"]["missing"] == row["detections"]["joints"]
    assert row["evaluated"] == row["samples"] > 0


def test_the_override_is_a_typed_config_key():
    cfg = compose("eval", ["data.eval.3dpw.allow_missing_detections=true"])
    assert cfg.data.eval["3dpw"].allow_missing_detections is True
    assert compose("eval", []).data.eval["3dpw"].allow_missing_detections is False
    with pytest.raises(UserError):
        compose("eval", ["data.eval.3dpw.allow_missing_detections=maybe"])
