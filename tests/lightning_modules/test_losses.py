"""Losses: hand-computed values, SPIN's reductions (against an indexing reference), masking
invariance (values and gradients), graph-connected zeros, the OpenPose weight, pelvis alignment and
BiGraph's capped focal regression loss."""
from __future__ import annotations

import math

import pytest
import torch

from body.rotations import axis_angle_to_rotmat
from lightning_modules.losses import (
    FOCAL_DEFAULT_CAP,
    camera_scale_loss,
    focal_regression_loss,
    focal_regression_term,
    point_distance_loss,
    joints_3d_loss,
    keypoint_2d_loss,
    masked_mean,
    smpl_betas_loss,
    smpl_pose_loss,
    vertex_loss,
    zero_invalid,
)

G = torch.Generator().manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def conf_like(b, k):
    return (torch.rand(b, k, 1, generator=G, dtype=torch.float64) > 0.3).double()


# ------------------------------------------------------------------ hand-computed values
def test_keypoint_2d_loss_by_hand():
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 2.0, 0.5], [3.0, 3.0, 0.0]]])
    # mse: 1 * (1 + 0) + 0.5 * (0 + 4) + 0 = 3 over 1 * 3 * 2 elements (zero confidence included).
    assert keypoint_2d_loss(pred, target).item() == pytest.approx(3 / 6)
    # l1: 1 * 1 + 0.5 * 2 = 2 over 6.
    assert keypoint_2d_loss(pred, target, criterion="l1").item() == pytest.approx(2 / 6)
    # K != 49: every keypoint is a ground-truth keypoint; openpose_weight is ignored.
    assert keypoint_2d_loss(pred, target, openpose_weight=0.0, gt_weight=2.0).item() == pytest.approx(1.0)
    assert keypoint_2d_loss(pred, target, openpose_weight=7.0).item() == pytest.approx(0.5)


def test_keypoint_2d_loss_matches_spin_formula():
    b, k = 3, 49
    pred, target = randn(b, k, 2), torch.cat([randn(b, k, 2), conf_like(b, k)], -1)
    conf = target[..., -1:].clone()
    conf[:, :25] *= 0.3
    conf[:, 25:] *= 2.0
    spin = (conf * (pred - target[..., :2]) ** 2).mean()
    torch.testing.assert_close(keypoint_2d_loss(pred, target, 0.3, 2.0), spin)


def test_openpose_weight_zero_ignores_the_first_25_keypoints():
    b = 2
    pred, target = randn(b, 49, 2), torch.cat([randn(b, 49, 2), torch.ones(b, 49, 1, dtype=torch.float64)], -1)
    base = keypoint_2d_loss(pred, target, openpose_weight=0.0)
    moved = pred.clone()
    moved[:, :25] += 10.0 * randn(b, 25, 2)
    assert torch.equal(keypoint_2d_loss(moved, target, openpose_weight=0.0), base)
    p = moved.clone().requires_grad_()
    keypoint_2d_loss(p, target, openpose_weight=0.0).backward()
    assert (p.grad[:, :25] == 0).all() and (p.grad[:, 25:] != 0).any()
    # With a non-zero OpenPose weight they count.
    assert keypoint_2d_loss(moved, target, openpose_weight=1.0) != keypoint_2d_loss(pred, target, openpose_weight=1.0)


def test_missing_keypoints_with_non_finite_coordinates_do_not_leak():
    pred = torch.zeros(1, 2, 2, requires_grad=True)
    target = torch.tensor([[[1.0, 1.0, 1.0], [float("nan"), float("inf"), 0.0]]])
    loss = keypoint_2d_loss(pred, target)
    assert loss.item() == pytest.approx(2 / 4)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[0, 1] == 0).all()


def _skeleton():
    """4 joints, hips at 2 and 3, pelvis at the origin."""
    return torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_joints_3d_loss_by_hand():
    gt = _skeleton()
    pred = gt + torch.tensor([5.0, -3.0, 2.0])     # translated: removed by the pelvis alignment
    pred[1, 1] += 2.0                               # one joint off by 2 along y
    target = torch.cat([gt, torch.ones(4, 1)], -1)[None]
    valid = torch.tensor([True])
    # 12 elements, one error of 2: mse 4 / 12, l1 2 / 12.
    assert joints_3d_loss(pred[None], target, valid).item() == pytest.approx(4 / 12)
    assert joints_3d_loss(pred[None], target, valid, criterion="l1").item() == pytest.approx(2 / 12)
    target[0, 1, 3] = 0.25                          # confidence weights the joint, the mean stays over 12
    assert joints_3d_loss(pred[None], target, valid).item() == pytest.approx(1 / 12)
    # Without alignment the translation counts.
    target[0, 1, 3] = 1.0
    unaligned = ((pred - gt) ** 2).mean().item()
    assert joints_3d_loss(pred[None], target, valid, pelvis=None).item() == pytest.approx(unaligned)


