"""PyMAF's ablation rows (Tables 4-6) at the LightningModule level.

Each switch is checked on what it changes observably: the points a PyMAF level samples, the regressors it
iterates and the loss terms it supervises, compared with an independent computation in this file or with
a contrasting row. The network-level switch tests are in ``tests/lightning_modules/nets/test_pymaf_net.py``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from body.camera import project_to_normalized_crop
from lightning_modules.pymaf import render_gt_iuv
from lightning_modules.prediction import Prediction
from tests.lightning_modules.ablations.support import (N_LEVELS, PYMAF_ROWS, build, build_from, hooks, max_diff,
                                                       run_eval)

GRID_POINTS, MESH_POINTS = 21 * 21, 431
# What each level samples, the pyramid map it reads (side), and the point-MLP / regressor it runs.
PYRAMID_SIDES, FLAT_SIDES = [14, 28, 56], [56, 56, 56]
PYMAF_PLAN = {
    "pymaf_t4_global": (["global"] * 3, None, [0, 0, 0]),
    "pymaf_t4_grid": (["grid"] * 3, FLAT_SIDES, [0, 0, 0]),
    "pymaf_t4_mesh_aligned": (["mesh"] * 3, FLAT_SIDES, [0, 0, 0]),
    "pymaf_t4_grid_pyramid": (["grid"] * 3, PYRAMID_SIDES, [0, 1, 2]),
    "pymaf_t4_mesh_aligned_pyramid": (["grid", "mesh", "mesh"], PYRAMID_SIDES, [0, 1, 2]),
    "pymaf_t5_part_seg": (["grid", "mesh", "mesh"], PYRAMID_SIDES, [0, 1, 2]),
    "pymaf_t5_part_seg_input": (["grid", "mesh", "mesh"], FLAT_SIDES, [0, 1, 2]),     # the 56 x 56 prediction
    "pymaf_t5_part_seg_masked": (["grid", "mesh", "mesh"], PYRAMID_SIDES, [0, 1, 2]),
    "pymaf_t5_dense_corr": (["grid", "mesh", "mesh"], PYRAMID_SIDES, [0, 1, 2]),
    "pymaf_t5_dense_corr_input": (["grid", "mesh", "mesh"], FLAT_SIDES, [0, 1, 2]),
    "pymaf_t6_mean_pose_mesh": (["mesh", "mesh", "mesh"], PYRAMID_SIDES, [0, 1, 2]),
    "pymaf_t6_grid_points": (["grid", "mesh", "mesh"], PYRAMID_SIDES, [0, 1, 2]),
}
# Auxiliary head outputs (training mode) and loss terms (at least these; the head may add more outputs and
# PyMAFLoss more "iuv_" terms).
PYMAF_AUX = {name: ({"index", "u", "v"}, {"iuv_index", "iuv_uv"}) for name in PYMAF_ROWS}
PYMAF_AUX.update({name: (None, set()) for name in PYMAF_ROWS if name.startswith("pymaf_t4")})
PYMAF_AUX.update({name: ({"index"}, {"iuv_index"}) for name in PYMAF_ROWS if name.startswith("pymaf_t5_part_seg")})
PARAMETRIC_TERMS = {"keypoints_2d", "joints_3d", "pose", "betas", "cam"}


def test_pymaf_plan_covers_the_rows():
    assert set(PYMAF_PLAN) == set(PYMAF_ROWS) == set(PYMAF_AUX)


def independent_grid(b: int) -> torch.Tensor:
    """PyMAF's 21 x 21 grid over the crop, x slow and y fast, (b, 441, 2)."""
    line = torch.linspace(-1.0, 1.0, 21)
    xy = torch.stack([line.repeat_interleave(21), line.repeat(21)], dim=-1)
    return xy.expand(b, -1, -1)


def independent_mesh_points(module, estimate) -> torch.Tensor:
    """Full body-model mesh of an estimate, down-sampled twice (431 vertices), projected by its camera."""
    rot = estimate.pose_rotmat
    vertices = module.body(betas=estimate.betas, body_pose=rot[:, 1:], global_orient=rot[:, :1]).vertices
    return project_to_normalized_crop(module.body.mesh_hierarchy.downsample(vertices, 0, 2), estimate.cam)


