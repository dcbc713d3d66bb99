"""SMPL parameters from a predicted mesh (GraphCMR's ``SMPLParamRegressor``; BiGraph 4.3.4: "we follow
[GraphCMR] to train a MLP module to regress pose and shape parameters for a SMPL model from the predicted
mesh").

    x = [predicted vertices, template embedding] per vertex, flattened          (B, N * 6)
    FC(N * 6 -> H) - BN - ReLU,  2 x residual FC blocks (FC-BN-ReLU-FC-BN, + x, ReLU),  FC(H -> 24 k + 10)
with H = 1024 (GraphCMR). The 24 rotations are projected onto SO(3) by one of
- "6d" (default, the suite's convention, README "Conventions"): k = 6 numbers per joint, Gram-Schmidt over the two
  columns (``body.rotations.rot6d_to_rotmat``, roma);
- "svd" (GraphCMR's): k = 9, the closest rotation in Frobenius norm (SVD with the determinant fixed to +1,
  ``roma.special_procrustes``).
Our choice (GraphCMR leaves the default PyTorch init): the last layer's bias starts at the body model's mean
parameters (mean pose in the chosen representation, mean betas), so an untrained regressor is near them.

Precision: the regressor runs in its parameters' dtype (float32) even under autocast (``forward``). Its
BatchNorm layers normalise features that differ little between the images of a batch (every predicted mesh
starts near the template),
so bf16 rounding dominates those differences. A training step of the test-width BiGraph at initialisation
under bf16 autocast had its pose and betas losses 8.8 % and 33 % off float32 with the regressor in bf16, 3.6 %
and 20 % with it in float32 (the rest: its BatchNorm amplifying the graph's own bf16 rounding); every other
term stayed within 0.1 %. The regressor is small (one (B, N * 6) x (N * 6, H) product): float32 costs little.
"""
from __future__ import annotations

import roma
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from body.rotations import rot6d_to_rotmat, rotmat_to_rot6d

ROTATIONS = {"6d": 6, "svd": 9}
NUM_JOINTS = 24
NUM_BETAS = 10


def rotmat_from_6d(x: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3) rotation matrices (Gram-Schmidt)."""
    return rot6d_to_rotmat(x)


def rotmat_from_svd(x: Tensor) -> Tensor:
    """(..., 9) row-major 3x3 -> (..., 3, 3): the closest rotation (special Procrustes, det +1)."""
    return roma.special_procrustes(x.reshape(*x.shape[:-1], 3, 3))


class FCResBlock(nn.Module):
    """x -> ReLU(x + BN(FC(ReLU(BN(FC(x)))))), GraphCMR's residual FC block. (B, H) -> (B, H)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(size, size), nn.BatchNorm1d(size)
        self.fc2, self.bn2 = nn.Linear(size, size), nn.BatchNorm1d(size)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.bn2(self.fc2(F.relu(self.bn1(self.fc1(x))))))


class SMPLParamRegressor(nn.Module):
    """Predicted mesh -> SMPL pose (rotation matrices) and betas (module docstring).

    Args:
        template: (N, 3) template embedding concatenated to the vertices (GraphCMR's ref_vertices).
        mean_pose: (24, 3, 3) rotation matrices of the mean pose; mean_shape: (10,).
        hidden: H; num_blocks: residual FC blocks; rotation: "6d" | "svd".
    BatchNorm1d as GraphCMR: training needs batches of 2 or more.
    """

    def __init__(self, template: Tensor, mean_pose: Tensor, mean_shape: Tensor, hidden: int = 1024,
                 num_blocks: int = 2, rotation: str = "6d") -> None:
        super().__init__()
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {sorted(ROTATIONS)}, got {rotation!r}")
        self.rotation = rotation
        self.register_buffer("template", template.float().clone(), persistent=False)   # (N, 3)
        k = ROTATIONS[rotation]
        self.fc_in, self.bn_in = nn.Linear(template.shape[0] * 6, hidden), nn.BatchNorm1d(hidden)
        self.blocks = nn.Sequential(*[FCResBlock(hidden) for _ in range(num_blocks)])
        self.fc_out = nn.Linear(hidden, NUM_JOINTS * k + NUM_BETAS)
        mean_rot = rotmat_to_rot6d(mean_pose.float()) if k == 6 else mean_pose.float().reshape(NUM_JOINTS, 9)
        with torch.no_grad():
            self.fc_out.bias.copy_(torch.cat([mean_rot.reshape(-1), mean_shape.float()]))

    def forward(self, vertices: Tensor) -> tuple[Tensor, Tensor]:
        """vertices (B, N, 3) -> pose_rotmat (B, 24, 3, 3), betas (B, 10), in the parameters' dtype (float32
        under autocast too; module docstring)."""
        b = vertices.shape[0]
        with torch.autocast(vertices.device.type, enabled=False):               # the module's own dtype
            vertices = vertices.to(self.fc_in.weight.dtype)
            template = self.template.to(vertices.dtype).expand(b, -1, -1)
            x = torch.cat([vertices, template], dim=-1).reshape(b, -1)              # (B, N * 6)
            x = self.blocks(F.relu(self.bn_in(self.fc_in(x))))
            out = self.fc_out(x)
        k = ROTATIONS[self.rotation]
        rot = out[:, :NUM_JOINTS * k].reshape(b, NUM_JOINTS, k)
        rotmat = rotmat_from_6d(rot) if k == 6 else rotmat_from_svd(rot)
        return rotmat, out[:, NUM_JOINTS * k:]