def test_joints_3d_loss_is_translation_invariant_and_matches_spin():
    b, j = 5, 24
    pred, target = randn(b, j, 3), torch.cat([randn(b, j, 3), conf_like(b, j)], -1)
    has = torch.tensor([1, 0, 1, 1, 0])
    base = joints_3d_loss(pred, target, has)
    shifted_pred = pred + randn(b, 1, 3)
    shifted_target = target.clone()
    shifted_target[..., :3] += randn(b, 1, 3)
    torch.testing.assert_close(joints_3d_loss(shifted_pred, shifted_target, has), base)
    # SPIN's keypoint_3d_loss: select, centre on the hip mid-point, confidence-weighted MSE mean.
    sel = has == 1
    p, t, c = pred[sel], target[sel, :, :3], target[sel, :, 3:]
    p = p - (p[:, 2] + p[:, 3])[:, None] / 2
    t = t - (t[:, 2] + t[:, 3])[:, None] / 2
    torch.testing.assert_close(base, (c * (p - t) ** 2).mean())


def test_smpl_pose_loss_by_hand():
    b = 2
    gt_pose = torch.zeros(b, 72)
    eye = torch.eye(3).expand(b, 24, 3, 3)
    has = torch.ones(b, dtype=torch.bool)
    assert smpl_pose_loss(eye, gt_pose, has).item() == 0.0
    # Identical non-trivial rotations: zero too.
    pose = 0.4 * randn(b, 72).float()
    assert smpl_pose_loss(axis_angle_to_rotmat(pose.view(b, 24, 3)), pose, has).item() == pytest.approx(0.0, abs=1e-12)
    # One joint rotated by theta about z, prediction identity: ||I - R||_F^2 = 4 (1 - cos theta)
    # (R_z(90 deg) - I has entries +-1 at four places), over 24 * 9 entries, and only sample 0.
    theta = math.pi / 2
    gt_pose = torch.zeros(b, 72)
    gt_pose[0, 3 * 5 + 2] = theta
    assert smpl_pose_loss(eye, gt_pose, has).item() == pytest.approx(4 * (1 - math.cos(theta)) / (b * 216))
    assert smpl_pose_loss(eye, gt_pose, torch.tensor([True, False])).item() == pytest.approx(4 / 216)
    assert smpl_pose_loss(eye, gt_pose.view(b, 24, 3), torch.tensor([True, False])).item() == pytest.approx(4 / 216)


def test_smpl_betas_loss_by_hand():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0], [5.0, 5.0]])
    gt = torch.tensor([[0.0, 0.0], [3.0, 3.0], [5.0, 4.0]])
    has = torch.tensor([1, 0, 1])
    # (1 + 4) + (0 + 1) over 2 valid samples * 2 coefficients.
    assert smpl_betas_loss(pred, gt, has).item() == pytest.approx(6 / 4)


def test_camera_scale_loss_by_hand():
    cam = torch.tensor([[0.0, 1.0, 2.0], [0.1, -1.0, 0.0]])
    assert camera_scale_loss(cam).item() == pytest.approx((1.0 + math.exp(-2.0)) / 2)
    s = torch.tensor([[0.05, 0.0, 0.0]], requires_grad=True)
    camera_scale_loss(s).backward()
    assert s.grad[0, 0] < 0 and s.grad[0, 1:].abs().sum() == 0   # pushes the scale up


def test_vertex_loss_by_hand_and_criteria():
    pred = torch.zeros(2, 2, 3)
    target = torch.tensor([[[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]], [[9.0, 9.0, 9.0], [9.0, 9.0, 9.0]]])
    valid = torch.tensor([True, False])
    assert vertex_loss(pred, target, valid).item() == pytest.approx(6 / 6)
    assert vertex_loss(pred, target, valid, criterion="mse").item() == pytest.approx(14 / 6)
    with pytest.raises(ValueError, match="criterion"):
        vertex_loss(pred, target, valid, criterion="huber")


