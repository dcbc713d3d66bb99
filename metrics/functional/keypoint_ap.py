"""COCO keypoint AP from OKS, identical to pycocotools.COCOeval (iouType='keypoints')."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from body.joints import COCO17_SIGMAS

# ----------------------------------------------------------------------------------------------
# COCO keypoints: OKS and AP exactly as pycocotools.COCOeval(iouType="keypoints")
# ----------------------------------------------------------------------------------------------
_EPS = 2.220446049250313e-16        # np.spacing(1), as COCOeval adds it
_OKS_THRESHOLDS_N = 10              # .50:.05:.95
_RECALL_THRESHOLDS_N = 101          # 0:.01:1
# (lo, hi) of 'all', 'medium', 'large' for keypoints: [0, 1e5^2], [32^2, 96^2], [96^2, 1e5^2].
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2),
}


def _linspace_like_numpy(start: float, stop: float, num: int) -> Tensor:
    """``np.linspace(start, stop, num)`` bit for bit (i * step + start, last = stop), float64 CPU."""
    step = (stop - start) / (num - 1)
    y = torch.arange(num, dtype=torch.float64) * step + start
    y[-1] = stop
    return y


def oks_thresholds() -> Tensor:
    """COCOeval's ``iouThrs``: (10,) float64, .50:.05:.95."""
    return _linspace_like_numpy(0.5, 0.95, _OKS_THRESHOLDS_N)


def recall_thresholds() -> Tensor:
    """COCOeval's ``recThrs``: (101,) float64, 0:.01:1."""
    return _linspace_like_numpy(0.0, 1.0, _RECALL_THRESHOLDS_N)


def oks(pred_kpts: Tensor, gt_kpts: Tensor, gt_areas: Tensor, sigmas: Sequence[float] | Tensor = COCO17_SIGMAS,
        gt_boxes: Tensor | None = None) -> Tensor:
    """Object keypoint similarity between every prediction and every ground truth (COCOeval.computeOks).

    OKS = mean over the labelled (v > 0) gt keypoints of exp(-d^2 / (2 * area * (2 sigma)^2)).
    A ground truth with no labelled keypoint is scored with every keypoint against its box enlarged
    to [x - w, x + 2w] x [y - h, y + 2h] (distance 0 inside), as COCOeval does.

    Args:
        pred_kpts: (P, K, 2) predicted pixel coordinates (a third channel, e.g. score, is ignored).
        gt_kpts: (G, K, 3) ground truth x, y, visibility v (0 = unlabelled).
        gt_areas: (G,) ground-truth areas (COCO's ``area``, pixels^2).
        sigmas: (K,) per-keypoint sigmas, default COCO's 17.
        gt_boxes: (G, 4) x, y, w, h gt boxes, used for unlabelled ground truth only; None gives those OKS 0.
    Returns:
        (P, G) OKS, float64, on the device of ``pred_kpts``.
    """
    if pred_kpts.dim() != 3 or pred_kpts.shape[-1] < 2:
        raise ValueError(f"oks: pred_kpts must have shape (P, K, 2), got {tuple(pred_kpts.shape)}")
    if gt_kpts.dim() != 3 or gt_kpts.shape[-1] != 3 or gt_kpts.shape[1] != pred_kpts.shape[1]:
        raise ValueError(f"oks: gt_kpts must have shape (G, {pred_kpts.shape[1]}, 3), got {tuple(gt_kpts.shape)}")
    dev = pred_kpts.device
    d = pred_kpts[..., :2].to(dev, torch.float64)
    g = gt_kpts.to(dev, torch.float64)
    var = (torch.as_tensor(sigmas, dtype=torch.float64, device=dev) * 2) ** 2          # (K,)
    if var.shape != (g.shape[1],):
        raise ValueError(f"oks: {var.numel()} sigmas for {g.shape[1]} keypoints")
    area = gt_areas.to(dev, torch.float64)
    vis = g[..., 2] > 0                                                                 # (G, K)
    labelled = vis.any(dim=1)                                                           # (G,)

    dx = d[:, None, :, 0] - g[None, :, :, 0]                                            # (P, G, K)
    dy = d[:, None, :, 1] - g[None, :, :, 1]
    if gt_boxes is not None:
        bb = gt_boxes.to(dev, torch.float64)
        x0, x1 = bb[:, 0] - bb[:, 2], bb[:, 0] + bb[:, 2] * 2
        y0, y1 = bb[:, 1] - bb[:, 3], bb[:, 1] + bb[:, 3] * 2
        xd, yd = d[:, None, :, 0], d[:, None, :, 1]
        bdx = (x0[None, :, None] - xd).clamp_min(0) + (xd - x1[None, :, None]).clamp_min(0)
        bdy = (y0[None, :, None] - yd).clamp_min(0) + (yd - y1[None, :, None]).clamp_min(0)
        dx = torch.where(labelled[None, :, None], dx, bdx)
        dy = torch.where(labelled[None, :, None], dy, bdy)
    e = (dx ** 2 + dy ** 2) / var / (area[None, :, None] + _EPS) / 2
    # Labelled gt: mean over its labelled keypoints; unlabelled: mean over all K (box test).
    counted = torch.where(labelled[:, None], vis, torch.ones_like(vis))                 # (G, K)
    sim = (torch.exp(-e) * counted).sum(dim=-1) / counted.sum(dim=-1)
    if gt_boxes is None:
        sim = sim * labelled
    return sim


