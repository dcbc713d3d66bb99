"""The HMR / IEF parameter regressor (Kanazawa et al. 2018, as SPIN and PyMAF use it) and the HMR baseline.

Parameter vector ("theta", 157 numbers), in the order the regressor reads and writes it:
    theta = [pose 6D (24 x 6 = 144), betas (10), weak-perspective camera (s, tx, ty) (3)]
The pose is the 6D representation of the 24 joint rotations (root first) in ``body.rotations``' layout.

Regressor (SPIN's ``hmr.py``, PyMAF's ``Regressor``; PyMAF paper A.1):
    x = [features, theta]  ->  FC 1024 -> dropout -> FC 1024 -> dropout -> residual (144 | 10 | 3)
    theta' = theta + residual
No non-linearity between the fully-connected layers: the public code of SPIN and PyMAF has none (fc1,
drop1, fc2, drop2, then the decoders), and this module does the same. The residual comes from three
separate output layers (pose, betas, camera), each initialised with Xavier-uniform weights of gain 0.01
and PyTorch's default bias, so the first estimates stay close to the mean parameters Theta_0.

Iterative Error Feedback (IEF): the same regressor applied ``n_iter`` times to the same features, each
time reading its previous estimate. Gradients flow through the iterations (SPIN / HMR do not detach), so a
loss on the final estimate alone (the Baseline's: ``lightning_modules.hmr``) also trains the earlier steps.
PyMAF's levels use one ``step`` each on a detached estimate instead (``nets.pymaf_net``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from body.rotations import rot6d_to_rotmat
from lightning_modules.prediction import Estimate, Prediction

NUM_JOINTS = 24
POSE_DIM = NUM_JOINTS * 6  # 144
BETAS_DIM = 10
CAM_DIM = 3
THETA_DIM = POSE_DIM + BETAS_DIM + CAM_DIM  # 157


# ----------------------------------------------------------------------------------------------
# Pure functions on the parameter vector
# ----------------------------------------------------------------------------------------------
def split_theta(theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 157) -> pose_6d (B, 144), betas (B, 10), cam (B, 3)."""
    if theta.dim() != 2 or theta.shape[-1] != THETA_DIM:
        raise ValueError(f"theta must have shape (B, {THETA_DIM}), got {tuple(theta.shape)}")
    return theta.split([POSE_DIM, BETAS_DIM, CAM_DIM], dim=-1)


def join_theta(pose_6d: Tensor, betas: Tensor, cam: Tensor) -> Tensor:
    """pose_6d (B, 144), betas (B, 10), cam (B, 3) -> theta (B, 157)."""
    return torch.cat([pose_6d, betas, cam], dim=-1)


def theta_to_estimate(theta: Tensor) -> Estimate:
    """(B, 157) -> its ``Estimate``: pose_6d (B, 144), pose_rotmat (B, 24, 3, 3) by Gram-Schmidt, betas
    (B, 10), cam (B, 3) weak-perspective (s, tx, ty)."""
    pose_6d, betas, cam = split_theta(theta)
    rotmat = rot6d_to_rotmat(pose_6d.reshape(-1, NUM_JOINTS, 6))
    return Estimate(pose_rotmat=rotmat, betas=betas, cam=cam, pose_6d=pose_6d)


