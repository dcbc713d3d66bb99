"""torchmetrics ``Metric`` classes: DDP-synced sums around the functional cores in ``metrics.functional``.

Each class holds only ``add_state`` tensors with their ``dist_reduce_fx``; ``update`` validates
its inputs (one-line ``ValueError``) and accumulates; ``compute`` turns the synced states into
the reported numbers. 3D inputs are metres, 3D results millimetres.

Per-iteration errors (PyMAF's Table 6, M0..M3): ``PerIterationMPJPE(num_iterations)`` takes the
list of per-iteration joint predictions in one ``update``. Equivalent with stock torchmetrics:
``MetricCollection({f"mpjpe_it{i}": MPJPE() for i in range(n)})`` and one ``update`` per iteration.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from body.joints import COCO17_SIGMAS
from metrics import functional as F

# A median |coordinate| above this many metres means the caller passed millimetres.
MILLIMETRE_GUARD_M = 20.0


def check_points_metres(pred: Tensor, target: Tensor, what: str) -> None:
    """Shapes (B, N, 3) equal, floating, finite, and in metres; raises a one-line ValueError."""
    if pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"{what}: pred must have shape (B, N, 3), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(f"{what}: target must have the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"{what}: pred and target must be floating point, got {pred.dtype} and {target.dtype}")
    if pred.numel() == 0:
        return
    finite_pred, finite_target, med_pred, med_target = torch.stack([
        torch.isfinite(pred).all().to(pred.dtype), torch.isfinite(target).all().to(pred.dtype),
        pred.detach().abs().median(), target.detach().abs().median().to(pred.dtype),
    ]).tolist()
    for ok, name in ((finite_pred, "pred"), (finite_target, "target")):
        if not ok:
            raise ValueError(f"{what}: {name} contains NaN or Inf")
    for med, name in ((med_pred, "pred"), (med_target, "target")):
        if med > MILLIMETRE_GUARD_M:
            raise ValueError(f"{what}: {name} looks like millimetres; pass metres "
                             f"(median |coordinate| {med:.4g} > {MILLIMETRE_GUARD_M:g})")


class _MeanErrorMetric(Metric):
    """Mean of per-sample errors: states ``sum_error`` (float64) and ``total``, both summed over ranks."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("sum_error", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _accumulate(self, errors: Tensor) -> None:
        self.sum_error += errors.detach().double().sum()
        self.total += errors.numel()

    def compute(self) -> Tensor:
        """Mean error in mm (float64; NaN before any sample)."""
        return self.sum_error / self.total


