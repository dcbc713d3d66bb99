"""The papers' Baseline (``MODEL=hmr``) against PyMAF Table 4's "Global" row (``ablation=pymaf_t4_global``).

Both are ResNet-50's pooled c5 feature and three steps of one HMR regressor, so with the same weights they
compute the same estimates. They differ in training only, as PyMAF's code and paper say: the Baseline (SPIN's
``models/hmr.py`` under PyMAF's trainer, ``len_loop = 1``) supervises its final estimate and keeps the gradient
through the iterations; the "Global" row detaches each estimate before the next iteration and supervises every
one ("individual supervision on the prediction of each iteration").

Where gradients stop is read at the first iteration's update r_0 = Theta_1 - Theta_0 (the regressor's output
layers at their first call): Theta_0 is a constant, so the gradient wrt r_0 is the gradient wrt the first
estimate.
"""
from __future__ import annotations

import pytest
import torch

from lightning_modules.prediction import Prediction
from tests.lightning_modules.ablations.support import build, build_from, hooks, run_eval

GLOBAL_ROW = "pymaf_t4_global"
OUTPUT_LAYERS = ("decpose", "decshape", "deccam")


def hmr_state_of(pymaf_state: dict) -> dict:
    """The hmr module's state dict holding a pymaf_t4_global module's weights: PyMAFNet's one regressor
    ``net.regressors.0`` is HMRNet's ``net.regressor``; the backbone (``net.backbone``) and the body model's
    buffers have the same names."""
    return {k.replace("net.regressors.0.", "net.regressor.", 1): v for k, v in pymaf_state.items()}


@pytest.fixture
def pair(data):
    """(hmr module, pymaf_t4_global module) with the same weights (built per test: a training forward
    updates BatchNorm's running statistics)."""
    dm, _, _ = data
    row = build(GLOBAL_ROW, dm.eval_names, seed=0)
    baseline = build_from(["model=hmr"], dm.eval_names, seed=1)
    baseline.load_state_dict(hmr_state_of(row.state_dict()))   # strict: every key maps
    return baseline, row


def regressor_of(module):
    return module.net.regressor if hasattr(module.net, "regressor") else module.net.regressors[0]


def train_forward(module, batch):
    """Train-mode forward (dropout on) with fixed dropout masks, recording the regressor's output layers'
    outputs per call: returns (prediction, [(pose, betas, cam) residual of call k])."""
    reg = regressor_of(module)
    calls = {name: [] for name in OUTPUT_LAYERS}
    handles = [getattr(reg, name).register_forward_hook(lambda m, a, out, name=name: calls[name].append(out))
               for name in OUTPUT_LAYERS]
    module.train()
    torch.manual_seed(0)
    with hooks(*handles):
        out = module(batch)
    return out, list(zip(*(calls[name] for name in OUTPUT_LAYERS)))


def total(terms: dict) -> torch.Tensor:
    return torch.stack(list(terms.values())).sum()


def test_the_configs_say_baseline_last_and_global_row_every_estimate(pair):
    baseline, row = pair
    assert baseline.model_cfg["supervise"] == "last" and baseline.criterion.supervise == "last"
    assert row.criterion.supervise == "all"
    assert baseline.model_cfg["n_iter"] == row.model_cfg["n_levels"] == 3
    assert baseline.model_cfg["loss_weights"] == {k: v for k, v in row.model_cfg["loss_weights"].items()
                                                  if not k.startswith("iuv_")}
    assert baseline.optim_cfg == row.optim_cfg


def test_same_weights_give_the_same_forward(data, pair):
    """Evaluation and training forwards (the same dropout masks) give the same estimates at every iteration."""
    _, batch, _ = data
    baseline, row = pair
    outs = [run_eval(m, batch) for m in pair]
    trains = [train_forward(m, batch)[0] for m in pair]
    for a, b in (outs, trains):
        assert len(a.iterations) == len(b.iterations) == 3
        for ea, eb in zip([a.initial] + a.iterations, [b.initial] + b.iterations):
            for key in ("pose_6d", "betas", "cam", "pose_rotmat"):
                torch.testing.assert_close(getattr(ea, key), getattr(eb, key), rtol=1e-5, atol=1e-6)
    # Not trivially equal: the iterations move, and dropout changes the training forward.
    assert float((trains[0].iterations[-1].pose_6d.detach() - outs[0].iterations[-1].pose_6d).abs().max()) > 1e-6
    assert float((outs[0].iterations[1].pose_6d - outs[0].iterations[0].pose_6d).abs().max()) > 1e-6


def test_the_baseline_supervises_its_final_estimate_and_the_global_row_every_one(data, pair):
    _, batch, _ = data
    baseline, row = pair
    out, _ = train_forward(row, batch)   # the same estimates for both (previous test)
    per_estimate = [row.criterion(batch, Prediction(iterations=[e]), row.decoder) for e in out.iterations]
    baseline_terms = baseline.criterion(batch, out, baseline.decoder)
    row_terms = row.criterion(batch, out, row.decoder)
    assert set(baseline_terms) == set(row_terms) == set(per_estimate[0])
    for key in row_terms:
        torch.testing.assert_close(baseline_terms[key], per_estimate[-1][key], rtol=0, atol=0)
        torch.testing.assert_close(row_terms[key], sum(t[key] for t in per_estimate), rtol=1e-6, atol=0)
    assert float(total(baseline_terms).detach()) < float(total(row_terms).detach())


def test_gradients_flow_through_the_baseline_iterations_and_stop_between_the_global_rows(data, pair):
    """The gradient of the loss wrt the first estimate (its update r_0): in the Baseline it comes only
    through the later iterations (no term reads the first estimate); in the Global row it comes only from
    the first estimate's own terms (the later iterations read it detached)."""
    _, batch, _ = data
    baseline, row = pair

    out, residuals = train_forward(baseline, batch)
    r0 = list(residuals[0])
    loss = total(baseline.criterion(batch, out, baseline.decoder))
    grads = torch.autograd.grad(loss, r0, allow_unused=True)
    assert all(g is not None and bool(g.abs().sum() > 0) for g in grads)
    # ...and only through the later iterations: the first estimate's own terms are not in the loss.
    first_terms = total(baseline.criterion(batch, Prediction(iterations=[out.iterations[0]]), baseline.decoder))
    own = torch.autograd.grad(first_terms, r0)
    assert any(float((g - o).abs().max()) > 1e-6 * float(o.abs().max()) for g, o in zip(grads, own))

    out, residuals = train_forward(row, batch)
    r0 = list(residuals[0])
    later = total(row.criterion(batch, Prediction(iterations=out.iterations[1:]), row.decoder))
    assert all(g is None for g in torch.autograd.grad(later, r0, retain_graph=True, allow_unused=True))
    loss = total(row.criterion(batch, out, row.decoder))
    first_terms = total(row.criterion(batch, Prediction(iterations=[out.iterations[0]]), row.decoder))
    grads = torch.autograd.grad(loss, r0, retain_graph=True)
    own = torch.autograd.grad(first_terms, r0)
    for g, o in zip(grads, own):
        assert bool(o.abs().sum() > 0)
        torch.testing.assert_close(g, o, rtol=1e-5, atol=1e-9)
