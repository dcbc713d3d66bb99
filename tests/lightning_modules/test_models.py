"""The LightningModules on the shared base: they train, validate and predict; BiGraph's RoI joint mixing."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from body.joints import SPIN49_TO_BIGRAPH12
from callbacks.gt_joint_mixing import gt_joint_ratio
from lightning_modules.evaluation import metric_values
from lightning_modules.registry import model_class
from runtime.errors import UserError

MODELS = ("hmr", "pymaf", "bigraph")


@pytest.fixture(scope="module")
def data(tiny_data_module):
    dm = tiny_data_module
    return dm, next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()[0]))


def small_model(name: str, eval_sets, bigraph_head_channels: int | None = None):
    cfg = OmegaConf.to_container(OmegaConf.load(f"configs/model/{name}.yaml"))
    cfg["backbone"]["width"] = 8
    if name == "pymaf":
        cfg["deconv_channels"] = 32
    if name == "bigraph":
        cfg["net"]["width"] = 0.125
        if bigraph_head_channels is not None:
            cfg["net"]["head_channels"] = bigraph_head_channels
    torch.manual_seed(0)
    return model_class(name)(model=cfg, optim=cfg["optim"], eval_sets=eval_sets)


# Fitting 8 fixed samples: (steps, learning rate) per model; None = the config's rate. HMR and PyMAF get rates
# above their configs' 5e-5 (meant for long runs over a large data set): at 5e-5 the same steps only reach
# 0.126 (HMR, 200 steps) and 0.090 (PyMAF, 150 steps) of the first loss, while 1e-3 diverges for HMR (its 2D
# keypoint term explodes). BiGraph fits at its config's 2.5e-4. Measured ratios (mean of the last 5 steps over
# the first step): HMR 0.036, PyMAF 0.029, BiGraph 0.077 here; with model seeds 1 / 2 instead of 0,
# HMR 0.036 / 0.031, PyMAF 0.025 / 0.027, BiGraph 0.073 / 0.067 (BiGraph with GraphCMR's widths, 512 -> 256).
FIT_STEPS_AND_LR = {"hmr": (200, 3e-4), "pymaf": (150, 5e-4), "bigraph": (200, None)}
# BiGraph's width 0.125 also cuts its coordinate and camera heads to 8 hidden channels, a bottleneck: with them
# the loss is still at 0.34 of its first value after 150 steps. 512 x 0.125 keeps the heads at their full 64
# (BiGraphConfig.head_channels); only the trunk is reduced.
FIT_BIGRAPH_HEAD_CHANNELS = 512
FIT_TAIL = 5  # the end of the run is judged by the mean of its last steps, not by one lucky step


# BiGraph's run takes about 40 s on a shared 2-core CPU (HMR ~21 s, PyMAF ~29 s): marked slow.
@pytest.mark.parametrize("name", [n if n != "bigraph" else pytest.param(n, marks=pytest.mark.slow) for n in MODELS])
def test_training_drives_the_loss_on_fixed_samples_down_by_90_percent(data, name):
    """The acceptance criterion: each model's summed weighted training loss (what ``training_step``
    optimises) on the same 8 samples falls to at most 10 % of its first-step value, in train mode
    (BatchNorm on batch statistics, dropout on) with the module's own optimiser."""
    dm, batch, _ = data
    steps, lr = FIT_STEPS_AND_LR[name]
    model = small_model(name, dm.eval_names, bigraph_head_channels=FIT_BIGRAPH_HEAD_CHANNELS)
    if lr is not None:
        model.optim_cfg["lr"] = lr  # see FIT_STEPS_AND_LR
    lr = float(model.optim_cfg["lr"])
    opt = model.configure_optimizers()  # the module's optimiser type, betas and weight decay
    model.train()
    if name == "bigraph":
        model.roi_joints.gt_ratio = 1.0  # deterministic RoI centres: ground truth wherever labelled
    torch.manual_seed(0)  # dropout
    losses, first = [], {}
    for step in range(steps):
        terms = model.criterion(batch, model(batch), model.decoder)
        loss = torch.stack(list(terms.values())).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 0:
            first = {k: round(v.item(), 4) for k, v in terms.items()}
    last = {k: round(v.item(), 5) for k, v in terms.items()}
    assert all(torch.isfinite(torch.tensor(losses))), losses
    ratio = sum(losses[-FIT_TAIL:]) / FIT_TAIL / losses[0]
    assert ratio <= 0.1, (f"{name}: mean loss of the last {FIT_TAIL} of {steps} steps (lr {lr:g}) is "
                          f"{ratio:.3f} of the first ({losses[0]:.4g}); terms at the first step {first}, "
                          f"at the last {last}")
    print(f"{name}: loss ratio {ratio:.4f} after {steps} steps at lr {lr:g} (first {losses[0]:.4g})")