def test_masked_mean_by_hand():
    values = torch.tensor([[1.0, 2.0], [100.0, 100.0], [3.0, 6.0]])
    assert masked_mean(values, torch.tensor([1, 0, 1])).item() == pytest.approx(12 / 4)
    assert masked_mean(torch.tensor([2.0, 4.0]), torch.tensor([True, True])).item() == 3.0
    # Its own input's masked entries may be non-finite: value and their gradient stay clean.
    v = torch.tensor([[1.0, 3.0], [float("nan"), float("inf")]], requires_grad=True)
    m = masked_mean(v, torch.tensor([True, False]))
    m.backward()
    assert m.item() == 2.0 and torch.equal(v.grad, torch.tensor([[0.5, 0.5], [0.0, 0.0]]))


def test_zero_invalid_per_sample_and_per_entry():
    x = torch.arange(12.0).view(2, 3, 2)
    assert torch.equal(zero_invalid(x, torch.tensor([False, True]))[0], torch.zeros(3, 2))
    per_entry = zero_invalid(x, torch.tensor([[True, False, True], [False, False, True]]))
    assert per_entry[0, 1].abs().sum() == 0 and per_entry[1, :2].abs().sum() == 0
    assert torch.equal(per_entry[1, 2], x[1, 2])


# ------------------------------------------------------------------ focal regression loss
def test_focal_regression_loss_by_hand():
    pred = torch.zeros(1, 2, 3, dtype=torch.float64)
    # Point A: L = |(0.3, 0, 0)| = 0.3; point B: L = |(0.4, -0.4, 0.2)| = 0.6.
    target = torch.tensor([[[0.3, 0.0, 0.0], [0.4, -0.4, 0.2]]], dtype=torch.float64)
    valid = torch.tensor([True])
    a, b = -0.3 * math.log(0.7), -0.6 * math.log(0.4)
    assert focal_regression_loss(pred, target, valid).item() == pytest.approx((a + b) / 2, rel=1e-12)
    # gamma = 2, alpha = 2: x = 0.6 and 1.2 (capped at tau in the log only).
    a2 = -(0.6 ** 2) * math.log(0.4)
    b2 = -(1.2 ** 2) * math.log(1 - FOCAL_DEFAULT_CAP)
    got = focal_regression_loss(pred, target, valid, alpha=2.0, gamma=2.0)
    assert got.item() == pytest.approx((a2 + b2) / 2, rel=1e-12)
    # Without the focal term ("w/o FL"): the mean distance itself.
    assert point_distance_loss(pred, target, valid).item() == pytest.approx(0.45, rel=1e-12)


def test_focal_term_changes_the_shape_not_the_scale_of_the_joint_loss():
    """At errors of a few centimetres the focal term is about L^2 (a squared error), the plain distance L:
    their gradients differ by the factor 2L, which is what Table 5's "w/o FL" row compares."""
    pred = torch.zeros(1, 1, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[0.03, 0.04, 0.0]]], dtype=torch.float64)        # L = 0.05 m
    valid = torch.tensor([True])
    (g_focal,) = torch.autograd.grad(focal_regression_loss(pred, target, valid), pred)
    (g_plain,) = torch.autograd.grad(point_distance_loss(pred, target, valid), pred)
    ratio = g_focal.norm() / g_plain.norm()
    x = 0.05
    want = -math.log(1 - x) + x / (1 - x)        # d/dx [-x log(1 - x)]
    assert ratio.item() == pytest.approx(want, rel=1e-9)


def test_focal_term_values_and_the_cap():
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 0.95, 1.0, 2.0], dtype=torch.float64)
    got = focal_regression_term(x, cap=0.9)
    log_cap = math.log(0.1)
    want = [0.0, -0.1 * math.log(0.9), -0.5 * math.log(0.5), -0.9 * log_cap, -0.95 * log_cap, -log_cap, -2 * log_cap]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-300)
    # Finite as alpha L -> 1 and beyond; without the cap the term diverges there.
    assert torch.isfinite(got).all()
    assert torch.isinf(-x[5] * torch.log1p(-x[5]))
    # Small errors: -x log(1 - x) ~ x^2 (a squared error).
    small = torch.tensor([1e-3], dtype=torch.float64)
    assert focal_regression_term(small).item() == pytest.approx(1e-6, rel=1e-3)


