"""PyMAF (Zhang et al., ICCV 2021): ResNet-50, a deconvolution feature pyramid and a mesh alignment feedback loop.

    c5 (2048 x 7 x 7) -> deconv -> 14 x 14 -> deconv -> 28 x 28 -> deconv -> 56 x 56   (256 channels each;
                         ConvTranspose k4 s2 p1 without bias, BatchNorm, ReLU: PyMAF's RES_MODEL config)
    Theta_0 = mean parameters
    level t = 0 .. T-1:  X_t = 21 x 21 grid (t = 0) or the projection of the current mesh down-sampled twice
                         (431 vertices, t > 0); phi_t = PointFeatures_t(map_t, X_t)   (5 x |X_t| numbers)
                         Theta_{t+1} = Theta_t + R_t(phi_t, Theta_t), Theta_t DETACHED (PyMAF's code)
    auxiliary head on the 56 x 56 map (``iuv_head``): training only, unless the regressors read its output.

With T levels the maps are the last T of (14, 28, 56), so the last level always reads the 56 x 56 map
(PyMAF's code: with N_ITER = 1 the three deconvolutions form one block, with 2 the first two do).
Each level has its own point MLP and regressor (PyMAF's ``maf_extractor`` and ``regressor`` lists).

Ablation switches (the paper's Tables 4-6):
  feedback      "mesh_aligned" (PyMAF) | "grid" (every level samples the 21 x 21 grid of its map) |
                "global" (every level reads the average-pooled c5 feature, as HMR; with pyramid=False this is
                HMR's network, its estimates detached between iterations: Table 4's "Global" row, whereas the
                Baseline, ``nets.regressor.HMRNet``, keeps the gradient through them).
  pyramid       True: level t reads map t and has its own MLP and regressor. False (Table 4's "non-pyramidal"
                rows): every level reads the 56 x 56 map and ONE point MLP and ONE regressor are iterated (the
                table's "# Regressor = 1"); mesh-aligned features then start from the mean-pose mesh at t = 0.
                With "global" feedback the maps are unused and pyramid only sets the regressor count.
  aux           "iuv" (part index + U, V) | "part_seg" (part index, no U, V) | "none" (Table 5's supervision).
  regressor_input  what the point features sample (Table 5's "Input Type", ``nets.regressor_input``):
                "features" (PyMAF) | "part_seg" / "dense_corr" (the head's 56 x 56 predictions, at every level) |
                "masked_features" (each level's map times the predicted foreground probability). All but
                "features" need the head (and "dense_corr" its U, V), which then also runs in evaluation.
  init_features "grid" | "mesh" (Table 6): what level 0 samples under mesh-aligned feedback; "mesh" projects
                the mean-pose mesh with the mean camera. Default: "grid" with pyramid, "mesh" without.
  n_levels      T (1..3 with pyramid; any positive number of iterations without).

Mesh vertices for the feedback (``mesh_forward``): "downsampled" skins the 431 vertices directly
(``BodyModel.downsampled_skinning``, ``body/skinning.py``; equal to the full forward + down-sampling to <= 4e-7 m
in float32 and to rounding in float64, the paper's suggested speed-up);
"full" runs the body model on the whole mesh and down-samples, as PyMAF's code does. Either way the last
level's estimate needs no mesh here: the LightningModule runs the full body model on every estimate.

``forward(image (B, 3, H, W))`` returns a ``Prediction`` (``lightning_modules.prediction``) with
    iterations      [estimate] * T (last = final);  initial: the estimate of Theta_0,
    sampled_points  [(B, N_t, 2) normalised points, or None for global feedback] * T,
    iuv             IUVHead output at 56 x 56 (only in training mode and with aux != "none"; evaluation
                    returns none even where the regressors read it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from body.camera import project_to_normalized_crop
from body.rotations import rot6d_to_rotmat
from lightning_modules.nets.iuv_head import IUVHead
from lightning_modules.nets.mesh_aligned import GRID_SIZE, MLP_DIMS, PointFeatures, grid_points
from lightning_modules.nets.regressor import (
    IterativeRegressor, mean_theta_from_body, split_theta, theta_to_estimate,
)
from lightning_modules.nets.regressor_input import REGRESSOR_INPUTS, input_channels, sampled_maps
from lightning_modules.prediction import Prediction

FEEDBACKS = ("mesh_aligned", "grid", "global")
AUX = ("iuv", "part_seg", "none")
INIT_FEATURES = ("grid", "mesh")
MESH_FORWARDS = ("downsampled", "full")
NUM_DECONV = 3
MESH_LEVEL = 2  # hierarchy level of the sampled mesh (6890 -> 1723 -> 431)


def _is_k4_s2_p1(layer: nn.ConvTranspose2d) -> bool:
    return (layer.kernel_size == (4, 4) and layer.stride == (2, 2) and layer.padding == (1, 1)
            and layer.output_padding == (0, 0) and layer.dilation == (1, 1) and layer.groups == 1)


def subpixel_deconvolution(x: Tensor, weight: Tensor) -> Tensor:
    """``conv_transpose2d(x, weight, stride=2, padding=1)`` for a 4 x 4 kernel, as four 2 x 2 convolutions
    (one per output pixel parity) interleaved by ``pixel_shuffle``; same parameters, same numbers.

    Args: x (B, C_in, h, w); weight (C_in, C_out, 4, 4) (``ConvTranspose2d``'s layout). Returns (B, C_out, 2h, 2w).

    Output row 2i + a reads input rows i - 1 + a + t (t = 0, 1) with kernel row 3 - a - 2t (from
    2 m - 1 + k = 2 i + a), i.e. a valid 2 x 2 correlation of the input padded by 1 - a rows above and a below; the
    same for columns. Used while exporting to ONNX: ONNX Runtime's ConvTranspose (and the GEMM + col2im form) run
    PyMAF's pyramid 1.5-2x slower than its ordinary convolutions do the same multiply-adds.
    """
    kernel = weight.to(x.dtype).transpose(0, 1)                              # (C_out, C_in, 4, 4)
    parities = []
    for a in (0, 1):
        for b in (0, 1):
            rows, cols = [3 - a, 1 - a], [3 - b, 1 - b]                    # kernel taps t = 0, 1
            k = kernel[:, :, rows][:, :, :, cols]                          # (C_out, C_in, 2, 2)
            parities.append(F.conv2d(F.pad(x, (1 - b, b, 1 - a, a)), k))   # ONNX Runtime folds the pad into the conv
    stacked = torch.stack(parities, dim=2)                                 # (B, C_out, 4, h, w); 2 a + b
    return F.pixel_shuffle(stacked.flatten(1, 2), 2)


class Deconvolution(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters, same result) that, on CPU, runs as one matrix product and an
    overlap-add (``F.fold``) when its weight is much larger than its input.

    A transposed convolution is col2im(W^T x): W viewed as (C_in, C_out k k), x as (C_in, h w). oneDNN's
    transposed convolution re-lays out the whole weight at every call; for PyMAF's first deconvolution
    (2048 -> 256, k = 4: a 33.5 MB weight) on one 7 x 7 image that is most of its time. Measured on the
    2-core CPU: 16.3 ms with ``conv_transpose2d``, 6.9 ms as GEMM + fold at batch 1; 17.6 / 11.7 ms at batch 2;
    oneDNN is faster from batch 4 on, and for the 256-channel levels at any batch (their weight is 4 MB).
    Hence the rule: GEMM + fold on CPU while weight elements >= ``WEIGHT_TO_INPUT`` x input elements.
    """

    WEIGHT_TO_INPUT = 32

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if torch.compiler.is_exporting() and output_size is None and self.bias is None and _is_k4_s2_p1(self):
            return subpixel_deconvolution(x, self.weight)     # ONNX export: four convolutions (its docstring)
        gemm = (x.device.type == "cpu" and output_size is None and self.groups == 1 and x.dim() == 4
                and self.weight.numel() >= self.WEIGHT_TO_INPUT * x.numel())
        if not gemm:
            return super().forward(x, output_size)
        b, c_in, h, w = x.shape
        k, s, p, d, op = self.kernel_size, self.stride, self.padding, self.dilation, self.output_padding
        out_h = (h - 1) * s[0] - 2 * p[0] + d[0] * (k[0] - 1) + op[0] + 1
        out_w = (w - 1) * s[1] - 2 * p[1] + d[1] * (k[1] - 1) + op[1] + 1
        weight = self.weight.reshape(c_in, -1).t().to(x.dtype)                    # (C_out k k, C_in)
        columns = torch.matmul(weight, x.reshape(b, c_in, h * w))                # (B, C_out k k, h w)
        y = F.fold(columns, (out_h, out_w), kernel_size=k, dilation=d, padding=p, stride=s)
        return y if self.bias is None else y + self.bias.to(y.dtype)[:, None, None]


class DeconvPyramid(nn.Module):
    """Three deconvolution blocks (ConvTranspose2d k4 s2 p1 no bias, BatchNorm, ReLU), each doubling the size.

    ``forward(c5 (B, C_in, h, w))`` -> [(B, C, 2h, 2w), (B, C, 4h, 4w), (B, C, 8h, 8w)]; 14, 28, 56 for 7 x 7.
    """

    def __init__(self, in_channels: int, channels: int = 256, num_layers: int = NUM_DECONV) -> None:
        super().__init__()
        blocks = []
        for i in range(num_layers):
            blocks.append(nn.Sequential(
                Deconvolution(in_channels if i == 0 else channels, channels, kernel_size=4, stride=2,
                                   padding=1, output_padding=0, bias=False),
                nn.BatchNorm2d(channels, momentum=0.1),
                nn.ReLU(inplace=True),
            ))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps


@dataclass(frozen=True)
class LevelPlan:
    """What level t does: ``sampling`` "grid" | "mesh" | "global", the pyramid map it reads (index into
    ``DeconvPyramid``'s output, None for global) and the MLP / regressor it uses (``module``)."""

    sampling: str
    map_index: int | None
    module: int


def plan_levels(n_levels: int, feedback: str, pyramid: bool, init_features: str) -> tuple[LevelPlan, ...]:
    """The per-level plan of the switches (see the module docstring)."""
    plans = []
    for t in range(n_levels):
        if feedback == "global":
            sampling = "global"
        elif feedback == "grid":
            sampling = "grid"
        else:
            sampling = "mesh" if (t > 0 or init_features == "mesh") else "grid"
        map_index = None if sampling == "global" else (NUM_DECONV - n_levels + t if pyramid else NUM_DECONV - 1)
        plans.append(LevelPlan(sampling, map_index, t if pyramid else 0))
    return tuple(plans)


def _resolve_init_features(feedback: str, pyramid: bool, init_features: str | None) -> str:
    if feedback == "mesh_aligned":
        init = init_features or ("grid" if pyramid else "mesh")
        if init not in INIT_FEATURES:
            raise ValueError(f"init_features must be one of {INIT_FEATURES}, got {init_features!r}")
        if not pyramid and init == "grid":
            raise ValueError("pyramid=False iterates one regressor, so every level needs the same number of "
                             "points: use init_features='mesh' with mesh-aligned feedback (the paper's setting)")
        return init
    if init_features not in (None, "grid"):
        raise ValueError(f"init_features={init_features!r} needs feedback='mesh_aligned' (got {feedback!r})")
    return "grid"


def _check_regressor_input(regressor_input: str, feedback: str, aux: str) -> None:
    if regressor_input not in REGRESSOR_INPUTS:
        raise ValueError(f"regressor_input must be one of {REGRESSOR_INPUTS}, got {regressor_input!r}")
    if regressor_input == "features":
        return
    if feedback == "global":
        raise ValueError(f"regressor_input={regressor_input!r} samples points: it needs feedback 'grid' or "
                         "'mesh_aligned', not 'global'")
    if aux == "none" or (regressor_input == "dense_corr" and aux != "iuv"):
        raise ValueError(f"regressor_input={regressor_input!r} reads the auxiliary head's predictions: it needs "
                         f"aux={'iuv' if regressor_input == 'dense_corr' else 'iuv or part_seg'}, got {aux!r}")


class PyMAFNet(nn.Module):
    """PyMAF's network with the paper's ablation switches.

    Args:
        backbone: a ``ResNet50`` (``forward_features(image)["c5"]``, ``feature_dim``).
        body_model: the ``BodyModel``: mean parameters, mesh hierarchy, and the mesh of each estimate.
        n_levels, feedback, pyramid, aux, init_features, regressor_input: see the module docstring.
        deconv_channels: C of the pyramid (256; smaller for CPU tests).
        mlp_dims: point MLP sizes after the C input (128, 64, 5).
        grid_size: grid points per side (21).
        mesh_forward: "downsampled" | "full" (see the module docstring).
    """

    def __init__(self, backbone: nn.Module, body_model: nn.Module, n_levels: int = 3,
                 feedback: str = "mesh_aligned", pyramid: bool = True, aux: str = "iuv",
                 init_features: str | None = None, deconv_channels: int = 256,
                 mlp_dims: Sequence[int] = MLP_DIMS, grid_size: int = GRID_SIZE,
                 mesh_forward: str = "downsampled", regressor_input: str = "features") -> None:
        super().__init__()
        if feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")
        if aux not in AUX:
            raise ValueError(f"aux must be one of {AUX}, got {aux!r}")
        if mesh_forward not in MESH_FORWARDS:
            raise ValueError(f"mesh_forward must be one of {MESH_FORWARDS}, got {mesh_forward!r}")
        max_levels = NUM_DECONV if pyramid else None
        if n_levels < 1 or (max_levels is not None and n_levels > max_levels):
            raise ValueError(f"n_levels must be in 1..{NUM_DECONV} with the pyramid (>= 1 without), got {n_levels}")
        _check_regressor_input(regressor_input, feedback, aux)
        self.feedback, self.pyramid, self.aux, self.n_levels = feedback, pyramid, aux, n_levels
        self.regressor_input = regressor_input
        self.init_features = _resolve_init_features(feedback, pyramid, init_features)
        self.mesh_forward = mesh_forward
        self.plan = plan_levels(n_levels, feedback, pyramid, self.init_features)

        self.backbone = backbone
        uses_maps = feedback != "global" or aux != "none"
        self.deconv = DeconvPyramid(backbone.feature_dim, deconv_channels) if uses_maps else None
        self.iuv_head = None if aux == "none" else IUVHead(deconv_channels, with_uv=aux == "iuv")

        self.register_buffer("grid", grid_points(grid_size), persistent=False)
        self.mesh_body = self.body_model = None
        if feedback == "mesh_aligned":
            if mesh_forward == "downsampled":
                self.mesh_body = body_model.downsampled_skinning(MESH_LEVEL)
            else:
                self.body_model = body_model
        n_mesh_points = body_model.mesh_hierarchy.num_vertices[MESH_LEVEL]

        mean_theta = mean_theta_from_body(body_model)
        point_channels = input_channels(regressor_input, deconv_channels, self.iuv_head)
        n_modules = n_levels if pyramid else 1
        self.point_features = nn.ModuleList()
        self.regressors = nn.ModuleList()
        for m in range(n_modules):
            sampling = self.plan[m].sampling if pyramid else self.plan[-1].sampling
            if sampling == "global":
                in_features = backbone.feature_dim
            else:
                self.point_features.append(PointFeatures(point_channels, mlp_dims))
                n_points = grid_size ** 2 if sampling == "grid" else n_mesh_points
                in_features = int(mlp_dims[-1]) * n_points
            self.regressors.append(IterativeRegressor(in_features, 1, mean_theta))

    def pyramid_maps(self, image: Tensor) -> list[Tensor]:
        """(B, 3, H, W) -> the three deconvolution maps [(B, C, H/16, W/16), (B, C, H/8, W/8), (B, C, H/4, W/4)]."""
        if self.deconv is None:
            raise RuntimeError("this PyMAFNet has no feature pyramid (global feedback without auxiliary head)")
        return self.deconv(self.backbone.forward_features(image)["c5"])

    def mesh_points(self, theta: Tensor) -> Tensor:
        """Projected vertices of the twice down-sampled mesh of an estimate: (B, 157) -> (B, V_2, 2) normalised."""
        pose_6d, betas, cam = split_theta(theta)
        rotmat = rot6d_to_rotmat(pose_6d.reshape(-1, 24, 6))
        if self.mesh_body is not None:
            vertices = self.mesh_body(betas, rotmat)
        elif self.body_model is not None:
            full = self.body_model(betas, rotmat[:, 1:], rotmat[:, :1]).vertices
            vertices = self.body_model.mesh_hierarchy.downsample(full, 0, MESH_LEVEL)
        else:
            raise RuntimeError("mesh points need feedback='mesh_aligned'")
        return project_to_normalized_crop(vertices, cam)

    def forward(self, image: Tensor) -> Prediction:
        b = image.shape[0]
        c5 = self.backbone.forward_features(image)["c5"]
        run_head = self.iuv_head is not None and (self.training or self.regressor_input != "features")
        maps = self.deconv(c5) if self.deconv is not None and (self.feedback != "global" or run_head) else None
        iuv = self.iuv_head(maps[-1]) if run_head else None
        pooled = c5.mean(dim=(2, 3)) if self.feedback == "global" else None
        inputs = {} if pooled is not None else sampled_maps(
            self.regressor_input, maps, iuv, {level.map_index for level in self.plan})

        theta = self.regressors[0].initial_theta(b)
        initial, iterations, sampled = theta_to_estimate(theta), [], []
        for level in self.plan:
            theta_in = theta.detach()  # each level's estimate feeds the next without gradient
            if level.sampling == "global":
                points, features = None, pooled
            else:
                points = self.grid.expand(b, -1, -1) if level.sampling == "grid" else self.mesh_points(theta_in)
                features = self.point_features[level.module](inputs[level.map_index], points)
            theta = self.regressors[level.module].step(features, theta_in)
            iterations.append(theta_to_estimate(theta))
            sampled.append(points)
        return Prediction(iterations=iterations, initial=initial, sampled_points=sampled,
                          iuv=iuv if self.training else None)
