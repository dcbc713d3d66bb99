"""The LightningModules on the shared base: they train, validate and predict; BiGraph's RoI joint mixing."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from body.errors import UserError
from body.joints import SPIN49_TO_BIGRAPH12
from callbacks.gt_joint_mixing import gt_joint_ratio
from datamodules.mixed import MixedDataModule
from datamodules.synthetic.dataset import generate
from lightning_modules.train import model_class

MODELS = ("hmr", "pymaf", "bigraph")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("models") / "synthetic"
    generate(root, seed=0, size=0.01, workers=1, log=None)
    cfg = OmegaConf.to_container(OmegaConf.load("configs/data/synthetic.yaml"))
    cfg.update(root=str(root), batch_size=8, eval_batch_size=4, num_workers=0)
    cfg["augment"]["enabled"] = False
    dm = MixedDataModule(cfg, rank=0, world_size=1)
    return dm, next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()[0]))


def small_model(name: str, eval_sets):
    cfg = OmegaConf.to_container(OmegaConf.load(f"configs/model/{name}.yaml"))
    cfg["backbone"]["width"] = 8
    if name == "pymaf":
        cfg["deconv_channels"] = 32
    if name == "bigraph":
        cfg["net"]["width"] = 0.125
    torch.manual_seed(0)
    return model_class(name)(model=cfg, optim=cfg["optim"], eval_sets=eval_sets)


@pytest.mark.parametrize("name", MODELS)
def test_training_lowers_the_loss_on_fixed_samples(data, name):
    dm, batch, _ = data
    model = small_model(name, dm.eval_names)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    losses = []
    for _ in range(25):
        terms = model.compute_losses(batch, model.run_network(batch))
        loss = torch.stack(list(terms.values())).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-5:]) < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_validation_and_prediction(data, name):
    dm, _, val_batch = data
    model = small_model(name, dm.eval_names).eval()
    with torch.no_grad():
        model.update_val_metrics(val_batch, model.run_network(val_batch), model.val_metrics[0])
        pred = model.predict_step(val_batch, 0)
    values = {k: m.compute() for k, m in model.val_metrics[0].items() if m.update_called}
    assert {"mpjpe", "pa_mpjpe", "pve"} <= set(values)
    assert all(torch.isfinite(v).all() and (v > 0).all() for v in values.values())
    assert values["pa_mpjpe"] <= values["mpjpe"] + 1e-6  # alignment can only lower the error
    b = val_batch["img"].shape[0]
    assert pred["vertices"].shape == (b, 6890, 3) and pred["joints_3d"].shape == (b, 24, 3)
    assert pred["pose_rotmat"].shape == (b, 24, 3, 3) and pred["cam"].shape == (b, 3)


def test_bigraph_mixes_ground_truth_joints_only_in_training(data):
    dm, batch, _ = data
    model = small_model("bigraph", dm.eval_names)
    gt = batch["keypoints_2d"][:, SPIN49_TO_BIGRAPH12]
    labelled = gt[..., 2] > 0
    model.train()
    model.gt_joint_ratio = 1.0
    joints = model.roi_joints(batch)
    assert torch.equal(joints[labelled], gt[..., :2][labelled])
    assert torch.equal(joints[~labelled], batch["bigraph_joints_2d"][..., :2][~labelled])
    model.eval()
    assert torch.equal(model.roi_joints(batch), batch["bigraph_joints_2d"][..., :2])
    model.train()
    model.gt_joint_ratio = 0.0
    assert torch.equal(model.roi_joints(batch), batch["bigraph_joints_2d"][..., :2])


def test_gt_joint_ratio_decays_to_zero_by_the_last_epoch():
    assert gt_joint_ratio(0, 50) == 1.0 and gt_joint_ratio(49, 50) == 0.0
    assert abs(gt_joint_ratio(10, 21, start=0.8) - 0.4) < 1e-12
    assert gt_joint_ratio(0, 1) == 0.0


def test_unknown_model_names_the_choices():
    with pytest.raises(UserError, match="valid choices are hmr, pymaf, bigraph"):
        model_class("gcmr")
