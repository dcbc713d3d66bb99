"""Segmentation scores from a confusion matrix (LSP foreground/background and 6-part protocols)."""
from __future__ import annotations

import torch
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# Segmentation (LSP foreground / parts)
# ----------------------------------------------------------------------------------------------
def segmentation_confusion(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255) -> Tensor:
    """Confusion matrix over the labelled pixels: ``C[t, p]`` counts pixels of class t predicted as p.

    Args:
        pred: (B, H, W) integer labels in [0, num_classes).
        target: (B, H, W) integer labels in [0, num_classes), or ``ignore_index`` (not counted).
        num_classes: number of classes, background included.
        ignore_index: label to skip in ``target``; None = none.
    Returns:
        (num_classes, num_classes) int64 counts, on the device of ``pred``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"segmentation: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)

def ignored_prediction_counts(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """How the pixels labelled ``ignore_index`` were predicted: (num_classes,) int64 counts.

    Needed only for SPIN's / PyMAF's *parts accuracy*, which counts an ignored pixel as
    background (correct iff predicted 0) instead of skipping it; see ``segmentation_scores``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"segmentation: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    sel = pred.reshape(-1).long()[target.reshape(-1) == ignore_index]
    return torch.bincount(sel, minlength=num_classes)

def segmentation_scores(confusion: Tensor, ignored_pred: Tensor | None = None) -> dict[str, Tensor]:
    """Accuracy and F1 scores from a confusion matrix (rows = ground truth, columns = prediction).

    Args:
        confusion: (K, K) counts from ``segmentation_confusion``.
        ignored_pred: optional (K,) counts from ``ignored_prediction_counts``.
    Returns:
        dict of float64 tensors:
          ``accuracy``      correct / labelled pixels (ignored pixels excluded);
          ``per_class_f1``  (K,) 2TP / (2TP + FP + FN), NaN for a class absent from both;
          ``mean_f1``       mean of ``per_class_f1`` over all K classes (NaN ones skipped);
          ``accuracy_ignored_as_background`` (only with ``ignored_pred``) the UP-3D / SPIN parts
                            accuracy: ignored pixels count, as background (class 0).
    """
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square (K, K) matrix, got {tuple(confusion.shape)}")
    c = confusion.double()
    tp = torch.diagonal(c)
    fp = c.sum(dim=0) - tp
    fn = c.sum(dim=1) - tp
    f1 = 2 * tp / (2 * tp + fp + fn)
    out = {
        "accuracy": tp.sum() / c.sum(),
        "mean_f1": torch.nanmean(f1),
        "per_class_f1": f1,
    }
    if ignored_pred is not None:
        ig = ignored_pred.double()
        out["accuracy_ignored_as_background"] = (tp.sum() + ig[0]) / (c.sum() + ig.sum())
    return out
