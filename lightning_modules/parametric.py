"""Loss terms of parametric estimates (HMR, PyMAF and BiGraph's SMPL branch), summed over iterations.

SPIN's / PyMAF's set, per estimate: 2D keypoints (confidence-weighted MSE on the 49 keypoints, OpenPose
part weighted by ``openpose_weight``), 3D joints (hip-centred, on samples with ``has_3d``), SMPL pose
(MSE on rotation matrices) and betas (MSE) on samples with ``has_smpl``, and the camera-scale term
exp(-10 s)^2. PyMAF's code adds each level's terms (every level is supervised); HMR's IEF iterations are
supervised the same way here (``supervise="all"``) or only at the last one (``"last"``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import Tensor

from lightning_modules import losses as L

SUPERVISE = ("all", "last")


def parametric_terms(decode, batch: Mapping[str, Any], estimates: Sequence[Mapping[str, Tensor]],
                     openpose_weight: float = 0.0, supervise: str = "all") -> dict[str, Tensor]:
    """Unweighted terms ``keypoints_2d``, ``joints_3d``, ``pose``, ``betas``, ``cam``, summed over estimates.

    Args:
        decode: estimate -> decoded dict (``MeshRecoveryModule.decode``).
        batch: the batch (``keypoints_2d`` (B, 49, 3) normalised, ``joints_3d`` (B, 24, 4), ``pose``,
            ``betas``, ``has_smpl``, ``has_3d``).
        estimates: per-iteration estimates (pose_rotmat, betas, cam).
    """
    if supervise not in SUPERVISE:
        raise ValueError(f"supervise must be one of {SUPERVISE}, got {supervise!r}")
    chosen = list(estimates) if supervise == "all" else list(estimates)[-1:]
    terms: dict[str, Tensor] = {}
    for estimate in chosen:
        pred = decode(estimate)
        step = {
            "keypoints_2d": L.keypoint_2d_loss(pred["keypoints_2d"], batch["keypoints_2d"], openpose_weight=openpose_weight),
            "joints_3d": L.joints_3d_loss(pred["joints_3d"], batch["joints_3d"], batch["has_3d"]),
            "pose": L.smpl_pose_loss(pred["pose_rotmat"], batch["pose"], batch["has_smpl"]),
            "betas": L.smpl_betas_loss(pred["betas"], batch["betas"], batch["has_smpl"]),
            "cam": L.camera_scale_loss(pred["cam"]),
        }
        for name, value in step.items():
            terms[name] = terms[name] + value if name in terms else value
    return terms
