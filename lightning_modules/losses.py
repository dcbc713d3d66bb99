"""Training losses of the suite as pure functions (SPIN / PyMAF / GraphCMR / BiGraph).

Facts follow the public trainers: SPIN ``train/trainer.py`` (``keypoint_loss``, ``keypoint_3d_loss``,
``shape_loss``, ``smpl_losses``; the camera term in ``train_step``), PyMAF ``core/trainer.py`` (the same
functions, applied to every regression iteration, weights 300 / 300 / 60 / 0.06 / 1 in its config) and
GraphCMR ``train/trainer.py`` (L1 shape loss on vertices); the focal regression loss is BiGraph's
(paper sec. 4.4, "Focal loss for regression"). Loss weights live in the models, not here.

Reductions are SPIN's: a plain mean over every element that enters the criterion, i.e.

* 2D keypoints: over B * K * 2, zero-confidence entries included (they contribute 0);
* masked losses: over n_valid * (elements per sample), where n_valid = number of samples whose
  ``has_*`` flag is set (SPIN first selects ``x[has == 1]`` then calls ``.mean()``).

Masking rule shared by every function with a ``valid`` / ``has_*`` argument (B,) bool or 0/1:

* the masked samples are replaced by zeros with ``torch.where`` *before* any arithmetic, so the value
  does not depend on them in any way (not even NaN or inf placeholders leak in), and the gradient they
  receive is exactly zero;
* with no valid sample the result is an exact 0.0 that is still connected to ``pred``'s graph (every
  parameter gets a zero gradient, as ``pred.sum() * 0`` would give, but without reading the masked
  values, so non-finite placeholders cannot turn it into NaN). DDP then sees every parameter used and
  the loss stays finite. No host synchronisation (no ``if valid.any()``) is needed.

``vertex_loss``, ``focal_regression_loss`` and ``masked_mean`` also take a per-point (B, N) mask; the
same rules then hold per point, and the mean is over the valid points only (a dropped point does not
count, unlike a zero confidence below).

Confidences (the last channel of SPIN-format keypoint targets) weight the per-element error; entries
with confidence 0 are also zeroed before the arithmetic (non-finite coordinates of missing keypoints
cannot leak in), while still counting in the mean as in SPIN.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from body.joints import LSP14_HIP_INDICES
from body.rotations import axis_angle_to_rotmat

CRITERIA = ("mse", "l1")
# SPIN-49 training keypoints: the first 25 are OpenPose's BODY_25, the last 24 the ground-truth joints.
SPIN49_NUM_KEYPOINTS = 49
SPIN49_NUM_OPENPOSE = 25
# BiGraph's threshold tau of the focal regression loss; the paper gives no value (see the function).
FOCAL_DEFAULT_CAP = 0.9


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def _valid_mask(valid: Tensor, batch: int, entries: int | None = None) -> Tensor:
    """(B,) bool/0-1 flag -> (B,) bool; checks the batch size.

    With ``entries`` = N given, a per-entry (B, N) mask is accepted as well."""
    if valid.shape != (batch,) and (entries is None or valid.shape != (batch, entries)):
        allowed = f"({batch},)" + ("" if entries is None else f" or ({batch}, {entries})")
        raise ValueError(f"valid flag must have shape {allowed}, got {tuple(valid.shape)}")
    return valid.bool() if valid.dtype != torch.bool else valid


def _broadcast(mask: Tensor, like: Tensor) -> Tensor:
    """(B,) or (B, N) mask -> shape broadcastable against ``like`` (B, N, ...)."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))


