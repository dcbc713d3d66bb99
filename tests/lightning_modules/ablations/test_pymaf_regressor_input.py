"""PyMAF Table 5's "Input Type" rows (``model.regressor_input``) at the LightningModule level.

    pymaf_t5_part_seg_input    the point features sample the predicted part probabilities (softmax of the
                               head's 25 index logits) at 56 x 56, at every level;
    pymaf_t5_dense_corr_input  the part probabilities followed by the predicted U and V;
    pymaf_t5_part_seg_masked   each level's feature map times the predicted foreground probability
                               1 - P(background), averaged over the map's cells for the 14 and 28 maps.

Each is checked against an independent computation from the head's output and the pyramid maps, and by what
it implies: with the head's output held fixed, the prediction rows do not see the feature maps at all, and the
masked row equals the plain "Feature" row when the foreground probability is 1 everywhere.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.nets.mesh_aligned import sample_points
from lightning_modules.parametric import parametric_terms
from tests.lightning_modules.ablations.support import build, hooks, max_diff, run_eval

PREDICTION_ROWS = ["pymaf_t5_part_seg_input", "pymaf_t5_dense_corr_input"]
MASKED_ROW, FEATURE_ROW = "pymaf_t5_part_seg_masked", "pymaf_t5_part_seg"
HEAD_SIDE = 56


def expected_input(name: str, iuv: dict, maps: list, side: int) -> torch.Tensor:
    """What the row's level reading a map of ``side`` pixels samples, from the head's output and the maps."""
    probabilities = torch.exp(iuv["index"] - torch.logsumexp(iuv["index"], dim=1, keepdim=True))
    if name == "pymaf_t5_part_seg_input":
        return probabilities
    if name == "pymaf_t5_dense_corr_input":
        return torch.cat([probabilities, iuv["u"], iuv["v"]], dim=1)
    foreground = 1.0 - probabilities[:, :1]
    cell = HEAD_SIDE // side
    feature = next(m for m in maps if m.shape[-1] == side)
    return feature * F.avg_pool2d(foreground, cell)


@contextlib.contextmanager
def recording(net):
    """Record the head's output, the pyramid maps and each point MLP's (sampled) input while inside."""
    seen = {"iuv": [], "maps": [], "mlp": {i: [] for i in range(len(net.point_features))}}
    handles = [net.iuv_head.register_forward_hook(lambda m, a, out: seen["iuv"].append(out)),
               net.deconv.register_forward_hook(lambda m, a, out: seen["maps"].append(out))]
    handles += [pf.mlp.register_forward_pre_hook(lambda m, a, i=i: seen["mlp"][i].append(a[0]))
                for i, pf in enumerate(net.point_features)]
    with hooks(*handles):
        yield seen


@contextlib.contextmanager
def fixed_head(net, output: dict):
    """The auxiliary head returns ``output`` whatever its input."""
    with hooks(net.iuv_head.register_forward_hook(lambda m, a, out: output)):
        yield


@pytest.mark.parametrize("name", PREDICTION_ROWS + [MASKED_ROW])
def test_point_features_sample_what_the_row_says(data, name):
    """Evaluation mode: the head runs (its output is not returned), and each level's point MLP reads the
    row's input sampled at the level's points."""
    dm, batch, _ = data
    module = build(name, dm.eval_names)
    net = module.net
    with recording(net) as seen:
        out = run_eval(module, batch)
    assert out.iuv is None and len(seen["iuv"]) == 1 and len(seen["maps"]) == 1
    iuv, maps = seen["iuv"][0], seen["maps"][0]
    channels = maps[0].shape[1] if name == MASKED_ROW else sum(
        iuv[k].shape[1] for k in (("index", "u", "v") if name == "pymaf_t5_dense_corr_input" else ("index",)))
    assert [pf.mlp.in_channels for pf in net.point_features] == [channels] * 3
    for level, plan in enumerate(net.plan):
        side = maps[plan.map_index].shape[-1]
        expected = sample_points(expected_input(name, iuv, maps, side), out.sampled_points[level])
        (got,) = seen["mlp"][level]
        assert got.shape[-1] == channels
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", PREDICTION_ROWS)
def test_prediction_rows_see_the_features_only_through_the_head(data, name):
    """With the head's output held fixed, changing the feature maps changes no estimate; changing the head's
    output does. The "Feature" row with the same perturbation changes (the contrast)."""
    dm, batch, _ = data
    module = build(name, dm.eval_names)
    net = module.net
    with recording(net) as seen:
        reference = run_eval(module, batch)
    held = {k: v.clone() for k, v in seen["iuv"][0].items()}
    with torch.no_grad():
        net.deconv.blocks[-1][0].weight.mul_(1.5)
    with fixed_head(net, held):
        perturbed = run_eval(module, batch)
    for a, b in zip(reference.iterations, perturbed.iterations):
        assert torch.equal(a.pose_6d, b.pose_6d) and torch.equal(a.betas, b.betas) and torch.equal(a.cam, b.cam)
    with fixed_head(net, {k: v * 1.5 if k == "index" else v for k, v in held.items()}):
        changed = run_eval(module, batch)
    assert max_diff(changed.iterations[-1].pose_6d, reference.iterations[-1].pose_6d) > 1e-6

    contrast = build(FEATURE_ROW, dm.eval_names)   # its head does not even run in evaluation
    reference = run_eval(contrast, batch)
    with torch.no_grad():
        contrast.net.deconv.blocks[-1][0].weight.mul_(1.5)
    perturbed = run_eval(contrast, batch)
    assert max_diff(perturbed.iterations[-1].pose_6d, reference.iterations[-1].pose_6d) > 1e-6


@pytest.mark.parametrize("name,flows", [(n, True) for n in PREDICTION_ROWS + [MASKED_ROW]] + [(FEATURE_ROW, False)])
def test_the_regressors_loss_trains_the_head_through_its_predictions(data, name, flows):
    """Nothing is detached: the parametric terms alone give the head's part logits a gradient (the "Feature"
    row's head gets none from them)."""
    dm, batch, _ = data
    module = build(name, dm.eval_names).train()
    with recording(module.net) as seen:
        torch.manual_seed(0)
        out = module(batch)
    terms = parametric_terms(module.decoder.decode, batch, out.iterations)
    (grad,) = torch.autograd.grad(torch.stack(list(terms.values())).sum(), [seen["iuv"][0]["index"]],
                                  allow_unused=True)
    assert (grad is not None and bool(grad.abs().sum() > 0)) == flows