def test_focal_term_value_is_continuous_and_slope_jumps_at_the_cap():
    tau, eps = 0.9, 1e-7
    x = torch.tensor([tau - eps, tau + eps], dtype=torch.float64, requires_grad=True)
    y = focal_regression_term(x, cap=tau)
    assert abs(y[0].item() - y[1].item()) < 1e-5            # C0
    y.sum().backward()
    below = -math.log(1 - tau) + tau / (1 - tau)            # 2.303 + 9 = 11.30
    above = -math.log(1 - tau)                              # 2.303
    assert x.grad[0].item() == pytest.approx(below, rel=1e-5)
    assert x.grad[1].item() == pytest.approx(above, rel=1e-5)


def test_focal_loss_gradients_are_finite_at_zero_error():
    for gamma in (0.5, 1.0, 2.0):
        pred = torch.zeros(1, 2, 3, requires_grad=True)
        target = torch.zeros(1, 2, 3)
        target[0, 1] = 0.2
        loss = focal_regression_loss(pred, target, torch.tensor([True]), gamma=gamma)
        loss.backward()
        assert torch.isfinite(pred.grad).all(), gamma
        assert (pred.grad[0, 0] == 0).all() and (pred.grad[0, 1] != 0).all(), gamma


def test_focal_term_rejects_bad_parameters():
    x = torch.zeros(1)
    for kwargs in ({"cap": 1.0}, {"cap": 0.0}, {"gamma": 0.0}, {"alpha": -1.0}):
        with pytest.raises(ValueError):
            focal_regression_term(x, **kwargs)


# ------------------------------------------------------------------ masking (all masked losses)
def _cases():
    """name -> (loss(pred, target, valid), pred shape, target maker)."""
    def kp3d_target(b):
        return torch.cat([randn(b, 6, 3), conf_like(b, 6)], -1)
    return {
        "joints_3d_mse": (lambda p, t, v: joints_3d_loss(p, t, v), (4, 6, 3), kp3d_target),
        "joints_3d_l1": (lambda p, t, v: joints_3d_loss(p, t, v, criterion="l1"), (4, 6, 3), kp3d_target),
        "pose": (lambda p, t, v: smpl_pose_loss(p, t, v), (4, 24, 3, 3), lambda b: randn(b, 72)),
        "betas": (lambda p, t, v: smpl_betas_loss(p, t, v), (4, 10), lambda b: randn(b, 10)),
        "vertex_l1": (lambda p, t, v: vertex_loss(p, t, v), (4, 7, 3), lambda b: randn(b, 7, 3)),
        "vertex_mse": (lambda p, t, v: vertex_loss(p, t, v, criterion="mse"), (4, 7, 3), lambda b: randn(b, 7, 3)),
        "focal": (lambda p, t, v: focal_regression_loss(p, t, v), (4, 7, 3), lambda b: 0.3 * randn(b, 7, 3)),
        "point_distance": (lambda p, t, v: point_distance_loss(p, t, v), (4, 7, 3), lambda b: 0.3 * randn(b, 7, 3)),
        # masked_mean on inputs zeroed first, the way the losses use it.
        "masked_mean": (lambda p, t, v: masked_mean((zero_invalid(p, v.bool()) - zero_invalid(t, v.bool())).square(), v),
                        (4, 5), lambda b: randn(b, 5)),
    }


CASES = _cases()