def zero_invalid(x: Tensor, valid: Tensor) -> Tensor:
    """Replace the samples (or entries) where ``valid`` is False by zeros.

    ``torch.where``, not a product: a NaN/inf in a masked entry does not survive, and its gradient is
    exactly zero. ``valid``: (B,) or (B, N) bool matching the leading dims of ``x``.
    """
    return torch.where(_broadcast(valid, x), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean over the valid samples' elements: sum(values[valid]) / (n_valid * numel per sample).

    Args:
        values: (B, ...) per-element losses.
        valid: (B,) bool or 0/1; or (B, N) per entry when values is (B, N, ...): then the mean is over
            the valid entries' elements, sum / (n_valid_entries * numel per entry).
    Returns:
        () scalar; exactly 0.0, graph-connected to ``values``, when no sample is valid. The masked
        samples' entries are dropped with ``torch.where`` (module docstring), so this is SPIN's
        ``criterion(x[has == 1], ...)`` mean without indexing. Only ``values`` itself is guarded:
        when it was computed from masked inputs holding NaN/inf, the NaN gradient of that
        computation still reaches those inputs, so pass them through ``zero_invalid`` first (as
        every loss here does).
    """
    mask = _valid_mask(valid, values.shape[0], values.shape[1] if values.dim() > 1 else None)
    per_sample = math.prod(values.shape[mask.dim():])
    total = zero_invalid(values, mask).sum()
    count = mask.sum().clamp_min(1) * per_sample
    return total / count.to(total.dtype)


def _criterion(diff: Tensor, criterion: str) -> Tensor:
    """Element-wise error of a difference: ``mse`` -> diff^2, ``l1`` -> |diff| (SPIN's MSELoss /
    GraphCMR's L1Loss with ``reduction='none'``)."""
    if criterion == "mse":
        return diff.square()
    if criterion == "l1":
        return diff.abs()
    raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")


def _check_pair(pred: Tensor, target: Tensor, channels: int, target_extra: int, name: str) -> None:
    if pred.dim() != 3 or pred.shape[-1] != channels:
        raise ValueError(f"{name}: pred must be (B, N, {channels}), got {tuple(pred.shape)}")
    want = (*pred.shape[:2], channels + target_extra)
    if tuple(target.shape) != want:
        raise ValueError(f"{name}: target must be {want}, got {tuple(target.shape)}")


# ----------------------------------------------------------------------------------------------
# Keypoints
# ----------------------------------------------------------------------------------------------
def keypoint_2d_loss(pred: Tensor, target: Tensor, openpose_weight: float = 0.0, gt_weight: float = 1.0,
                     criterion: str = "mse") -> Tensor:
    """Confidence-weighted 2D keypoint loss (SPIN / PyMAF ``keypoint_loss``).

    conf = target[..., 2]; for the SPIN-49 set (K == 49) conf[:, :25] *= openpose_weight (OpenPose
    detections) and conf[:, 25:] *= gt_weight (ground-truth joints); loss = mean(conf * err) with
    err = criterion(pred - target[..., :2]) per coordinate. PyMAF trains with openpose_weight 0,
    gt_weight 1 and MSE; BiGraph uses L1.

    For K != 49 (e.g. BiGraph's 12 skeleton joints, LSP-14) there is no OpenPose block: every keypoint
    is a ground-truth keypoint, weighted by ``gt_weight``, and ``openpose_weight`` is ignored.

    Masking: per keypoint by its confidence (no ``has_*`` flag; a sample without 2D keypoints has all
    confidences 0). The mean is SPIN's: over all B * K * 2 elements, zero-confidence ones included, so
    the loss of a batch depends on how many keypoints it lacks, exactly as in SPIN/PyMAF.

    Args:
        pred: (B, K, 2) predicted keypoints, normalised to [-1, 1] in the crop.
        target: (B, K, 3) ground truth (x, y, confidence), same normalisation.
        openpose_weight, gt_weight: multipliers of the two blocks' confidences.
        criterion: "mse" or "l1".
    Returns:
        () scalar.
    """
    _check_pair(pred, target, 2, 1, "keypoint_2d_loss")
    conf = target[..., 2]
    k = pred.shape[1]
    if k == SPIN49_NUM_KEYPOINTS:
        n = SPIN49_NUM_OPENPOSE
        block = torch.ones(k, dtype=conf.dtype, device=conf.device)
        block[:n] = openpose_weight
        block[n:] = gt_weight
        conf = conf * block
    else:
        conf = conf * gt_weight
    present = conf != 0
    err = _criterion(zero_invalid(pred, present) - zero_invalid(target[..., :2], present), criterion)
    return (zero_invalid(conf, present)[..., None] * err).mean()


def joints_3d_loss(pred: Tensor, target: Tensor, has_3d: Tensor, criterion: str = "mse",
                   pelvis: tuple[int, int] | None = LSP14_HIP_INDICES) -> Tensor:
    """Pelvis-aligned, confidence-weighted 3D joint loss (SPIN / PyMAF ``keypoint_3d_loss``).

    Both sets are centred on the mid-point of their two hip joints, then
    loss = mean(conf * criterion(pred_c - target_c)) over the valid samples' J * 3 elements.
    ``pred`` must already be the joints matching ``target`` (SPIN passes ``pred_joints[:, 25:]``: the 24
    ground-truth joints of the 49, hips at 2 and 3). For BiGraph's 12 joints pass ``pelvis=(6, 7)``;
    ``pelvis=None`` skips the alignment (targets already in the prediction's frame).

    Masking: samples with ``has_3d`` False are dropped (module docstring); within a valid sample a
    joint of confidence 0 contributes 0 but counts in the mean, as in SPIN. The pelvis uses the hip
    joints whatever their confidence (SPIN).

    Args:
        pred: (B, J, 3) predicted joints (metres).
        target: (B, J, 4) ground truth (x, y, z, confidence).
        has_3d: (B,) bool or 0/1.
        criterion: "mse" (SPIN, PyMAF) or "l1" (BiGraph, GraphCMR's L1 variants).
        pelvis: indices of the two hips in the J joints, or None.
    Returns:
        () scalar.
    """
    _check_pair(pred, target, 3, 1, "joints_3d_loss")
    mask = _valid_mask(has_3d, pred.shape[0])
    pred = zero_invalid(pred, mask)
    target = zero_invalid(target, mask)
    conf = target[..., 3:]
    present = conf[..., 0] != 0
    gt = target[..., :3]
    if pelvis is not None:
        i, j = pelvis
        pred = pred - 0.5 * (pred[:, i] + pred[:, j])[:, None]
        gt = gt - 0.5 * (gt[:, i] + gt[:, j])[:, None]
    err = _criterion(zero_invalid(pred, present) - zero_invalid(gt, present), criterion)
    return masked_mean(zero_invalid(conf, present) * err, mask)


# ----------------------------------------------------------------------------------------------
# SMPL parameters and camera
# ----------------------------------------------------------------------------------------------
def smpl_pose_loss(pred_rotmat: Tensor, gt_pose: Tensor, has_smpl: Tensor) -> Tensor:
    """MSE between predicted and ground-truth rotation matrices (SPIN / PyMAF ``smpl_losses``).

    The axis-angle ground truth is converted with Rodrigues' formula (``body.rotations``); the mean is
    over the valid samples' 24 * 3 * 3 matrix entries (SPIN's ``nn.MSELoss()``).

    Masking: samples with ``has_smpl`` False are dropped (module docstring).

    Args:
        pred_rotmat: (B, J, 3, 3) predicted rotations (J = 24 for SMPL: global orient + 23 body joints).
        gt_pose: (B, J * 3) or (B, J, 3) axis-angle ground truth.
        has_smpl: (B,) bool or 0/1.
    Returns:
        () scalar.
    """
    if pred_rotmat.dim() != 4 or pred_rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"pred_rotmat must be (B, J, 3, 3), got {tuple(pred_rotmat.shape)}")
    b, j = pred_rotmat.shape[:2]
    if gt_pose.numel() != b * j * 3 or gt_pose.shape[0] != b:
        raise ValueError(f"gt_pose must be ({b}, {j * 3}) or ({b}, {j}, 3), got {tuple(gt_pose.shape)}")
    mask = _valid_mask(has_smpl, b)
    gt_rotmat = axis_angle_to_rotmat(zero_invalid(gt_pose, mask).reshape(b, j, 3)).to(pred_rotmat.dtype)
    return masked_mean((zero_invalid(pred_rotmat, mask) - gt_rotmat).square(), mask)


def smpl_betas_loss(pred_betas: Tensor, gt_betas: Tensor, has_smpl: Tensor) -> Tensor:
    """MSE between predicted and ground-truth shape coefficients (SPIN / PyMAF ``smpl_losses``).

    Masking: samples with ``has_smpl`` False are dropped (module docstring); mean over the valid
    samples' coefficients.

    Args:
        pred_betas, gt_betas: (B, 10).
        has_smpl: (B,) bool or 0/1.
    Returns:
        () scalar.
    """
    if pred_betas.shape != gt_betas.shape or pred_betas.dim() != 2:
        raise ValueError(f"betas must both be (B, N), got {tuple(pred_betas.shape)} and {tuple(gt_betas.shape)}")
    mask = _valid_mask(has_smpl, pred_betas.shape[0])
    return masked_mean((zero_invalid(pred_betas, mask) - zero_invalid(gt_betas, mask)).square(), mask)


def camera_scale_loss(cam: Tensor) -> Tensor:
    """Keeps the weak-perspective scale positive: mean((exp(-10 s))^2) over the batch.

    SPIN / PyMAF ``train_step``: ``((torch.exp(-pred_camera[:, 0] * 10)) ** 2).mean()``, weight 1 in
    PyMAF (so the predicted depth 2 f / (224 s) stays positive). Unmasked: every sample has a camera.

    Args:
        cam: (B, 3) weak-perspective camera (s, tx, ty).
    Returns:
        () scalar.
    """
    if cam.dim() != 2 or cam.shape[-1] != 3:
        raise ValueError(f"cam must be (B, 3), got {tuple(cam.shape)}")
    return torch.exp(-10.0 * cam[:, 0]).square().mean()


# ----------------------------------------------------------------------------------------------
# Vertices and BiGraph's focal regression loss
# ----------------------------------------------------------------------------------------------
def vertex_loss(pred: Tensor, target: Tensor, valid: Tensor, criterion: str = "l1") -> Tensor:
    """Per-vertex shape loss (GraphCMR / SPIN ``shape_loss``; BiGraph's L_m and L_s).

    loss = mean(criterion(pred - target)) over the valid samples' V * 3 coordinates
    (``nn.L1Loss()`` on ``x[has_smpl == 1]``).

    Masking: samples (or, with a (B, V) mask, points) with ``valid`` False are dropped (module
    docstring).

    Args:
        pred, target: (B, V, 3) vertices (or joints), metres.
        valid: (B,) bool or 0/1 (SPIN: has_smpl); or (B, V) per point, then the mean is over the
            valid points' coordinates.
        criterion: "l1" (default, GraphCMR / BiGraph) or "mse".
    Returns:
        () scalar.
    """
    _check_pair(pred, target, pred.shape[-1], 0, "vertex_loss")
    mask = _valid_mask(valid, pred.shape[0], pred.shape[1])
    return masked_mean(_criterion(zero_invalid(pred, mask) - zero_invalid(target, mask), criterion), mask)


def focal_regression_term(l1: Tensor, alpha: float = 1.0, gamma: float = 1.0,
                          cap: float = FOCAL_DEFAULT_CAP) -> Tensor:
    """BiGraph's focal term of an L1 error, element-wise: -(alpha L)^gamma log(1 - min(alpha L, tau)).

    The paper prints ``log(1 - max(tau, alpha L))``; its text says tau < 1 "truncates alpha L with a
    maximum value to avoid unreasonably large loss when alpha L approaches 1", which is a cap:
    min(alpha L, tau). The factor (alpha L)^gamma is not capped.

    Behaviour with x = alpha L (gamma = 1 shown):
    * x -> 0: -x log(1 - x) = x^2 + x^3 / 2 + ..., a squared error for small errors (vs L1's x);
    * x < tau: value and slope grow without bound as x -> 1 would; the cap stops that at tau;
    * x >= tau: -x^gamma log(1 - tau), i.e. L1-like growth with slope -log(1 - tau) (gamma = 1);
      finite for every x, including x >= 1.
    The value is continuous at x = tau; the derivative is not: just below tau it is
    gamma tau^(gamma-1) (-log(1 - tau)) + tau^gamma / (1 - tau), just above it loses the second term
    (for tau = 0.9, gamma = 1: 11.30 -> 2.30 per unit of x).

    Args:
        l1: (...) non-negative L1 errors L.
        alpha: scale mapping L into (0, 1) (paper: 1).
        gamma: focusing exponent > 0 (paper: 1).
        cap: tau in (0, 1).
    Returns:
        (...) per-element loss, >= 0.
    """
    if not 0.0 < cap < 1.0:
        raise ValueError(f"cap (tau) must lie in (0, 1), got {cap}")
    if gamma <= 0.0 or alpha <= 0.0:
        raise ValueError(f"alpha and gamma must be > 0, got alpha={alpha}, gamma={gamma}")
    x = alpha * l1
    # Clamped away from 0 for the power only: d/dx x^gamma is infinite at 0 for gamma < 1, and
    # inf * 0 would be NaN; the term and its true derivative at 0 are both 0 for gamma > 0.
    tiny = torch.finfo(x.dtype).tiny
    return -x.clamp_min(tiny).pow(gamma) * torch.log1p(-x.clamp(max=cap))


def point_distances(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """(B, N) Euclidean distances |pred_i - target_i| of the points ``mask`` keeps (0 elsewhere).

    The gradient is finite everywhere: the squared distance is clamped at the dtype's smallest normal
    number before the square root, so a point with zero error (or a masked one) gets a zero gradient
    instead of the NaN of d sqrt(x) / dx at 0.
    """
    d = zero_invalid(pred, mask) - zero_invalid(target, mask)
    return d.square().sum(dim=-1).clamp_min(torch.finfo(d.dtype).tiny).sqrt()


def focal_regression_loss(pred: Tensor, target: Tensor, valid: Tensor, alpha: float = 1.0,
                          gamma: float = 1.0, cap: float = FOCAL_DEFAULT_CAP) -> Tensor:
    """BiGraph's focal loss for regression (paper sec. 4.4), on 3D points (its skeleton joints V_s).

        L_fl = -(alpha L)^gamma log(1 - min(alpha L, tau))        (``focal_regression_term``)

    OUR READING of "L is the L1 loss": L is the error of one point, its Euclidean distance to the target in
    metres, so that the per-point weighting does what the paper describes (down-weighting "well-regressed
    vertices" relative to badly regressed limbs). The per-point terms are averaged over the valid samples'
    N points. BiGraph trains with alpha = 1, gamma = 1 and coefficient 5.0 (the coefficient belongs to the
    model; the model adds this term to L_s, see lightning_modules/bigraph.py). tau: the paper gives no
    value; ``FOCAL_DEFAULT_CAP`` = 0.9 is our choice: at alpha = 1 it only bites on a joint 0.9 m off, an
    outlier, and caps the term's slope there at 11.3 (vs 2.3 above the cap).
    ``point_distance_loss`` is the same mean without the focal term (Table 5's "w/o FL").

    Masking: samples (or, with a (B, N) mask, points) with ``valid`` False are dropped (module
    docstring).

    Args:
        pred, target: (B, N, D) points (D = 3 for joints), metres.
        valid: (B,) bool or 0/1 (has_3d / has_smpl, whichever gives the target); or (B, N) per point
            (e.g. has_3d & joint confidence > 0), then the mean is over the valid points.
        alpha, gamma, cap: see ``focal_regression_term``.
    Returns:
        () scalar.
    """
    _check_pair(pred, target, pred.shape[-1], 0, "focal_regression_loss")
    mask = _valid_mask(valid, pred.shape[0], pred.shape[1])
    return masked_mean(focal_regression_term(point_distances(pred, target, mask), alpha, gamma, cap), mask)


def point_distance_loss(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean Euclidean distance of the valid points: the L that ``focal_regression_loss`` reshapes, as a
    loss of its own (BiGraph Table 5's "w/o FL" row: the focal term replaced by the plain error, same
    weight). pred, target (B, N, D); valid (B,) or (B, N) as ``focal_regression_loss``. Returns () scalar."""
    _check_pair(pred, target, pred.shape[-1], 0, "point_distance_loss")
    mask = _valid_mask(valid, pred.shape[0], pred.shape[1])
    return masked_mean(point_distances(pred, target, mask), mask)