def keypoint_det_areas(det_kpts: Tensor) -> Tensor:
    """Detection areas as ``COCO.loadRes`` sets them: the box around all K keypoints. (D, K, >=2) -> (D,)."""
    x, y = det_kpts[..., 0].double(), det_kpts[..., 1].double()
    return (x.amax(dim=1) - x.amin(dim=1)) * (y.amax(dim=1) - y.amin(dim=1))


def _last_argmax(values: Tensor, cand: Tensor) -> tuple[Tensor, Tensor]:
    """Per row, the LAST index holding the maximum of ``values`` among ``cand``; and whether any.

    (T, G) -> index (T,), found (T,). Ties go to the later gt, as in COCOeval.evaluateImg where
    ``ious < best`` (strict) lets an equal later value take over.
    """
    v = torch.where(cand, values, torch.full_like(values, -1.0))
    best = v.amax(dim=1, keepdim=True)
    hit = cand & (v == best)
    g = values.shape[1]
    idx = g - 1 - torch.argmax(torch.flip(hit, dims=[1]).to(torch.uint8), dim=1)
    return idx, cand.any(dim=1)


def _match_image(ious: Tensor, gt_ignore: Tensor, gt_crowd: Tensor, thresholds: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy matching of one image at every OKS threshold (COCOeval.evaluateImg).

    Detections are in descending score order; ground truth is sorted non-ignored first.
    For each detection, in order: among the gts not yet taken (crowd gts never are) with
    OKS >= threshold, take the best non-ignored one; if there is none, the best ignored one
    (the detection is then ignored too).

    Args:
        ious: (D, G) OKS, detections sorted, gts sorted.
        gt_ignore: (G,) bool, False first.
        gt_crowd: (G,) bool.
        thresholds: (T,) float64.
    Returns:
        matched (T, D) bool, ignored (T, D) bool (matched to an ignored gt).
    """
    d, g = ious.shape
    t = thresholds.numel()
    matched = torch.zeros(t, d, dtype=torch.bool)
    ignored = torch.zeros(t, d, dtype=torch.bool)
    if d == 0 or g == 0:
        return matched, ignored
    taken = torch.zeros(t, g, dtype=torch.bool)
    thr = thresholds.clamp(max=1 - 1e-10)[:, None]                                     # (T, 1)
    rows = torch.arange(t)
    for i in range(d):
        ok = ~(taken & ~gt_crowd) & (ious[i][None, :] >= thr)                          # (T, G)
        vals = ious[i][None, :].expand(t, g)
        idx_r, any_r = _last_argmax(vals, ok & ~gt_ignore)
        idx_i, any_i = _last_argmax(vals, ok & gt_ignore)
        idx = torch.where(any_r, idx_r, idx_i)
        found = any_r | any_i
        matched[:, i] = found
        ignored[:, i] = found & gt_ignore[idx]
        taken[rows[found], idx[found]] = True
    return matched, ignored


def keypoint_ap(det_image_ids: Tensor, det_keypoints: Tensor, det_scores: Tensor,
                gt_image_ids: Tensor, gt_keypoints: Tensor, gt_areas: Tensor, gt_boxes: Tensor,
                gt_iscrowd: Tensor | None = None, gt_num_keypoints: Tensor | None = None, *,
                sigmas: Sequence[float] | Tensor = COCO17_SIGMAS, det_areas: Tensor | None = None,
                max_dets: int = 20) -> dict[str, Tensor]:
    """COCO keypoint AP, AP50, AP75, APM, APL: ``COCOeval(iouType="keypoints")`` on flat tensors.

    Replicates COCOeval: per image, detections sorted by score (stable, input order breaks ties),
    the top ``max_dets`` kept; gts ignored when crowd or with ``num_keypoints == 0``, and per
    area range when outside it; greedy matching per OKS threshold (``_match_image``); unmatched
    detections outside the area range ignored; then over all images, detections sorted by score
    (ties: image id, then per-image order), 101-point interpolated precision, averaged.
    A value is -1 when that area range has no non-ignored ground truth (as COCOeval).

    Args:
        det_image_ids: (D,) int image id of each detection.
        det_keypoints: (D, K, 2 or 3) detected keypoints (pixels; a third channel is ignored).
        det_scores: (D,) detection scores.
        gt_image_ids: (G,) int image id of each ground truth.
        gt_keypoints: (G, K, 3) x, y, v.
        gt_areas: (G,) COCO ``area``.
        gt_boxes: (G, 4) COCO ``bbox`` (x, y, w, h).
        gt_iscrowd: (G,) crowd flags; None = no crowd.
        gt_num_keypoints: (G,) COCO ``num_keypoints``; None = number of keypoints with v > 0.
        sigmas: (K,) OKS sigmas.
        det_areas: (D,) detection areas; None = ``keypoint_det_areas`` (what ``COCO.loadRes`` sets).
        max_dets: detections kept per image (COCO keypoints: 20).
    Returns:
        dict "AP", "AP50", "AP75", "APM", "APL" of float64 scalars (fractions in [0, 1]), on the
        device of ``det_scores``. The matching loop runs on the CPU.
    """
    out_device = det_scores.device
    cpu = torch.device("cpu")
    d_img = det_image_ids.to(cpu, torch.long).reshape(-1)
    d_kp = det_keypoints.to(cpu, torch.float64)
    d_score = det_scores.to(cpu, torch.float64).reshape(-1)
    d_area = keypoint_det_areas(d_kp) if det_areas is None else det_areas.to(cpu, torch.float64)
    g_img = gt_image_ids.to(cpu, torch.long).reshape(-1)
    g_kp = gt_keypoints.to(cpu, torch.float64)
    g_area = gt_areas.to(cpu, torch.float64).reshape(-1)
    g_box = gt_boxes.to(cpu, torch.float64).reshape(-1, 4)
    n_d, n_g = d_img.numel(), g_img.numel()
    g_crowd = torch.zeros(n_g, dtype=torch.bool) if gt_iscrowd is None else gt_iscrowd.to(cpu).reshape(-1).bool()
    g_nkp = (g_kp[..., 2] > 0).sum(dim=1) if gt_num_keypoints is None else gt_num_keypoints.to(cpu).reshape(-1)
    if not (d_kp.shape[0] == d_score.numel() == d_area.numel() == n_d):
        raise ValueError("keypoint_ap: det_image_ids, det_keypoints, det_scores (and det_areas) differ in length")
    if not (g_kp.shape[0] == g_area.numel() == g_box.shape[0] == g_crowd.numel() == g_nkp.numel() == n_g):
        raise ValueError("keypoint_ap: the gt_* inputs differ in length")
    g_ignore_base = g_crowd | (g_nkp == 0)

    # Detections: per image by descending score (stable), image order ascending.
    order = torch.sort(-d_score, stable=True).indices
    order = order[torch.sort(d_img[order], stable=True).indices]
    g_order = torch.sort(g_img, stable=True).indices
    d_ids_sorted, g_ids_sorted = d_img[order], g_img[g_order]
    images = torch.unique(torch.cat([d_img, g_img]))                                # sorted
    d_start = torch.searchsorted(d_ids_sorted, images).tolist()
    d_end = torch.searchsorted(d_ids_sorted, images, right=True).tolist()
    g_start = torch.searchsorted(g_ids_sorted, images).tolist()
    g_end = torch.searchsorted(g_ids_sorted, images, right=True).tolist()

    thresholds = oks_thresholds()
    ranges = list(AREA_RANGES.values())
    per_range: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in ranges]
    n_pos = [0 for _ in ranges]
    for k in range(images.numel()):
        di = order[d_start[k]:d_end[k]][:max_dets]
        gi = g_order[g_start[k]:g_end[k]]
        ious = oks(d_kp[di], g_kp[gi], g_area[gi], sigmas, g_box[gi]) if len(di) and len(gi) \
            else torch.zeros(len(di), len(gi), dtype=torch.float64)
        for a, (lo, hi) in enumerate(ranges):
            ign = g_ignore_base[gi] | (g_area[gi] < lo) | (g_area[gi] > hi)
            gsort = torch.sort(ign.to(torch.uint8), stable=True).indices
            matched, dt_ign = _match_image(ious[:, gsort], ign[gsort], g_crowd[gi][gsort], thresholds)
            outside = (d_area[di] < lo) | (d_area[di] > hi)
            dt_ign = dt_ign | (~matched & outside[None, :])
            per_range[a].append((d_score[di], matched, dt_ign))
            n_pos[a] += int((~ign).sum())

    rec_thr = recall_thresholds()
    precision = []                                                                   # per range: (T, R) or None
    for a in range(len(ranges)):
        if n_pos[a] == 0:
            precision.append(None)
            continue
        scores = torch.cat([s for s, _, _ in per_range[a]]) if per_range[a] else torch.zeros(0, dtype=torch.float64)
        t = thresholds.numel()
        if scores.numel() == 0:
            precision.append(torch.zeros(t, rec_thr.numel(), dtype=torch.float64))
            continue
        inds = torch.sort(-scores, stable=True).indices
        m = torch.cat([x for _, x, _ in per_range[a]], dim=1)[:, inds]
        ig = torch.cat([x for _, _, x in per_range[a]], dim=1)[:, inds]
        tp = torch.cumsum((m & ~ig).double(), dim=1)
        fp = torch.cumsum((~m & ~ig).double(), dim=1)
        rc = tp / n_pos[a]
        pr = tp / (fp + tp + _EPS)
        pr = torch.flip(torch.cummax(torch.flip(pr, dims=[1]), dim=1).values, dims=[1])  # non-increasing
        idx = torch.searchsorted(rc.contiguous(), rec_thr.expand(t, -1).contiguous(), side="left")
        nd = rc.shape[1]
        q = torch.where(idx < nd, pr.gather(1, idx.clamp(max=nd - 1)), torch.zeros((), dtype=torch.float64))
        precision.append(q)

    def mean_or_missing(p: Tensor | None) -> Tensor:
        return torch.tensor(-1.0, dtype=torch.float64) if p is None else p.mean()

    p_all, p_med, p_large = precision
    t50 = int(torch.nonzero(thresholds == 0.5)[0])
    t75 = int(torch.nonzero(thresholds == 0.75)[0])
    out = {
        "AP": mean_or_missing(p_all),
        "AP50": mean_or_missing(None if p_all is None else p_all[t50]),
        "AP75": mean_or_missing(None if p_all is None else p_all[t75]),
        "APM": mean_or_missing(p_med),
        "APL": mean_or_missing(p_large),
    }
    return {k: v.to(out_device) for k, v in out.items()}