@pytest.mark.parametrize("name", MODELS)
def test_validation_and_prediction(data, name):
    dm, _, val_batch = data
    model = small_model(name, dm.eval_names).eval()
    with torch.no_grad():
        model.validation_step(val_batch, 0)
        pred = model.predict_step(val_batch, 0)
    values = metric_values(model.evaluators[0].row())
    final = "_np" if name == "bigraph" else ""   # BiGraph's prediction is its graph's (non-parametric) mesh
    assert {f"mpjpe{final}", f"pa_mpjpe{final}", f"pve{final}"} <= set(values)
    assert all(math.isfinite(v) and v > 0 for v in values.values())
    assert values[f"pa_mpjpe{final}"] <= values[f"mpjpe{final}"] + 1e-3  # alignment can only lower the error
    b = val_batch["img"].shape[0]
    assert pred["vertices"].shape == (b, 6890, 3) and pred["joints_3d"].shape == (b, 24, 3)
    assert pred["pose_rotmat"].shape == (b, 24, 3, 3) and pred["cam"].shape == (b, 3)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_autocast_runs_trains_and_stays_close_on_cpu(data, name):
    """What ``precision: bf16-mixed`` (the gpu/ddp trainers) does, on CPU. In eval mode every loss term
    under bf16 autocast is within 2 % of float32 (BiGraph's sparse graph products run in float32 inside
    it: the CPU sparse kernels have no bf16). In train mode a step gives finite losses and a finite gradient
    to every parameter the float32 step trains. (Train-mode values are not compared: at initialisation
    BiGraph's SMPL-regressor BatchNorm amplifies rounding differences between near-identical meshes.)"""
    dm, batch, _ = data
    model = small_model(name, dm.eval_names).eval()
    with torch.no_grad():
        terms32 = model.criterion(batch, model(batch), model.decoder)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            terms16 = model.criterion(batch, model(batch), model.decoder)
    assert set(terms16) == set(terms32)
    for key, ref in terms32.items():
        assert abs(float(terms16[key]) - float(ref)) <= 0.02 * abs(float(ref)) + 1e-6, (key, terms16[key], ref)

    model.train()
    if name == "bigraph":
        model.roi_joints.gt_ratio = 1.0
    torch.manual_seed(0)
    sum(model.criterion(batch, model(batch), model.decoder).values()).backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.criterion(batch, model(batch), model.decoder)
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if n in trained}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())


def test_bigraph_mixes_ground_truth_joints_only_in_training(data):
    dm, batch, _ = data
    model = small_model("bigraph", dm.eval_names)
    gt = batch["keypoints_2d"][:, SPIN49_TO_BIGRAPH12]
    labelled = gt[..., 2] > 0
    model.train()
    model.roi_joints.gt_ratio = 1.0
    joints = model.roi_joints(batch)
    assert torch.equal(joints[labelled], gt[..., :2][labelled])
    assert torch.equal(joints[~labelled], batch["bigraph_joints_2d"][..., :2][~labelled])
    model.eval()
    assert torch.equal(model.roi_joints(batch), batch["bigraph_joints_2d"][..., :2])
    model.train()
    model.roi_joints.gt_ratio = 0.0
    assert torch.equal(model.roi_joints(batch), batch["bigraph_joints_2d"][..., :2])


def test_gt_joint_ratio_decays_to_zero_by_the_last_epoch():
    assert gt_joint_ratio(0, 50) == 1.0 and gt_joint_ratio(49, 50) == 0.0
    assert abs(gt_joint_ratio(10, 21, start=0.8) - 0.4) < 1e-12
    assert gt_joint_ratio(0, 1) == 0.0


def test_unknown_model_names_the_choices():
    with pytest.raises(UserError, match="valid choices are hmr, pymaf, bigraph"):
        model_class("gcmr")
