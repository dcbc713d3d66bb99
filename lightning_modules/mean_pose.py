"""The mean-pose baseline: what a model scores that answers every sample with the body model's mean parameters.

The papers' tables and HMR's lineage read errors against it: a model whose MPJPE or PVE is not well under the
mean pose's has learnt little. ``make train`` prints it beside the run's own validation errors, on the same
evaluation sets and the same samples (the run's validation batches), through the same ``ProtocolMetrics`` as
validation; the prediction is Theta_0 (``nets.regressor.mean_theta_from_body``: mean pose, mean shape, mean
camera), the start PyMAF's and HMR's regressors refine (PyMAF's M0 on a trained model equals it).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from lightning_modules.evaluation import ProtocolMetrics, metric_values
from lightning_modules.nets.regressor import mean_theta_from_body, theta_to_estimate
from lightning_modules.prediction import Prediction


@torch.no_grad()
def mean_pose_rows(module, loaders: Sequence[Iterable], batches: Sequence[int]) -> dict[str, dict[str, float]]:
    """``{set: {metric: value}}`` of the mean-pose baseline on ``module``'s evaluation sets: the first
    ``batches[i]`` batches of ``loaders[i]`` (the run's validation batches), each set through a fresh
    ``ProtocolMetrics`` of its own protocol. Sets with no batch are left out. Every process must call it (the
    metrics sum over processes, as validation's do)."""
    rows: dict[str, dict[str, float]] = {}
    device = next(module.parameters()).device
    theta = mean_theta_from_body(module.decoder.body).to(device)[None]          # (1, 157) Theta_0
    for name, evaluator, loader, count in zip(module.eval_sets, module.evaluators, loaders, batches):
        limit = None if count == float("inf") else int(count)
        if limit is not None and limit <= 0:
            continue
        metrics = ProtocolMetrics(module.decoder, evaluator.protocol, evaluator.coco).to(device)
        for i, batch in enumerate(loader):
            if limit is not None and i >= limit:
                break
            if "img" not in batch:                      # a batch of only skipped samples
                continue
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            estimate = theta_to_estimate(theta.expand(batch["img"].shape[0], -1))
            metrics.update(batch, Prediction(iterations=[estimate]))
        rows[name] = {k: round(float(v), 4) for k, v in metric_values(metrics.row()).items()}
    return rows


def mean_pose_counterpart(key: str, flat: dict[str, Any]) -> float | None:
    """The mean-pose value (``flat``: ``{val/<set>/<metric>: value}``, as ``make train``'s summary holds them) of a
    validation key ``val/<set>/<metric>``; a mesh suffix ``_np`` / ``_p`` is dropped (the baseline has one mesh)."""
    for suffix in ("_np", "_p"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    return flat.get(key)
