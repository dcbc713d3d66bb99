"""HMR / IEF regressor and the HMR baseline network."""
from __future__ import annotations

import math

import pytest
import torch

from body.model import BodyModel
from body.rotations import rot6d_to_rotmat
from lightning_modules.nets.regressor import (
    THETA_DIM, HMRNet, IterativeRegressor, join_theta, mean_theta_from_body, split_theta, theta_to_estimate,
)
from lightning_modules.nets.resnet import ResNet50
from lightning_modules.prediction import Estimate


@pytest.fixture(scope="module")
def body_model():
    return BodyModel.from_config("open")


@pytest.fixture(scope="module")
def mean_theta(body_model):
    return mean_theta_from_body(body_model)


def _zero_output_layers(regressor: IterativeRegressor) -> None:
    with torch.no_grad():
        for layer in (regressor.decpose, regressor.decshape, regressor.deccam):
            layer.weight.zero_()
            layer.bias.zero_()


def test_theta_layout_round_trip():
    theta = torch.randn(4, THETA_DIM)
    pose, betas, cam = split_theta(theta)
    assert (pose.shape, betas.shape, cam.shape) == ((4, 144), (4, 10), (4, 3))
    assert torch.equal(join_theta(pose, betas, cam), theta)
    with pytest.raises(ValueError):
        split_theta(torch.zeros(4, 156))


def test_estimate_contract():
    theta = torch.randn(3, THETA_DIM)
    est = theta_to_estimate(theta)
    assert isinstance(est, Estimate) and torch.equal(est.pose_6d, theta[:, :144])
    assert est.pose_rotmat.shape == (3, 24, 3, 3)
    assert torch.allclose(est.pose_rotmat, rot6d_to_rotmat(theta[:, :144].reshape(3, 24, 6)))
    assert torch.equal(est.cam, theta[:, -3:]) and torch.equal(est.betas, theta[:, 144:154])


def test_mean_theta_is_the_body_models_mean_parameters(body_model, mean_theta):
    assert mean_theta.shape == (THETA_DIM,)
    assert torch.equal(mean_theta[:144], body_model.mean_pose.reshape(-1))
    assert torch.equal(mean_theta[144:154], body_model.mean_shape)
    assert torch.equal(mean_theta[154:], body_model.mean_cam)


def test_regressor_dimensions_and_output_init(mean_theta):
    reg = IterativeRegressor(100, 3, mean_theta)
    assert reg.fc1.in_features == 100 + 157 and reg.fc1.out_features == 1024
    assert reg.fc2.in_features == reg.fc2.out_features == 1024
    assert reg.decpose.out_features + reg.decshape.out_features + reg.deccam.out_features == 157
    assert reg.drop1.p == reg.drop2.p == 0.5
    for layer in (reg.decpose, reg.decshape, reg.deccam):  # Xavier-uniform bound with gain 0.01
        bound = 0.01 * math.sqrt(6.0 / (layer.in_features + layer.out_features))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.5 * bound


def test_zero_residual_returns_mean_parameters(mean_theta):
    reg = IterativeRegressor(32, 3, mean_theta).train()
    _zero_output_layers(reg)
    out = reg(torch.randn(5, 32))
    assert len(out) == 3
    for theta in out:
        assert torch.equal(theta, mean_theta.expand(5, -1))


def test_ief_iterates_one_regressor_on_the_same_features(mean_theta):
    torch.manual_seed(0)
    reg = IterativeRegressor(16, 3, mean_theta).eval()
    feats = torch.randn(2, 16)
    out = reg(feats)
    theta = mean_theta.expand(2, -1)
    for k in range(3):
        theta = theta + reg.residual(feats, theta)
        assert torch.allclose(out[k], theta, atol=1e-6)
    assert not torch.allclose(out[0], out[1])
    # HMR / SPIN keep the gradient through the iterations.
    assert torch.autograd.grad(out[2].sum(), out[0], retain_graph=True)[0] is not None


def test_no_nonlinearity_between_the_fully_connected_layers(mean_theta):
    """As in SPIN / PyMAF code: in eval mode the residual is affine in its input."""
    torch.manual_seed(0)
    reg = IterativeRegressor(8, 1, mean_theta).eval()
    f1, f2, theta = torch.randn(1, 8), torch.randn(1, 8), mean_theta[None]
    mix = reg.residual(0.3 * f1 + 0.7 * f2, theta)
    assert torch.allclose(mix, 0.3 * reg.residual(f1, theta) + 0.7 * reg.residual(f2, theta), atol=1e-6)


def test_dropout_only_in_training(mean_theta):
    torch.manual_seed(0)
    reg = IterativeRegressor(8, 1, mean_theta)
    f = torch.randn(2, 8)
    reg.train()
    assert not torch.equal(reg(f)[0], reg(f)[0])
    reg.eval()
    assert torch.equal(reg(f)[0], reg(f)[0])


def test_regressor_rejects_bad_inputs(mean_theta):
    with pytest.raises(ValueError):
        IterativeRegressor(8, 1, mean_theta[:-1])
    with pytest.raises(ValueError):
        IterativeRegressor(8, 0, mean_theta)
    with pytest.raises(ValueError):
        IterativeRegressor(8, 1, mean_theta)(torch.zeros(2, 9))


def test_hmr_net_contract_and_global_feature(body_model):
    torch.manual_seed(0)
    net = HMRNet(ResNet50(width=8), body_model, n_iter=3).train()
    assert net.regressor.fc1.in_features == net.backbone.feature_dim + 157
    image = torch.randn(2, 3, 224, 224)
    out = net(image)
    assert len(out.iterations) == 3
    for est in out.iterations:
        assert est.pose_6d.shape == (2, 144) and est.pose_rotmat.shape == (2, 24, 3, 3)
        assert est.betas.shape == (2, 10) and est.cam.shape == (2, 3)
    assert torch.equal(out.initial.pose_6d, body_model.mean_pose.expand(2, -1))
    loss = sum(e.pose_6d.square().sum() + e.cam.sum() for e in out.iterations)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    # The regressor reads the 2048-d (here 32 w) average-pooled c5 feature, the same at every iteration.
    net.eval()
    with torch.no_grad():
        out = net(image)
        thetas = net.regressor(net.backbone.pooled(image))
    assert torch.allclose(torch.cat([out.iterations[-1].pose_6d, out.iterations[-1].betas,
                                     out.iterations[-1].cam], -1), thetas[-1])


def test_hmr_full_width_dimensions(body_model):
    net = HMRNet(ResNet50(), body_model)
    assert net.regressor.fc1.in_features == 2048 + 157
    _zero_output_layers(net.regressor)
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 3, 224, 224))
    for est in out.iterations:
        assert torch.equal(est.pose_6d, body_model.mean_pose[None])
        assert torch.equal(est.cam, body_model.mean_cam[None])