def _run(fn, pred, target, valid):
    p = pred.clone().requires_grad_()
    loss = fn(p, target, valid)
    loss.backward()
    return loss.detach(), p.grad


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_samples_change_nothing(name):
    fn, shape, make_target = CASES[name]
    valid = torch.tensor([True, False, True, False])
    pred, target = randn(*shape), make_target(shape[0])
    loss, grad = _run(fn, pred, target, valid)
    assert loss > 0 and (grad[valid] != 0).any()
    assert (grad[~valid] == 0).all()
    # Garbage (large values, NaN, inf) in the invalid samples: same value and gradients, bit for bit.
    pred2, target2 = pred.clone(), target.clone()
    pred2[1] = 1e6 * randn(*shape[1:])
    pred2[3] = float("nan")
    target2[1] = float("inf")
    target2[3] = -1e9
    loss2, grad2 = _run(fn, pred2, target2, valid)
    assert torch.equal(loss2, loss)
    assert torch.equal(grad2, grad)
    # Valid flags as 0/1 integers behave the same.
    assert torch.equal(_run(fn, pred, target, valid.long())[0], loss)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_valid_sample_gives_a_graph_connected_zero(name):
    fn, shape, make_target = CASES[name]
    pred = randn(*shape)
    pred[0] = float("nan")                       # even non-finite placeholders do not leak in
    p = pred.clone().requires_grad_()
    loss = fn(p, make_target(shape[0]), torch.zeros(shape[0], dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad and loss.dim() == 0
    loss.backward()
    assert p.grad is not None and (p.grad == 0).all()


def test_masked_losses_match_spin_indexing():
    """Dropping invalid samples equals SPIN's ``criterion(x[has == 1], y[has == 1])``."""
    valid = torch.tensor([False, True, True, False, True])
    pred, target = randn(5, 9, 3), randn(5, 9, 3)
    torch.testing.assert_close(vertex_loss(pred, target, valid), (pred[valid] - target[valid]).abs().mean())
    pb, tb = randn(5, 10), randn(5, 10)
    torch.testing.assert_close(smpl_betas_loss(pb, tb, valid), ((pb[valid] - tb[valid]) ** 2).mean())
    rot, pose = axis_angle_to_rotmat(randn(5, 24, 3)), randn(5, 72)
    gt_rot = axis_angle_to_rotmat(pose.view(5, 24, 3))
    torch.testing.assert_close(smpl_pose_loss(rot, pose, valid), ((rot[valid] - gt_rot[valid]) ** 2).mean())


def test_shape_errors():
    with pytest.raises(ValueError):
        keypoint_2d_loss(torch.zeros(2, 49, 2), torch.zeros(2, 49, 2))
    with pytest.raises(ValueError):
        joints_3d_loss(torch.zeros(2, 24, 3), torch.zeros(2, 24, 4), torch.ones(3))
    with pytest.raises(ValueError):
        smpl_pose_loss(torch.zeros(2, 24, 3, 3), torch.zeros(2, 69), torch.ones(2))
    with pytest.raises(ValueError):
        camera_scale_loss(torch.zeros(2, 2))


# ------------------------------------------------------------------ per-point masks
def test_per_point_masks_by_hand():
    pred = torch.zeros(2, 2, 3, dtype=torch.float64)
    target = torch.tensor([[[0.3, 0.0, 0.0], [0.4, -0.4, 0.2]], [[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]],
                          dtype=torch.float64)
    valid = torch.tensor([[True, True], [True, False]])
    a, b = -0.3 * math.log(0.7), -0.6 * math.log(0.4)
    # Mean over the 3 valid points (the zero-error one included).
    assert focal_regression_loss(pred, target, valid).item() == pytest.approx((a + b + 0.0) / 3, rel=1e-12)
    assert point_distance_loss(pred, target, valid).item() == pytest.approx((0.3 + 0.6 + 0.0) / 3, rel=1e-12)
    assert vertex_loss(pred, target, valid).item() == pytest.approx((0.3 + 1.0 + 0.0) / 9, rel=1e-12)
    assert masked_mean(torch.tensor([[1.0, 3.0], [5.0, 100.0]]), valid).item() == pytest.approx(3.0)


@pytest.mark.parametrize("fn", [focal_regression_loss, vertex_loss])
def test_per_point_masks_drop_invalid_points(fn):
    valid = torch.tensor([[True, False, True], [False, False, False], [True, True, False]])
    pred, target = 0.3 * randn(3, 3, 3), 0.3 * randn(3, 3, 3)
    loss, grad = _run(fn, pred, target, valid)
    assert (grad[~valid] == 0).all() and (grad[valid] != 0).all()
    pred2, target2 = pred.clone(), target.clone()
    pred2[~valid] = float("nan")
    target2[~valid] = float("inf")
    loss2, grad2 = _run(fn, pred2, target2, valid)
    assert torch.equal(loss2, loss) and torch.equal(grad2, grad)
    zero, g0 = _run(fn, pred2, target2, torch.zeros(3, 3, dtype=torch.bool))
    assert zero.item() == 0.0 and (g0 == 0).all()
    with pytest.raises(ValueError, match="valid flag"):
        fn(pred, target, torch.ones(3, 2, dtype=torch.bool))