def mean_theta_from_body(body_model: nn.Module) -> Tensor:
    """Theta_0 of a body model: its mean pose (144, 6D), mean shape (10) and mean camera (3) -> (157,)."""
    pose = body_model.mean_pose.reshape(-1)
    if pose.numel() != POSE_DIM:
        raise ValueError(f"the body model's mean pose must hold {POSE_DIM} numbers (24 joints in 6D), "
                         f"got {pose.numel()}")
    return join_theta(pose, body_model.mean_shape.reshape(-1), body_model.mean_cam.reshape(-1)).float()


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------
class IterativeRegressor(nn.Module):
    """HMR's regressor with its mean-parameter start and IEF loop.

    Args:
        in_features: feature length F (2048 for HMR; 5 x points for a PyMAF level). The first layer
            reads F + 157 numbers.
        n_iter: iterations of ``forward`` (3 for HMR; 1 for each PyMAF level).
        mean_theta: (157,) Theta_0, see ``mean_theta_from_body``. Stored as a (persistent) buffer, as
            SPIN / PyMAF store ``init_pose`` / ``init_shape`` / ``init_cam``.
        hidden: width of the two fully-connected layers (1024).
        dropout: dropout probability after each of them (0.5, ``nn.Dropout()``'s default as in SPIN).
    """

    def __init__(self, in_features: int, n_iter: int, mean_theta: Tensor, hidden: int = 1024,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if in_features < 1 or n_iter < 1:
            raise ValueError(f"in_features and n_iter must be positive, got {in_features}, {n_iter}")
        mean_theta = torch.as_tensor(mean_theta, dtype=torch.float32).reshape(-1)
        if mean_theta.numel() != THETA_DIM:
            raise ValueError(f"mean_theta must hold {THETA_DIM} numbers, got {mean_theta.numel()}")
        self.in_features = in_features
        self.n_iter = n_iter
        self.fc1 = nn.Linear(in_features + THETA_DIM, hidden)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout(dropout)
        self.decpose = nn.Linear(hidden, POSE_DIM)
        self.decshape = nn.Linear(hidden, BETAS_DIM)
        self.deccam = nn.Linear(hidden, CAM_DIM)
        for layer in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
        self.register_buffer("mean_theta", mean_theta.clone())

    def initial_theta(self, batch_size: int) -> Tensor:
        """Theta_0 repeated: (B, 157)."""
        return self.mean_theta.unsqueeze(0).expand(batch_size, -1)

    def residual(self, features: Tensor, theta: Tensor) -> Tensor:
        """One regressor pass. features (B, F), theta (B, 157) -> residual (B, 157)."""
        if features.dim() != 2 or features.shape[-1] != self.in_features:
            raise ValueError(f"features must have shape (B, {self.in_features}), got {tuple(features.shape)}")
        x = torch.cat([features, theta.to(features.dtype)], dim=-1)
        x = self.drop2(self.fc2(self.drop1(self.fc1(x))))
        return torch.cat([self.decpose(x), self.decshape(x), self.deccam(x)], dim=-1)

    def step(self, features: Tensor, theta: Tensor) -> Tensor:
        """theta + residual(features, theta): (B, F), (B, 157) -> (B, 157)."""
        return theta + self.residual(features, theta)

    def forward(self, features: Tensor, theta: Tensor | None = None, n_iter: int | None = None) -> list[Tensor]:
        """IEF: ``n_iter`` steps on the same features.

        Args:
            features: (B, F).
            theta: (B, 157) start; None = Theta_0.
            n_iter: None = the constructor's.
        Returns:
            list of n_iter (B, 157) estimates, the last one final.
        """
        theta = self.initial_theta(features.shape[0]) if theta is None else theta
        out = []
        for _ in range(self.n_iter if n_iter is None else n_iter):
            theta = self.step(features, theta)
            out.append(theta)
        return out


class HMRNet(nn.Module):
    """The papers' "Baseline": ResNet-50 global feature + 3 IEF iterations of one regressor, 6D pose, gradients
    through the iterations (SPIN's ``models/hmr.py``, which PyMAF's code uses as its ``hmr`` regressor).

    Args:
        backbone: a ``ResNet50`` (any module with ``pooled(image) -> (B, feature_dim)`` and ``feature_dim``).
        body_model: the ``BodyModel`` whose mean parameters start the regression.
        n_iter: IEF iterations (3).

    ``forward(image (B, 3, H, W))`` -> ``Prediction`` with ``iterations`` (n_iter estimates) and ``initial``
    (Theta_0).
    """

    def __init__(self, backbone: nn.Module, body_model: nn.Module, n_iter: int = 3) -> None:
        super().__init__()
        self.backbone = backbone
        self.regressor = IterativeRegressor(backbone.feature_dim, n_iter, mean_theta_from_body(body_model))

    def forward(self, image: Tensor) -> Prediction:
        features = self.backbone.pooled(image)
        thetas = self.regressor(features)
        return Prediction(iterations=[theta_to_estimate(t) for t in thetas],
                          initial=theta_to_estimate(self.regressor.initial_theta(image.shape[0])))