@pytest.mark.parametrize("name", PYMAF_ROWS)
def test_pymaf_levels_sample_what_the_row_says(data, name):
    """feedback / pyramid / init_features: the points each level samples, the map it reads and which
    point MLP and regressor it runs (non-pyramidal rows iterate ONE of each over the 56 x 56 map)."""
    dm, batch, _ = data
    sampling, sides, modules = PYMAF_PLAN[name]
    module = build(name, dm.eval_names)
    net = module.net
    n_modules = len(set(modules))
    assert len(net.regressors) == n_modules
    assert len(net.point_features) == (0 if sides is None else n_modules)
    assert (net.deconv is None) == (sides is None and PYMAF_AUX[name][0] is None)
    calls, sides_read = [], []
    handles = [r.fc1.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
               for i, r in enumerate(net.regressors)]
    handles += [pf.register_forward_pre_hook(lambda m, a: sides_read.append(a[0].shape[-1]))
                for pf in net.point_features]
    with hooks(*handles):
        out = run_eval(module, batch)
    assert calls == modules
    assert sides_read == ([] if sides is None else sides)
    b = batch["img"].shape[0]
    assert len(out.iterations) == len(out.sampled_points) == N_LEVELS
    previous = [out.initial] + out.iterations[:-1]
    for t, (kind, points) in enumerate(zip(sampling, out.sampled_points)):
        if kind == "global":
            assert points is None
        elif kind == "grid":
            assert points.shape == (b, GRID_POINTS, 2)
            torch.testing.assert_close(points, independent_grid(b), rtol=0, atol=1e-7)
        else:
            assert points.shape == (b, MESH_POINTS, 2)
            with torch.no_grad():
                torch.testing.assert_close(points, independent_mesh_points(module, previous[t]), rtol=0, atol=1e-5)
            spread = max_diff(points, points[:1])
            if t == 0:   # the mean-pose mesh with the mean camera: the same for every image
                assert spread == 0.0
            else:        # the previous estimate's mesh: it depends on the image
                assert spread > 1e-5


def test_pymaf_global_feedback_regresses_from_the_pooled_c5_feature(data):
    """feedback=global: three steps of one regressor on [mean-pooled c5, theta] (no feature pyramid at
    all), recomputed here layer by layer; the same function as the hmr model (the papers' Baseline)."""
    dm, batch, _ = data
    module = build("pymaf_t4_global", dm.eval_names)
    net = module.net
    assert net.deconv is None and len(net.point_features) == 0 and net.iuv_head is None
    out = run_eval(module, batch)
    with torch.no_grad():
        c5 = net.backbone.forward_features(module.normalize(batch["img"]))["c5"]
        pooled = c5.mean(dim=(2, 3))
        reg = net.regressors[0]
        theta = reg.mean_theta.expand(pooled.shape[0], -1)
        for estimate in out.iterations:
            hidden = reg.fc2(reg.fc1(torch.cat([pooled, theta], dim=-1)))    # eval: dropout is the identity
            theta = theta + torch.cat([reg.decpose(hidden), reg.decshape(hidden), reg.deccam(hidden)], dim=-1)
            torch.testing.assert_close(torch.cat([estimate.pose_6d, estimate.betas, estimate.cam], -1),
                                       theta, rtol=1e-5, atol=1e-6)
    # The hmr model with these weights computes the same estimates.
    hmr = build_from(["model=hmr"], dm.eval_names)
    state = {k.replace("net.regressors.0.", "net.regressor."): v for k, v in module.state_dict().items()}
    hmr.load_state_dict(state)
    hmr_out = run_eval(hmr, batch)
    for ours, theirs in zip(out.iterations, hmr_out.iterations):
        for key in ("pose_6d", "betas", "cam"):
            torch.testing.assert_close(getattr(ours, key), getattr(theirs, key), rtol=1e-5, atol=1e-6)


def test_pymaf_grid_feedback_reads_the_feature_pyramid(data):
    """Contrast with global feedback: with grid feedback the estimates change with the pyramid's weights
    (and the sampling points do not: they are the fixed grid)."""
    dm, batch, _ = data
    module = build("pymaf_t4_grid", dm.eval_names)
    out = run_eval(module, batch)
    with torch.no_grad():
        module.net.deconv.blocks[-1][0].weight.mul_(1.5)
    changed = run_eval(module, batch)
    assert max_diff(changed.iterations[-1].pose_6d, out.iterations[-1].pose_6d) > 1e-6
    assert all(torch.equal(a, b) for a, b in zip(changed.sampled_points, out.sampled_points))


@pytest.mark.parametrize("name", ["pymaf_t4_global", "pymaf_t4_grid", "pymaf_t4_mesh_aligned"])
def test_pymaf_non_pyramidal_rows_supervise_every_iteration(data, name):
    """One regressor, three estimates, each with its own parametric loss terms (summed)."""
    dm, batch, _ = data
    module = build(name, dm.eval_names)
    out = run_eval(module, batch)
    its = out.iterations
    assert max_diff(its[1].pose_6d, its[0].pose_6d) > 0 and max_diff(its[2].pose_6d, its[1].pose_6d) > 0
    with torch.no_grad():
        terms = module.criterion(batch, out, module.decoder)
        per_level = [module.criterion(batch, Prediction(iterations=[e]), module.decoder) for e in its]
    assert set(terms) == PARAMETRIC_TERMS
    for key in PARAMETRIC_TERMS:
        torch.testing.assert_close(terms[key], sum(level[key] for level in per_level), rtol=1e-5, atol=0)
    assert not torch.allclose(terms["keypoints_2d"], per_level[-1]["keypoints_2d"])
    # The weights are PyMAF's (configs/model/pymaf.yaml): 300 on the 2D keypoints of each level.
    with torch.no_grad():
        kp = [module.decoder.decode(e)["keypoints_2d"] for e in its]
    gt = batch["keypoints_2d"]
    conf = gt[..., 2:].clone()
    conf[:, :25] = 0.0   # openpose_weight 0
    independent = sum(torch.where(conf > 0, (k - gt[..., :2]) ** 2 * conf, 0.0).mean() for k in kp)
    torch.testing.assert_close(terms["keypoints_2d"], 300.0 * independent, rtol=1e-5, atol=0)