class MPJPE(_MeanErrorMetric):
    """Mean per-joint position error (mm) over all samples seen on all ranks.

    Args:
        pelvis: None = ``update`` gets root-relative joints (``functional.protocol_joints``);
            an index or indices (averaged) = subtract that root of pred and target first.
    """

    def __init__(self, pelvis: int | Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pelvis = pelvis

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred, target: (B, J, 3) joints in metres."""
        check_points_metres(pred, target, type(self).__name__)
        self._accumulate(F.mpjpe(pred, target, self.pelvis))


class PAMPJPE(_MeanErrorMetric):
    """MPJPE (mm) after per-sample similarity Procrustes alignment (reconstruction error)."""

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred, target: (B, J, 3) joints in metres."""
        check_points_metres(pred, target, type(self).__name__)
        self._accumulate(F.pa_mpjpe(pred, target))


class PVE(_MeanErrorMetric):
    """Mean per-vertex error (mm).

    Args:
        alignment: "none" (default; the 3DPW protocol of SPIN / PyMAF eval.py: body-model vertices
            without camera translation), "pelvis" (``update`` then needs ``pelvis_pred`` and
            ``pelvis_target``) or "procrustes".
    """

    def __init__(self, alignment: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if alignment not in F.PVE_ALIGNMENTS:
            raise ValueError(f"PVE: alignment must be one of {F.PVE_ALIGNMENTS}, got {alignment!r}")
        self.alignment = alignment

    def update(self, pred: Tensor, target: Tensor, pelvis_pred: Tensor | None = None,
               pelvis_target: Tensor | None = None) -> None:
        """pred, target: (B, V, 3) vertices in metres; pelvis_*: (B, 3), for alignment="pelvis"."""
        check_points_metres(pred, target, "PVE")
        if self.alignment == "pelvis":
            if pelvis_pred is None or pelvis_target is None:
                raise ValueError("PVE: alignment='pelvis' needs update(pred, target, pelvis_pred, pelvis_target)")
            check_points_metres(pelvis_pred[:, None], pelvis_target[:, None], "PVE pelvis")
        self._accumulate(F.pve(pred, target, self.alignment, pelvis_pred, pelvis_target))


class PerIterationMPJPE(Metric):
    """MPJPE (or PA-MPJPE) of each iterative-regression step, e.g. PyMAF's M0..M3 (its Table 6).

    Args:
        num_iterations: number of predictions per sample.
        procrustes: True = PA-MPJPE per iteration.
        pelvis: as in ``MPJPE`` (ignored with ``procrustes``).
    ``compute()`` returns (num_iterations,) mm.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_iterations: int, procrustes: bool = False,
                 pelvis: int | Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_iterations < 1:
            raise ValueError(f"PerIterationMPJPE: num_iterations must be >= 1, got {num_iterations}")
        self.num_iterations = num_iterations
        self.procrustes = procrustes
        self.pelvis = pelvis
        self.add_state("sum_error", default=torch.zeros(num_iterations, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Tensor] | Tensor, target: Tensor) -> None:
        """preds: num_iterations tensors (B, J, 3) (or one (num_iterations, B, J, 3)); target: (B, J, 3); metres."""
        if len(preds) != self.num_iterations:
            raise ValueError(f"PerIterationMPJPE: expected {self.num_iterations} predictions, got {len(preds)}")
        for i, pred in enumerate(preds):
            check_points_metres(pred, target, f"PerIterationMPJPE[{i}]")
            err = F.pa_mpjpe(pred, target) if self.procrustes else F.mpjpe(pred, target, self.pelvis)
            self.sum_error[i] += err.detach().double().sum()
        self.total += target.shape[0]

    def compute(self) -> Tensor:
        """(num_iterations,) mean errors in mm, float64."""
        return self.sum_error / self.total


class SegmentationScores(Metric):
    """Pixel accuracy and F1 of label maps (LSP foreground / 6 parts + background).

    State: the confusion matrix (rows = ground truth) over the pixels not labelled ``ignore_index``,
    and how the ignored pixels were predicted, both summed over ranks. ``compute()`` returns the
    dict of ``functional.segmentation_scores`` (accuracy, mean_f1 over all classes, per_class_f1,
    accuracy_ignored_as_background = the SPIN / PyMAF "parts accuracy").
    Binary UP-3D masks are stored 0 / 255: convert them to {0, 1} before ``update``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"SegmentationScores: num_classes must be >= 2, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"SegmentationScores: ignore_index {ignore_index} is a class index (< {num_classes})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confusion", default=torch.zeros(num_classes, num_classes, dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("ignored_pred", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred: (B, H, W) labels in [0, num_classes); target: (B, H, W) labels or ignore_index."""
        name, n = "SegmentationScores", self.num_classes
        if pred.dim() != 3 or pred.shape != target.shape:
            raise ValueError(f"{name}: pred and target must both be (B, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
        if pred.is_floating_point() or target.is_floating_point() or pred.is_complex() or target.is_complex():
            raise ValueError(f"{name}: pred and target must be integer label maps, got {pred.dtype} and {target.dtype}")
        if pred.numel():
            t = target.long()
            bad_pred, bad_target = torch.stack([
                ((pred < 0) | (pred >= n)).any(), (((t < 0) | (t >= n)) & (t != self.ignore_index)).any(),
            ]).tolist()
            if bad_pred:
                raise ValueError(f"{name}: pred has labels outside [0, {n})")
            if bad_target:
                raise ValueError(f"{name}: target has labels outside [0, {n}) other than ignore_index {self.ignore_index}")
        self.confusion += F.segmentation_confusion(pred, target, n, self.ignore_index)
        self.ignored_pred += F.ignored_prediction_counts(pred, target, n, self.ignore_index)

    def compute(self) -> dict[str, Tensor]:
        return F.segmentation_scores(self.confusion, self.ignored_pred)


class KeypointAP(Metric):
    """COCO keypoint AP, AP50, AP75, APM, APL, identical to ``pycocotools.COCOeval(iouType="keypoints")``.

    States: the detections and ground truths themselves, concatenated over ranks
    (``dist_reduce_fx="cat"``). Image ids must be globally unique (the caller makes them so,
    e.g. COCO's own ids); all ground truths of an image must reach the metric, detections or not.
    ``compute()`` returns a dict of float64 scalars in [0, 1] (-1 where an area range has no
    ground truth), see ``functional.keypoint_ap``.

    Args:
        sigmas: per-keypoint OKS sigmas (default COCO's 17).
        max_dets: detections kept per image (COCO: 20).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    # name -> (dtype, trailing shape; "K" = number of keypoints)
    _STATES: dict[str, tuple[torch.dtype, tuple]] = {
        "det_image_ids": (torch.long, ()), "det_keypoints": (torch.float64, ("K", 2)),
        "det_scores": (torch.float64, ()), "gt_image_ids": (torch.long, ()),
        "gt_keypoints": (torch.float64, ("K", 3)), "gt_areas": (torch.float64, ()),
        "gt_boxes": (torch.float64, (4,)), "gt_iscrowd": (torch.long, ()), "gt_num_keypoints": (torch.long, ()),
    }

    def __init__(self, sigmas: Sequence[float] = COCO17_SIGMAS, max_dets: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigmas = [float(s) for s in sigmas]
        self.max_dets = max_dets
        for name in self._STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _empty(self, name: str) -> Tensor:
        dtype, trail = self._STATES[name]
        shape = (0,) + tuple(len(self.sigmas) if s == "K" else s for s in trail)
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def update(self, det_image_ids: Tensor, det_keypoints: Tensor, det_scores: Tensor,
               gt_image_ids: Tensor, gt_keypoints: Tensor, gt_areas: Tensor, gt_boxes: Tensor,
               gt_iscrowd: Tensor | None = None, gt_num_keypoints: Tensor | None = None) -> None:
        """Add detections (D of them) and ground truths (G) of some images; either may be empty.

        det_image_ids (D,), det_keypoints (D, K, 2|3) pixels, det_scores (D,);
        gt_image_ids (G,), gt_keypoints (G, K, 3) x, y, v, gt_areas (G,), gt_boxes (G, 4) x, y, w, h,
        gt_iscrowd (G,) optional, gt_num_keypoints (G,) optional (default: count of v > 0).
        """
        k, name = len(self.sigmas), "KeypointAP"
        d, g = det_image_ids.numel(), gt_image_ids.numel()
        if det_keypoints.dim() != 3 or det_keypoints.shape[:2] != (d, k) or det_keypoints.shape[2] not in (2, 3):
            raise ValueError(f"{name}: det_keypoints must have shape ({d}, {k}, 2 or 3), got {tuple(det_keypoints.shape)}")
        if det_scores.numel() != d:
            raise ValueError(f"{name}: det_scores has {det_scores.numel()} entries for {d} detections")
        if gt_keypoints.shape != (g, k, 3):
            raise ValueError(f"{name}: gt_keypoints must have shape ({g}, {k}, 3), got {tuple(gt_keypoints.shape)}")
        if gt_areas.numel() != g or gt_boxes.shape != (g, 4):
            raise ValueError(f"{name}: gt_areas must be ({g},) and gt_boxes ({g}, 4), got "
                             f"{tuple(gt_areas.shape)} and {tuple(gt_boxes.shape)}")
        for opt, what in ((gt_iscrowd, "gt_iscrowd"), (gt_num_keypoints, "gt_num_keypoints")):
            if opt is not None and opt.numel() != g:
                raise ValueError(f"{name}: {what} has {opt.numel()} entries for {g} ground truths")
        if det_image_ids.is_floating_point() or gt_image_ids.is_floating_point():
            raise ValueError(f"{name}: image ids must be integers")
        floats = [det_keypoints[..., :2], det_scores, gt_keypoints, gt_areas, gt_boxes]
        if not all(bool(torch.isfinite(x).all()) for x in floats if x.numel()):
            raise ValueError(f"{name}: keypoints, scores, areas or boxes contain NaN or Inf")

        dev = self.device
        if gt_iscrowd is None:
            gt_iscrowd = torch.zeros(g, dtype=torch.long)
        if gt_num_keypoints is None:
            gt_num_keypoints = (gt_keypoints[..., 2] > 0).sum(dim=1)
        values = {
            "det_image_ids": det_image_ids.reshape(-1), "det_keypoints": det_keypoints[..., :2],
            "det_scores": det_scores.reshape(-1), "gt_image_ids": gt_image_ids.reshape(-1),
            "gt_keypoints": gt_keypoints, "gt_areas": gt_areas.reshape(-1), "gt_boxes": gt_boxes,
            "gt_iscrowd": gt_iscrowd.reshape(-1), "gt_num_keypoints": gt_num_keypoints.reshape(-1),
        }
        for state, value in values.items():
            getattr(self, state).append(value.detach().to(dev, self._STATES[state][0]))

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        # A rank that saw no update would send torchmetrics' float32 placeholder; send typed empties instead.
        for name in self._STATES:
            if not getattr(self, name):
                setattr(self, name, [self._empty(name)])
        super()._sync_dist(*args, **kwargs)

    def _cat(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, Tensor):
            return value
        return dim_zero_cat(value) if value else self._empty(name)

    def compute(self) -> dict[str, Tensor]:
        s = {name: self._cat(name) for name in self._STATES}
        # The concatenation order depends on which rank saw what, and COCOeval breaks score ties by input
        # order: put detections and ground truths in an order of their own values first, so that a row
        # from several ranks equals the row of one process.
        det = _canonical_order(s["det_image_ids"], -s["det_scores"], s["det_keypoints"])
        gt = _canonical_order(s["gt_image_ids"], s["gt_keypoints"], s["gt_areas"], s["gt_boxes"])
        s = {name: value[det if name.startswith("det_") else gt] for name, value in s.items()}
        return F.keypoint_ap(
            s["det_image_ids"], s["det_keypoints"], s["det_scores"],
            s["gt_image_ids"], s["gt_keypoints"], s["gt_areas"], s["gt_boxes"],
            s["gt_iscrowd"], s["gt_num_keypoints"], sigmas=self.sigmas, max_dets=self.max_dets,
        )


def _canonical_order(*keys: Tensor) -> Tensor:
    """(N,) the permutation sorting rows lexicographically by ``keys`` (each (N, ...), flattened per row;
    the first key most significant)."""
    columns = [k.detach().reshape(k.shape[0], -1).double().cpu() for k in keys]
    table = torch.cat(columns, dim=1) if columns else torch.zeros(0, 0)
    order = torch.arange(table.shape[0])
    for c in reversed(range(table.shape[1])):   # least significant first, stable sorts
        order = order[torch.sort(table[order, c], stable=True).indices]
    return order.to(keys[0].device)
