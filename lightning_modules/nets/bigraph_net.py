"""BiGraph's network (Yu, van Baar, Chen): a skeleton graph, a mesh graph and a learnable fusion graph.

    x_g = avgpool(c5)                                              global feature (B, 2048)
    X_m^0 = F_m^0(template xyz (+) x_g)                            mesh graph, 1,723 vertices, d_0 = 512 (eq. 3)
    X_s^0 = F_s^0(2D joint (+) RoI(joint, c2..c5))                 skeleton graph, 12 joints, d_0   (eq. 4)
    X_m, X_s <- GraphResBlock(d_0 -> C)(X^0) on each branch's graph    C = 256 (GraphCMR's reduction)
    5 x Bilayer-Graph block (Fig. 3):
        S = SkeletonBlock(X_s),  M = MeshBlock(X_m),  (f_s, f_m) = FusionBlock(X_s, X_m; A_f)
        X_s <- S + f_s,  X_m <- M + f_m
    skeleton_joints = joint head(X_s);  vertices_coarse = vertex head(X_m);  cam = camera head(X_m)
    vertices_np = U vertices_coarse (barycentric up-sampling to the full mesh)
    pose_rotmat, betas = SMPL regressor(vertices_coarse)
Widths. 4.3.1: the mesh graph module "is identical to graph layers of GraphCMR", and eq. (3)'s linear layer
reduces to d_0 ("the typical reduced dimension is 512"). GraphCMR's graph layers are exactly that:
GraphLinear(3 + 2048 -> 512), GraphResBlock(512 -> 256), then five GraphResBlock(256 -> 256) (its trained
setting, ``num_channels`` 256, ``num_layers`` 5). So the mesh branch here is GraphCMR's, with its five
256-channel blocks as the mesh side of the five Bilayer-Graph blocks; the skeleton branch mirrors it (its
eq. (4) input is d_0 wide too) with its own reduction block on A_s. ``input_channels == hidden_channels``
drops the reduction blocks.

Blocks: ``graph.GraphResBlock`` (pre-activation GraphCMR ordering, documented there); inputs, fusion graph
and heads: ``bigraph_parts``; SMPL regressor: ``smpl_regressor``. Every "our choice" is listed in those
module docstrings and in ``BiGraphConfig``.

Frames and units: all coordinates are in the body model's output frame (camera-aligned as SPIN's, see
``body.camera``), metres, relative to the model's origin (no translation). Two reference bodies, both with
the body model's mean shape:
- the rest body (zero pose, the T-pose of SMPL's own frame) gives what the paper takes from "the template":
  the vertex embedding (normalised as GraphCMR's ``ref_vertices``) and the T-pose distances of A_s and A_fs;
- the mean-parameter body (mean pose, i.e. the mean global orientation and mean body pose of the asset set)
  is the base the coordinate heads add to (our choice; the same body turned upright in the camera frame when
  the mean body pose is zero, as in the open asset set).
The 12 joints are the body model's BiGraph joints (``SPIN49_TO_BIGRAPH12``: LSP-style hips), the joints the
skeleton targets use.

Ablations (Tables 4 and 5) are ``BiGraphConfig`` switches; each changes what is built, so a switched-off part
has no parameters (and ``DistributedDataParallel`` sees no unused ones).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from body.joints import BIGRAPH12_EDGES, BIGRAPH12_JOINT_NAMES, SPIN49_TO_BIGRAPH12
from body.rotations import rot6d_to_rotmat
from lightning_modules.nets.bigraph_parts import (
    FUSION_MODES, CameraHead, CoordinateHead, FusionAdjacency, FusionBlock, MeshInput, SkeletonInput,
    normalized_template, skeleton_adjacency,
)
from lightning_modules.nets.graph import GraphResBlock, add_into, gather_matmul, graph_matmul, neighbour_table
from lightning_modules.nets.smpl_regressor import ROTATIONS, SMPLParamRegressor
from lightning_modules.prediction import Estimate, Prediction

FUSION_LAYERS = ("all", "first", "last")
SKELETON_EDGES = ("all", "bones")
RESNET50_CHANNELS = {"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}


@dataclass
class BiGraphConfig:
    """BiGraph network settings; defaults are the paper's where it gives them.

    num_blocks: Bilayer-Graph blocks ("we stack five").
    input_channels: d_0 of eqs. (3) and (4) ("the typical reduced dimension is 512").
    hidden_channels: features of the Bilayer-Graph blocks (GraphCMR's 256; module docstring); a
        GraphResBlock(input_channels -> hidden_channels) on each branch reduces X^0 to it.
    head_channels: hidden width of the two-layer heads (paper silent; GraphCMR's head starts at 64).
    width: multiplies input_channels, hidden_channels, head_channels and smpl_hidden (< 1 for small CPU tests).
    mesh_level: mesh hierarchy level of the mesh graph (1: 1,723 vertices, "one downsampling").
    feature_channels: channels of the backbone stages c2..c5 (ResNet-50's by default).
    global_stage: stage average-pooled into the global feature ("2048-D global feature vector").
    roi_stages: stages RoI-aligned per joint (paper: "from the k-th image feature map (K layers in total)",
        K unnamed; our choice: all four).
    roi_output_size: RoI Align bins per side, flattened (paper silent; 1 = the patch's mean feature).
    min_patch_size: smallest RoI side in pixels (guards degenerate detections; our choice).
    image_size: crop side in pixels (joints_2d in [-1, 1] are mapped to it).
    channels_per_group: GroupNorm channels per group (GraphCMR: 8).
    skeleton_graph / fusion_graph / localized_features: Table 4's switches. skeleton_graph=False is the
        mesh-only GraphCMR-like model (row A): no skeleton input, blocks, head or fusion, whatever the other
        two say. fusion_graph=False (row C): the two branches never exchange features.
        localized_features=False (row B): every joint gets the global feature instead of its RoI patches.
    fusion: Table 5's fusion variants: "graph" (A_f), "avg_pool", "max_pool" (no W_f). Ignored without
        fusion_graph.
    fusion_layers: "all" blocks, or only the "first" / "last" (Table 5's fusion-at-first / -last).
    shared_weights: the skeleton graph runs the mesh graph's GCN blocks, reduction block included (same
        weights, its own adjacency); the input layers (different input sizes) and heads (different tasks) stay separate.
    skeleton_edges: A_s over "all" pairs of joints (the text of section 4.3) or only the "bones" its Fig. 1
        draws (``body.joints.BIGRAPH12_EDGES``); reciprocal distances either way.
    smpl_hidden, smpl_blocks, rotation, detach_smpl_input: SMPL regressor width (GraphCMR: 1024), residual
        blocks (2), rotation projection ("6d" Gram-Schmidt, the suite's convention, or "svd" as GraphCMR),
        and whether it sees the mesh detached (GraphCMR trains it on the detached prediction).
    """

    num_blocks: int = 5
    input_channels: int = 512
    hidden_channels: int = 256
    head_channels: int = 64
    width: float = 1.0
    mesh_level: int = 1
    feature_channels: dict[str, int] = field(default_factory=lambda: dict(RESNET50_CHANNELS))
    global_stage: str = "c5"
    roi_stages: tuple[str, ...] = ("c2", "c3", "c4", "c5")
    roi_output_size: int = 1
    min_patch_size: float = 4.0
    image_size: int = 224
    channels_per_group: int = 8
    skeleton_graph: bool = True
    fusion_graph: bool = True
    localized_features: bool = True
    fusion: str = "graph"
    fusion_layers: str = "all"
    shared_weights: bool = False
    skeleton_edges: str = "all"
    smpl_hidden: int = 1024
    smpl_blocks: int = 2
    rotation: str = "6d"
    detach_smpl_input: bool = True

    def __post_init__(self) -> None:
        if self.num_blocks < 1 or self.width <= 0:
            raise ValueError(f"num_blocks must be >= 1 and width > 0, got {self.num_blocks}, {self.width}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.fusion_layers not in FUSION_LAYERS:
            raise ValueError(f"fusion_layers must be one of {FUSION_LAYERS}, got {self.fusion_layers!r}")
        if self.skeleton_edges not in SKELETON_EDGES:
            raise ValueError(f"skeleton_edges must be one of {SKELETON_EDGES}, got {self.skeleton_edges!r}")
        if self.rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {sorted(ROTATIONS)}, got {self.rotation!r}")
        if self.global_stage not in self.feature_channels:
            raise ValueError(f"global_stage {self.global_stage!r} is not in feature_channels")

    def scaled(self, channels: int) -> int:
        """channels x width, rounded to an even count >= 2 (blocks halve it)."""
        return max(2, 2 * round(channels * self.width / 2))

    @property
    def uses_fusion(self) -> bool:
        return self.skeleton_graph and self.fusion_graph

    def fusion_block_indices(self) -> list[int]:
        """Blocks that own a fusion block."""
        if not self.uses_fusion:
            return []
        return {"all": list(range(self.num_blocks)), "first": [0], "last": [self.num_blocks - 1]}[self.fusion_layers]


@dataclass
class BiGraphTemplate:
    """What the network takes from the body model. N_m graph vertices, N_s = 12 joints, mean shape.

    rest_vertices (N_m, 3), rest_joints (N_s, 3): zero pose; vertices (N_m, 3), joints (N_s, 3): mean pose;
    mesh_adjacency (N_m, N_m) sparse row-normalised with self-loops; upsample (V, N_m) sparse, None at
    level 0; mean_pose (24, 3, 3); mean_shape (10,); mean_cam (3,).
    """

    rest_vertices: Tensor
    rest_joints: Tensor
    vertices: Tensor
    joints: Tensor
    mesh_adjacency: Tensor
    upsample: Tensor | None
    mean_pose: Tensor
    mean_shape: Tensor
    mean_cam: Tensor


def _scipy_to_torch(m: sp.spmatrix) -> Tensor:
    coo = m.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data.astype(np.float32)), coo.shape,
                                   check_invariants=True).coalesce()


@torch.no_grad()
def bigraph_template(body_model, level: int = 1) -> BiGraphTemplate:
    """Read the reference body and graphs from a ``body.model.BodyModel`` (returned on CPU, float32)."""
    hierarchy = body_model.mesh_hierarchy
    if not 0 <= level < hierarchy.num_levels:
        raise ValueError(f"mesh_level must be in [0, {hierarchy.num_levels}), got {level}")
    mean_pose = rot6d_to_rotmat(body_model.mean_pose.reshape(24, 6))               # on the model's device
    mean_shape = body_model.mean_shape[None]
    rest_pose = torch.eye(3, dtype=mean_pose.dtype, device=mean_pose.device).expand(24, 3, 3)

    def body(pose: Tensor) -> tuple[Tensor, Tensor]:
        out = body_model(mean_shape, pose[None, 1:], pose[None, :1])
        vertices = hierarchy.downsample(out.vertices, 0, level)[0]
        return vertices.float().cpu(), out.keypoints49[0, SPIN49_TO_BIGRAPH12].float().cpu()

    rest_vertices, rest_joints = body(rest_pose)
    vertices, joints = body(mean_pose)
    up = None
    if level > 0:
        mats = hierarchy.arrays.up[:level]
        composed = mats[0]
        for m in mats[1:]:
            composed = composed @ m
        up = _scipy_to_torch(composed)
    return BiGraphTemplate(rest_vertices=rest_vertices, rest_joints=rest_joints, vertices=vertices, joints=joints,
                           mesh_adjacency=hierarchy.normalized_adjacency(level).cpu(), upsample=up,
                           mean_pose=mean_pose.float().cpu(), mean_shape=mean_shape[0].float().cpu(),
                           mean_cam=body_model.mean_cam.float().cpu())


class BiGraphNet(nn.Module):
    """BiGraph's bilayer graph network (module docstring).

    Args:
        config: ``BiGraphConfig``.
        body_model: a ``body.model.BodyModel``; read once at construction (``bigraph_template``), not kept.

    ``forward(features, joints_2d)``:
        features: {"c2".."c5": (B, C_k, H_k, W_k)} backbone maps of the 224 x 224 crop (computed outside
            so the backbone is shared with the LightningModule).
        joints_2d: (B, 12, 2) estimated (or ground-truth-mixed) 2D joints in [-1, 1] crop coordinates,
            BIGRAPH12 order; the RoI centres and the skeleton's positional input.
    Returns a dict of tensors (keys absent when the model has no such part):
        vertices (B, V, 3)               non-parametric mesh, up-sampled from the graph level
        vertices_coarse (B, N_m, 3)      graph-level mesh
        cam (B, 3)                       weak-perspective (s, tx, ty)
        pose_rotmat (B, 24, 3, 3), betas (B, 10)    SMPL regressor
        skeleton_joints (B, 12, 3)       skeleton branch                     [skeleton_graph]
        roi_boxes (B, 12, 4)             RoI boxes, input-image pixels       [skeleton_graph, localized]
        fusion_adjacency (12, N_m)       A_f's joint -> vertex block          [fusion "graph"]
        fusion_adjacency_vertex_joint (N_m, 12)  A_f's vertex -> joint block  [fusion "graph"]
    """

    def __init__(self, config: BiGraphConfig, body_model) -> None:
        super().__init__()
        self.config = cfg = config
        tpl = bigraph_template(body_model, cfg.mesh_level)
        d0, hidden = cfg.scaled(cfg.input_channels), cfg.scaled(cfg.hidden_channels)
        head = cfg.scaled(cfg.head_channels)
        cpg = cfg.channels_per_group
        global_channels = cfg.feature_channels[cfg.global_stage]
        embedding = normalized_template(tpl.rest_vertices)
        self.num_vertices = tpl.vertices.shape[0]

        self.mesh_input = MeshInput(embedding, global_channels, d0)
        self.mesh_reduce = GraphResBlock(d0, hidden, tpl.mesh_adjacency, cpg) if d0 != hidden else None
        self.mesh_blocks = nn.ModuleList(
            [GraphResBlock(hidden, hidden, tpl.mesh_adjacency, cpg) for _ in range(cfg.num_blocks)])
        self.vertex_head = CoordinateHead(hidden, head, tpl.vertices, cpg)
        self.camera_head = CameraHead(hidden, head, tpl.mean_cam, cpg)
        self.smpl_regressor = SMPLParamRegressor(embedding, tpl.mean_pose, tpl.mean_shape,
                                                 cfg.scaled(cfg.smpl_hidden), cfg.smpl_blocks, cfg.rotation)
        self.upsample_shape = None if tpl.upsample is None else tuple(tpl.upsample.shape)
        if tpl.upsample is not None:   # dense index/value buffers: DDP cannot broadcast sparse buffers
            self.register_buffer("upsample_indices", tpl.upsample.indices().clone(), persistent=False)
            self.register_buffer("upsample_values", tpl.upsample.values().clone(), persistent=False)
            neighbours, weights = neighbour_table(tpl.upsample.indices(), tpl.upsample.values(), self.upsample_shape[0])
            self.register_buffer("upsample_neighbours", neighbours, persistent=False)   # the export path (nets/graph.py)
            self.register_buffer("upsample_weights", weights, persistent=False)

        self.skeleton_input = self.skeleton_blocks = self.skeleton_reduce = None
        self.joint_head = self.fusion_adjacency = None
        self.fusion_blocks = nn.ModuleDict()
        if cfg.skeleton_graph:
            a_s = skeleton_adjacency(tpl.rest_joints, None if cfg.skeleton_edges == "all" else BIGRAPH12_EDGES)
            self.register_buffer("skeleton_adjacency", a_s, persistent=False)
            self.skeleton_input = SkeletonInput(
                cfg.feature_channels, cfg.roi_stages, global_channels, d0, cfg.image_size,
                cfg.localized_features, cfg.roi_output_size, cfg.min_patch_size)
            if not cfg.shared_weights:
                self.skeleton_reduce = GraphResBlock(d0, hidden, a_s, cpg) if d0 != hidden else None
                self.skeleton_blocks = nn.ModuleList(
                    [GraphResBlock(hidden, hidden, a_s, cpg) for _ in range(cfg.num_blocks)])
            self.joint_head = CoordinateHead(hidden, head, tpl.joints, cpg)
            for i in cfg.fusion_block_indices():
                self.fusion_blocks[str(i)] = FusionBlock(hidden, cfg.fusion, cpg)
            if cfg.uses_fusion and cfg.fusion == "graph":
                self.fusion_adjacency = FusionAdjacency(tpl.rest_joints, tpl.rest_vertices)

    @property
    def joint_names(self) -> list[str]:
        return list(BIGRAPH12_JOINT_NAMES)

    def upsample(self, vertices: Tensor) -> Tensor:
        """Graph-level to full-mesh vertices: (B, N_m, 3) -> (B, V, 3) (identity at mesh level 0)."""
        if self.upsample_shape is None:
            return vertices
        if torch.compiler.is_exporting():
            return gather_matmul(self.upsample_neighbours, self.upsample_weights, vertices.transpose(1, 2)).transpose(1, 2)
        u = torch.sparse_coo_tensor(self.upsample_indices, self.upsample_values, self.upsample_shape,
                                    is_coalesced=True, check_invariants=False)
        return graph_matmul(u, vertices.transpose(1, 2)).transpose(1, 2)

    def skeleton_reduction(self, x_s: Tensor) -> Tensor:
        """The skeleton's d_0 -> C reduction block (the mesh's on A_s when weights are shared; identity
        when d_0 == C)."""
        if self.mesh_reduce is None:
            return x_s
        if self.config.shared_weights:
            return self.mesh_reduce(x_s, self.skeleton_adjacency)
        return self.skeleton_reduce(x_s)

    def skeleton_block(self, i: int, x_s: Tensor) -> Tensor:
        """Block i of the skeleton graph (the mesh graph's block i on A_s when weights are shared)."""
        if self.skeleton_blocks is not None:
            return self.skeleton_blocks[i](x_s)
        return self.mesh_blocks[i](x_s, self.skeleton_adjacency)

    def forward(self, features: dict[str, Tensor], joints_2d: Tensor | None = None) -> Prediction:
        """features (``ResNet50.forward_features``) and joints_2d (B, 12, 2) normalised -> ``Prediction``
        (module docstring): one estimate (SMPL regressor, camera head), ``vertices_np``, ``vertices_coarse``,
        and where built ``skeleton_joints``, ``roi_boxes``, ``fusion_adjacency``."""
        cfg = self.config
        global_feature = features[cfg.global_stage].mean(dim=(2, 3))                 # (B, C_g)
        x_m = self.mesh_input(global_feature)                                        # (B, d_0, N_m)
        if self.mesh_reduce is not None:   # its skip layer on X_m^0's vertex and image terms (cheaper)
            skip = self.mesh_input.followed_by(self.mesh_reduce.skip, self.mesh_input.image_term(global_feature))
            x_m = self.mesh_reduce(x_m, shortcut=skip)                               # (B, C, N_m)
        x_s = boxes = None
        if self.skeleton_input is not None:
            if joints_2d is None or joints_2d.shape[1:] != (12, 2):
                raise ValueError(f"joints_2d must be (B, 12, 2), got "
                                 f"{None if joints_2d is None else tuple(joints_2d.shape)}")
            x_s, boxes = self.skeleton_input(features, global_feature, joints_2d)     # (B, d_0, 12)
            x_s = self.skeleton_reduction(x_s)                                       # (B, C, 12)
        a_jv = a_vj = None
        if self.fusion_adjacency is not None:
            a_jv, a_vj = self.fusion_adjacency()
        for i, mesh_block in enumerate(self.mesh_blocks):
            m = mesh_block(x_m)
            if x_s is not None:
                s = self.skeleton_block(i, x_s)
                if str(i) in self.fusion_blocks:
                    f_s, f_m = self.fusion_blocks[str(i)](x_s, x_m, a_jv, a_vj)
                    s, m = add_into(s, f_s), add_into(m, f_m)
                x_s = s
            x_m = m

        coarse = self.vertex_head(x_m)                                               # (B, N_m, 3)
        cam = self.camera_head(x_m)                                                  # (B, 3)
        pose_rotmat, betas = self.smpl_regressor(coarse.detach() if cfg.detach_smpl_input else coarse)
        return Prediction(iterations=[Estimate(pose_rotmat=pose_rotmat, betas=betas, cam=cam)],
                          vertices_np=self.upsample(coarse), vertices_coarse=coarse,
                          skeleton_joints=self.joint_head(x_s) if x_s is not None else None, roi_boxes=boxes,
                          fusion_adjacency=(a_jv, a_vj) if a_jv is not None else None)
