"""PyMAF's network: pyramid sizes, sampling points, regressor dimensions, detached levels and ablation switches."""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from body.camera import project_to_normalized_crop
from body.model import BodyModel
from lightning_modules.nets.mesh_aligned import grid_points, sample_points
from lightning_modules.nets.pymaf_net import Deconvolution, PyMAFNet
from lightning_modules.nets.resnet import ResNet50

SMALL = {"deconv_channels": 16}


@pytest.fixture(scope="module")
def body_model():
    return BodyModel.from_config("open")


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def small_net(body_model, **kwargs) -> PyMAFNet:
    torch.manual_seed(0)
    return PyMAFNet(ResNet50(width=8), body_model, **{**SMALL, **kwargs})


def independent_mesh_points(body_model, estimate) -> torch.Tensor:
    """Body-model forward of an estimate, two hierarchy down-samplings, weak-perspective projection."""
    rot = estimate.pose_rotmat
    vertices = body_model(estimate.betas, rot[:, 1:], rot[:, :1]).vertices
    return project_to_normalized_crop(body_model.mesh_hierarchy.downsample(vertices, 0, 2), estimate.cam)


@contextlib.contextmanager
def capture_inputs(modules):
    """Record each module's first input per call while inside the block: yields {index: [inputs]}."""
    seen = {i: [] for i in range(len(modules))}
    handles = [m.register_forward_pre_hook(lambda mod, args, i=i: seen[i].append(args[0].detach()))
               for i, m in enumerate(modules)]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def full_loss(out) -> torch.Tensor:
    loss = sum(e.pose_6d.square().sum() + e.betas.square().sum() + e.cam.sum() for e in out.iterations)
    if out.iuv is not None:
        loss = loss + sum(v.square().mean() for v in out.iuv.values())
    return loss