def test_masked_features_equal_the_features_where_the_foreground_is_certain(data):
    """Foreground probability 1 everywhere: the masked row computes the "Feature" row's estimates (same
    weights). Probability 0 everywhere: the points read zeros, so the feature maps no longer matter."""
    dm, batch, _ = data
    masked, plain = build(MASKED_ROW, dm.eval_names), build(FEATURE_ROW, dm.eval_names)
    state = plain.state_dict()
    assert list(masked.state_dict()) == list(state)
    masked.load_state_dict(state)
    with recording(masked.net) as seen:
        run_eval(masked, batch)
    index = seen["iuv"][0]["index"]
    certain = {**seen["iuv"][0], "index": torch.cat([torch.full_like(index[:, :1], -1e4), index[:, 1:]], 1)}
    with fixed_head(masked.net, certain):
        got = run_eval(masked, batch)
    want = run_eval(plain, batch)
    for a, b in zip(got.iterations, want.iterations):
        torch.testing.assert_close(a.pose_6d, b.pose_6d, rtol=1e-6, atol=1e-7)

    background = {**seen["iuv"][0], "index": torch.cat([index[:, :1], torch.full_like(index[:, 1:], -1e4)], 1)}
    with fixed_head(masked.net, background):
        reference = run_eval(masked, batch)
        with torch.no_grad():
            masked.net.deconv.blocks[-1][0].weight.mul_(1.5)
            masked.net.deconv.blocks[0][0].weight.mul_(1.5)
        perturbed = run_eval(masked, batch)
    for a, b in zip(reference.iterations, perturbed.iterations):
        assert torch.equal(a.pose_6d, b.pose_6d)