def independent_iuv_terms(module, batch, iuv: dict) -> dict:
    """PyMAF's auxiliary losses (its ``body_uv_losses``) recomputed on the samples with SMPL ground truth: cross
    entropies (means) of the part index and of the 15 coarse classes, and smooth-L1 of U and V at the true
    part's channel (channel 0, target 0, on background) summed over the pixels / the FULL batch size."""
    valid = batch["has_smpl"].bool()
    with torch.no_grad():
        gt_mesh = module.decoder.ground_truth_mesh(batch)
        gt = render_gt_iuv(module.body, gt_mesh["vertices"], gt_mesh["joints_3d"], batch["keypoints_2d"][:, 25:],
                           224, iuv["index"].shape[-1])[valid]
    index = gt[:, 0].round().long()
    out = {"iuv_index": F.cross_entropy(iuv["index"][valid], index),
           "iuv_coarse": F.cross_entropy(iuv["coarse"][valid], module.body.iuv_coarse_of_part[index])}
    if "u" in iuv:
        uv = 0.0
        for key, channel in (("u", 1), ("v", 2)):
            at_part = iuv[key][valid].gather(1, index[:, None])[:, 0]
            uv = uv + F.smooth_l1_loss(at_part, gt[:, channel] * (index > 0), reduction="sum", beta=1.0)
        out["iuv_uv"] = 0.5 * uv / valid.shape[0]
    assert bool((index > 0).any()) and bool((index == 0).any())   # the test sees both classes
    return out


@pytest.mark.parametrize("name", ["pymaf_t4_mesh_aligned_pyramid", "pymaf_t5_part_seg", "pymaf_t5_dense_corr",
                                  "pymaf_t5_part_seg_input", "pymaf_t5_dense_corr_input"])
def test_pymaf_aux_supervision(data, name):
    """aux none / part_seg / iuv: the head's outputs in training (none in validation) and the loss terms,
    recomputed independently."""
    dm, batch, _ = data
    keys, aux_terms = PYMAF_AUX[name]
    module = build(name, dm.eval_names).train()
    torch.manual_seed(0)
    out = module(batch)
    terms = module.criterion(batch, out, module.decoder)
    assert PARAMETRIC_TERMS | aux_terms <= set(terms)
    assert all(k.startswith("iuv_") for k in set(terms) - PARAMETRIC_TERMS)
    if keys is None:
        assert out.iuv is None and module.net.iuv_head is None and set(terms) == PARAMETRIC_TERMS
        assert not any(n.startswith("net.iuv_head") for n, _ in module.named_parameters())
    else:
        assert keys <= set(out.iuv) and ("u" in out.iuv) == ("u" in keys)
        for key, value in independent_iuv_terms(module, batch, out.iuv).items():
            torch.testing.assert_close(terms[key], value, rtol=1e-4, atol=1e-6)
    assert run_eval(module, batch).iuv is None


def test_pymaf_aux_supervision_trains_the_shared_56_map(data):
    """Same weights with and without the IUV head: identical parametric terms, but the auxiliary terms
    add gradient to the deconvolution pyramid that the regressors read."""
    dm, batch, _ = data
    with_aux = build("pymaf_t5_dense_corr", dm.eval_names).train()
    without = build("pymaf_t4_mesh_aligned_pyramid", dm.eval_names).train()
    missing, unexpected = without.load_state_dict(with_aux.state_dict(), strict=False)
    assert missing == [] and unexpected and all(k.startswith("net.iuv_head.") for k in unexpected)
    grads, terms = [], []
    for module in (with_aux, without):
        torch.manual_seed(0)   # the same dropout masks
        t = module.criterion(batch, module(batch), module.decoder)
        torch.stack(list(t.values())).sum().backward()
        grads.append(module.net.deconv.blocks[-1][0].weight.grad.clone())
        terms.append(t)
    for key in PARAMETRIC_TERMS:
        torch.testing.assert_close(terms[0][key], terms[1][key], rtol=1e-5, atol=0)
    assert max_diff(grads[0], grads[1]) > 1e-3 * float(grads[1].abs().max())