# ----------------------------------------------------------------------------------------------------------
def test_full_width_pyramid_is_14_28_56_with_256_channels(body_model):
    net = PyMAFNet(ResNet50(), body_model).eval()
    with torch.no_grad():
        maps = net.pyramid_maps(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [(1, 256, 14, 14), (1, 256, 28, 28), (1, 256, 56, 56)]
    for block in net.deconv.blocks:
        deconv = block[0]
        assert (deconv.kernel_size, deconv.stride, deconv.padding, deconv.bias) == ((4, 4), (2, 2), (1, 1), None)
    assert [r.fc1.in_features for r in net.regressors] == [5 * 441 + 157, 5 * 431 + 157, 5 * 431 + 157]
    assert net.point_features[0].mlp.layers[0].in_features == 256


@pytest.mark.parametrize("batch,bias,gemm", [(1, False, True), (1, True, True), (4, False, False)])
def test_deconvolution_equals_conv_transpose_on_either_path(monkeypatch, batch, bias, gemm):
    """``Deconvolution`` (GEMM + fold while its weight is >= 32x its input, else ``conv_transpose2d``) gives
    ConvTranspose2d's values and gradients, loads its state dict, and takes the path the rule says."""
    gen = torch.Generator().manual_seed(3)
    reference = torch.nn.ConvTranspose2d(64, 8, kernel_size=4, stride=2, padding=1, bias=bias).double()
    deconv = Deconvolution(64, 8, kernel_size=4, stride=2, padding=1, bias=bias).double()
    deconv.load_state_dict(reference.state_dict())                 # same names: old checkpoints load
    x = torch.randn(batch, 64, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)  # weight 8,192
    folds = []
    real_fold = torch.nn.functional.fold
    monkeypatch.setattr(torch.nn.functional, "fold", lambda *a, **k: folds.append(1) or real_fold(*a, **k))
    got = deconv(x)
    assert bool(folds) == gemm
    ref = reference(x)
    torch.testing.assert_close(got, ref)
    grad_out = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    params = [x] + list(deconv.parameters())
    ref_params = [x] + list(reference.parameters())
    for g, r in zip(torch.autograd.grad((got * grad_out).sum(), params),
                    torch.autograd.grad((ref * grad_out).sum(), ref_params)):
        torch.testing.assert_close(g, r)


def test_regressor_input_is_5_per_point_plus_157_and_output_157(body_model):
    net = small_net(body_model)
    assert [r.fc1.in_features for r in net.regressors] == [5 * 441 + 157, 5 * 431 + 157, 5 * 431 + 157]
    for r in net.regressors:
        assert r.decpose.out_features + r.decshape.out_features + r.deccam.out_features == 157


@pytest.mark.parametrize("mesh_forward", ["full", "downsampled"])
def test_sampling_points_grid_then_projected_current_mesh(body_model, image, mesh_forward):
    net = small_net(body_model, mesh_forward=mesh_forward).eval()
    with capture_inputs([r.fc1 for r in net.regressors]) as seen, torch.no_grad():
        out = net(image)
        maps = net.pyramid_maps(image)
    pts = out.sampled_points
    assert pts[0].shape == (2, 441, 2) and torch.equal(pts[0], grid_points().expand(2, -1, -1))
    for k in (1, 2):
        ref = independent_mesh_points(body_model, out.iterations[k - 1])
        assert pts[k].shape == (2, 431, 2)
        if mesh_forward == "full":
            torch.testing.assert_close(pts[k], ref, rtol=0, atol=0)
        else:  # skinning the 431 vertices directly: float rounding only
            torch.testing.assert_close(pts[k], ref, rtol=0, atol=1e-5)
    # The regressor of level k reads PointFeatures_k(map k, points k) followed by the previous estimate.
    for k in range(3):
        with torch.no_grad():
            feats = net.point_features[k](maps[k], pts[k])
        x = seen[k][0]
        assert x.shape[-1] == feats.shape[-1] + 157
        torch.testing.assert_close(x[:, :-157], feats)
        prev = out.initial if k == 0 else out.iterations[k - 1]
        torch.testing.assert_close(x[:, -157:], torch.cat([prev.pose_6d, prev.betas, prev.cam], -1))
    assert [m.shape[-1] for m in maps] == [14, 28, 56]


@pytest.mark.parametrize("pyramid", [True, False])
def test_each_level_reads_a_detached_estimate(body_model, image, pyramid):
    net = small_net(body_model, pyramid=pyramid).train()
    out = net(image)
    for k in (1, 2):
        est = out.iterations[k]
        loss = est.pose_6d.square().sum() + est.cam.sum() + est.betas.sum()
        prev = out.iterations[k - 1]
        grads = torch.autograd.grad(loss, [prev.pose_6d, prev.betas, prev.cam], retain_graph=True,
                                    allow_unused=True)
        assert all(g is None for g in grads)
        if not pyramid:  # one shared regressor: only the estimate path can be checked
            continue
        params = [p for j in range(k) for p in (*net.regressors[j].parameters(), *net.point_features[j].parameters())]
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        assert all(g is None for g in grads)
        own = torch.autograd.grad(loss, list(net.regressors[k].parameters()), retain_graph=True, allow_unused=True)
        assert all(g is not None for g in own)


def test_zero_residuals_return_the_mean_parameters(body_model, image):
    net = small_net(body_model).eval()
    with torch.no_grad():
        for r in net.regressors:
            for layer in (r.decpose, r.decshape, r.deccam):
                layer.weight.zero_()
                layer.bias.zero_()
        out = net(image)
    for est in out.iterations:
        assert torch.equal(est.pose_6d, body_model.mean_pose.expand(2, -1))
        assert torch.equal(est.betas, body_model.mean_shape.expand(2, -1))
        assert torch.equal(est.cam, body_model.mean_cam.expand(2, -1))


def test_mesh_forward_modes_and_state(body_model):
    fast, full = small_net(body_model), small_net(body_model, mesh_forward="full")
    assert fast.body_model is None and fast.mesh_body.num_vertices == 431
    assert not any(k.startswith(("mesh_body.", "body_model.")) for k in fast.state_dict())
    assert full.mesh_body is None and full.body_model is body_model
    theta = fast.regressors[0].initial_theta(3) + 0.05 * torch.randn(3, 157)
    with torch.no_grad():
        torch.testing.assert_close(fast.mesh_points(theta), full.mesh_points(theta), rtol=0, atol=1e-5)


def test_float64_downsampled_mesh_forward_equals_the_full_forward(body_model, image):
    """In float64, feedback through the directly skinned 431 vertices (``mesh_forward="downsampled"``) equals the
    full body-model forward + down-sampling (``"full"``) to 1e-12 at every level: rotations, betas, camera, sampled
    points and the full mesh of each estimate. The fast net is built in float32 and converted with ``.double()``."""
    body64 = copy.deepcopy(body_model).double()
    fast = small_net(body_model).double().eval()
    full = small_net(body64, mesh_forward="full").double().eval()
    assert fast.mesh_body is not None and full.mesh_body is None and full.body_model is body64
    reference = full.state_dict()                              # same seed: same weights (full also holds the body)
    assert all(torch.equal(v, reference[k]) for k, v in fast.state_dict().items())
    with torch.no_grad():
        a, b = fast(image.double()), full(image.double())
        diffs = {}
        for t, (ea, eb) in enumerate(zip(a.iterations, b.iterations)):
            for key in ("pose_rotmat", "pose_6d", "betas", "cam"):
                assert getattr(ea, key).dtype == torch.float64
                diffs[f"{t}.{key}"] = (getattr(ea, key) - getattr(eb, key)).abs().max().item()
            va, vb = (body64(e.betas, e.pose_rotmat[:, 1:], e.pose_rotmat[:, :1]).vertices for e in (ea, eb))
            diffs[f"{t}.vertices"] = (va - vb).abs().max().item()
            if t > 0:
                diffs[f"{t}.points"] = (a.sampled_points[t] - b.sampled_points[t]).abs().max().item()
    print(f"float64 PyMAF, downsampled vs full mesh forward: max difference {max(diffs.values()):.3g}")
    assert max(diffs.values()) < 1e-12, diffs


# ----------------------------------------------------------------------------------------------------------
# Ablation switches: each builds, runs forward + backward with every parameter used, and does what it says.
ABLATIONS = [
    {},
    {"feedback": "grid"},
    {"feedback": "global"},
    {"feedback": "global", "aux": "none"},
    {"feedback": "global", "pyramid": False},
    {"pyramid": False},
    {"feedback": "grid", "pyramid": False},
    {"aux": "none"},
    {"aux": "part_seg"},
    {"init_features": "mesh"},
    {"n_levels": 1},
    {"n_levels": 2},
    {"pyramid": False, "n_levels": 4},
    {"aux": "part_seg", "regressor_input": "part_seg"},
    {"regressor_input": "dense_corr"},
    {"aux": "part_seg", "regressor_input": "masked_features"},
    {"feedback": "grid", "pyramid": False, "regressor_input": "masked_features"},
]


@pytest.mark.parametrize("switches", ABLATIONS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "pymaf")
def test_ablation_builds_runs_and_trains_every_parameter(body_model, image, switches):
    net = small_net(body_model, **switches).train()
    out = net(image)
    n = switches.get("n_levels", 3)
    assert len(out.iterations) == len(out.sampled_points) == n
    full_loss(out).backward()
    unused = [name for name, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    net.eval()
    with torch.no_grad():
        assert net(image).iuv is None


def test_feedback_global_reads_the_pooled_feature(body_model, image):
    net = small_net(body_model, feedback="global", aux="none").eval()
    assert net.deconv is None and len(net.point_features) == 0
    assert [r.fc1.in_features for r in net.regressors] == [net.backbone.feature_dim + 157] * 3
    with capture_inputs([r.fc1 for r in net.regressors]) as seen, torch.no_grad():
        out = net(image)
        pooled = net.backbone.pooled(image)
    assert out.sampled_points == [None] * 3
    for k in range(3):
        torch.testing.assert_close(seen[k][0][:, :-157], pooled)
    # Without the pyramid, one regressor is iterated (Table 4's first rows).
    single = small_net(body_model, feedback="global", pyramid=False)
    assert len(single.regressors) == 1


def test_feedback_grid_samples_the_grid_at_every_level(body_model, image):
    net = small_net(body_model, feedback="grid").eval()
    with torch.no_grad():
        out = net(image)
    assert all(torch.equal(p, grid_points().expand(2, -1, -1)) for p in out.sampled_points)
    assert [r.fc1.in_features for r in net.regressors] == [5 * 441 + 157] * 3
    assert net.body_model is None and net.mesh_body is None


@pytest.mark.parametrize("feedback", ["mesh_aligned", "grid"])
def test_pyramid_off_samples_the_56_map_with_one_mlp_and_regressor(body_model, image, feedback):
    net = small_net(body_model, feedback=feedback, pyramid=False).eval()
    assert len(net.regressors) == len(net.point_features) == 1
    assert [lvl.map_index for lvl in net.plan] == [2, 2, 2]
    with capture_inputs([net.point_features[0].mlp]) as seen, torch.no_grad():
        out = net(image)
        maps = net.pyramid_maps(image)
    assert len(seen[0]) == 3
    for k in range(3):
        torch.testing.assert_close(seen[0][k], sample_points(maps[2], out.sampled_points[k]))
    if feedback == "mesh_aligned":  # level 0 reads the mean-pose mesh (the paper's non-pyramidal setting)
        mean = independent_mesh_points(body_model, out.initial)
        torch.testing.assert_close(out.sampled_points[0], mean, rtol=0, atol=1e-5)


def test_pyramid_on_samples_the_14_28_56_maps(body_model, image):
    net = small_net(body_model).eval()
    with capture_inputs([pf.mlp for pf in net.point_features]) as seen, torch.no_grad():
        out = net(image)
        maps = net.pyramid_maps(image)
    for k in range(3):
        torch.testing.assert_close(seen[k][0], sample_points(maps[k], out.sampled_points[k]))


@pytest.mark.parametrize("aux,keys", [("iuv", {"index", "u", "v"}), ("part_seg", {"index"}), ("none", None)])
def test_aux_head_outputs(body_model, image, aux, keys):
    net = small_net(body_model, aux=aux).train()
    out = net(image)
    if keys is None:
        assert out.iuv is None and net.iuv_head is None
    else:   # the channels of U, V and of any further output: tests/lightning_modules/nets/test_iuv_head.py
        assert keys <= set(out.iuv) and ("u" in out.iuv) == ("u" in keys)
        assert out.iuv["index"].shape == (2, 25, 56, 56)
        if "u" in keys:
            assert out.iuv["u"].shape == out.iuv["v"].shape and out.iuv["u"].shape[0::2] == (2, 56)


def test_init_features_mesh_samples_the_mean_pose_mesh(body_model, image):
    net = small_net(body_model, init_features="mesh").eval()
    assert net.regressors[0].fc1.in_features == 5 * 431 + 157
    with torch.no_grad():
        out = net(image)
    mean = independent_mesh_points(body_model, out.initial)
    torch.testing.assert_close(out.sampled_points[0], mean, rtol=0, atol=1e-5)
    assert torch.equal(out.initial.pose_6d, body_model.mean_pose.expand(2, -1))


@pytest.mark.parametrize("n_levels,sizes", [(1, [56]), (2, [28, 56]), (3, [14, 28, 56])])
def test_n_levels_use_the_last_maps(body_model, image, n_levels, sizes):
    net = small_net(body_model, n_levels=n_levels).eval()
    with capture_inputs([pf.mlp for pf in net.point_features]) as seen, torch.no_grad():
        out = net(image)
        maps = net.pyramid_maps(image)
    assert len(out.iterations) == n_levels
    assert [maps[lvl.map_index].shape[-1] for lvl in net.plan] == sizes
    for k, lvl in enumerate(net.plan):
        torch.testing.assert_close(seen[k][0], sample_points(maps[lvl.map_index], out.sampled_points[k]))
    assert out.sampled_points[0].shape[1] == 441


@pytest.mark.parametrize("kwargs", [
    {"feedback": "hmr"}, {"aux": "dense"}, {"n_levels": 4}, {"n_levels": 0},
    {"pyramid": False, "init_features": "grid"}, {"feedback": "grid", "init_features": "mesh"},
    {"feedback": "global", "init_features": "mesh"}, {"mesh_forward": "sparse"}, {"init_features": "points"},
    {"regressor_input": "iuv"}, {"aux": "none", "regressor_input": "part_seg"},
    {"aux": "part_seg", "regressor_input": "dense_corr"}, {"feedback": "global", "regressor_input": "masked_features"},
])
def test_invalid_switches_raise(body_model, kwargs):
    with pytest.raises(ValueError):
        small_net(body_model, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# regressor_input (Table 5's input type): what the point features sample.
@pytest.mark.parametrize("regressor_input,aux", [("features", "iuv"), ("part_seg", "part_seg"),
                                                 ("dense_corr", "iuv"), ("masked_features", "part_seg")])
def test_regressor_input_is_what_the_point_mlps_read(body_model, image, regressor_input, aux):
    """Each level's point MLP reads the level's points sampled from: its pyramid map; the softmax of the head's
    index logits (56 x 56); those then U and V; its map times 1 - P(background) averaged over its cells. The
    head also runs in evaluation where the regressors read it, and its output is returned in training only."""
    net = small_net(body_model, aux=aux, regressor_input=regressor_input).eval()
    heads = []
    with capture_inputs([pf.mlp for pf in net.point_features]) as seen, torch.no_grad(), \
            contextlib.ExitStack() as stack:
        handle = net.iuv_head.register_forward_hook(lambda m, a, out: heads.append(out))
        stack.callback(handle.remove)
        out = net(image)
        maps = net.pyramid_maps(image)
    assert out.iuv is None and len(heads) == (0 if regressor_input == "features" else 1)
    for k, level in enumerate(net.plan):
        source = maps[level.map_index]
        if regressor_input != "features":
            probabilities = heads[0]["index"].softmax(dim=1)
            if regressor_input == "part_seg":
                source = probabilities
            elif regressor_input == "dense_corr":
                source = torch.cat([probabilities, heads[0]["u"], heads[0]["v"]], dim=1)
            else:
                cell = 56 // source.shape[-1]
                source = source * torch.nn.functional.avg_pool2d(1.0 - probabilities[:, :1], cell)
        assert net.point_features[k].mlp.in_channels == source.shape[1]
        torch.testing.assert_close(seen[k][0], sample_points(source, out.sampled_points[k]), rtol=1e-5, atol=1e-6)
    net.train()
    assert net(image).iuv is not None
