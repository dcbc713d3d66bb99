"""BiGraph's pieces around the graph blocks: fixed graphs, branch inputs, the fusion graph, heads.

Yu, van Baar, Chen, "Joint 3D Human Shape Recovery and Pose Estimation from a Single Image with Bilayer
Graph" (section 4.3). Features are channels-first (B, C, N) as in ``graph.py``; N_s = 12 skeleton joints
(``body.joints.BIGRAPH12_JOINT_NAMES``), N_m mesh vertices of the graph level (1,723).

Fixed graphs (pure functions, built once from the body model's reference mesh and joints):
- skeleton adjacency A_s: "the reciprocal of the Euclidean distance between two template joint vertices"
  for every pair of the 12 joints (the text; ``skeleton_edges: bones`` keeps only the bones its Fig. 1 draws). The diagonal (distance 0) is OUR CHOICE: each joint's self-loop weighs
  as much as its nearest joint; then rows are normalised (as the mesh adjacency is).
- fusion graph: A_f = RowNorm(A_fs (.) W_f) (eq. 5) on the N_m + N_s nodes, A_fs = 1 / |v_i - j_k| between
  every mesh vertex and joint in the T-pose and 0 between two vertices or two joints (those entries of W_f
  are 0 too); W_f learnable, initialised to 1 on joint-vertex pairs. Only the two off-diagonal blocks of
  A_f are non-zero, so they are what is stored and computed: joint -> vertex (N_s, N_m), each joint's row
  normalised over the vertices, and vertex -> joint (N_m, N_s), each vertex's row normalised over the
  joints, each with its own block of W_f (the paper's W_f is a full matrix; its other entries multiply
  zeros and would get no gradient). Distances are clamped at 1 mm.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from body.camera import normalized_to_pixels
from body.joints import BIGRAPH12_EDGES
from lightning_modules.nets.graph import GraphConvolution, GraphLinear, group_norm, norm_relu, row_normalize
from lightning_modules.nets.roi_align import boxes_from_centers, roi_align

FUSION_MODES = ("graph", "avg_pool", "max_pool")


# ----------------------------------------------------------------------------------------------
# Pure functions: fixed graphs and RoI geometry
# ----------------------------------------------------------------------------------------------
def reciprocal_distances(a: Tensor, b: Tensor, min_distance: float = 1e-3) -> Tensor:
    """1 / |a_i - b_j|, distances clamped below at ``min_distance``. a (N, 3), b (M, 3) -> (N, M)."""
    return 1.0 / torch.cdist(a, b).clamp_min(min_distance)


def skeleton_adjacency(joints: Tensor, edges: Sequence[tuple[int, int]] | None = None) -> Tensor:
    """Row-normalised reciprocal-distance adjacency of the joints (module docstring).

    Args:
        joints: (N, 3) template joints.
        edges: None = every pair of joints (the paper's text: "between two template joint vertices");
            a list of (i, j) pairs = only those, both ways (the bones Fig. 1 draws: ``BIGRAPH12_EDGES``).
    Returns:
        (N, N) with rows summing to 1; the self-loop of row i equals its largest off-diagonal weight.
    """
    n = joints.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=joints.device)
    weights = reciprocal_distances(joints, joints).masked_fill(eye, 0.0)
    if edges is not None:
        keep = torch.zeros(n, n, dtype=torch.bool, device=joints.device)
        i, j = (torch.tensor(side, dtype=torch.long, device=joints.device) for side in zip(*edges))
        keep[i, j] = keep[j, i] = True
        weights = weights.masked_fill(~keep, 0.0)
    weights = weights + torch.diag(weights.amax(dim=1))
    return row_normalize(weights)


def fusion_adjacency_blocks(fixed: Tensor, w_joint_vertex: Tensor, w_vertex_joint: Tensor) -> tuple[Tensor, Tensor]:
    """The non-zero blocks of A_f = RowNorm(A_fs (.) W_f) (eq. 5).

    Args:
        fixed: (N_s, N_m) A_fs between joints and vertices (reciprocal T-pose distances).
        w_joint_vertex: (N_s, N_m) learnable weights of the joint rows.
        w_vertex_joint: (N_m, N_s) learnable weights of the vertex rows.
    Returns:
        joint_vertex (N_s, N_m) and vertex_joint (N_m, N_s), each row summing to 1.
    """
    return row_normalize(fixed * w_joint_vertex), row_normalize(fixed.t() * w_vertex_joint)


def assemble_fusion_adjacency(joint_vertex: Tensor, vertex_joint: Tensor) -> Tensor:
    """The full A_f over [mesh vertices, joints] (the paper's N_m + N_s order). -> (N_m + N_s, N_m + N_s)."""
    n_s, n_m = joint_vertex.shape
    out = joint_vertex.new_zeros(n_m + n_s, n_m + n_s)
    out[:n_m, n_m:] = vertex_joint
    out[n_m:, :n_m] = joint_vertex
    return out


def mean_bone_length(points: Tensor, edges: Sequence[tuple[int, int]] = BIGRAPH12_EDGES) -> Tensor:
    """Mean length of the skeleton's bones per image. points (B, N, D) -> (B,)."""
    i, j = zip(*edges)
    return (points[:, list(i)] - points[:, list(j)]).norm(dim=-1).mean(dim=1)


def joint_boxes(joints_2d: Tensor, image_size: float, min_side: float = 4.0) -> tuple[Tensor, Tensor]:
    """BiGraph's RoIs: "a patch centered at the estimated 2D positions with the size of the average
    estimated bone length from the joints per image" (4.3.2), in input-image pixels.

    Args:
        joints_2d: (B, 12, 2) normalised crop coordinates in [-1, 1].
        image_size: crop side in pixels (224).
        min_side: lower bound of the side in pixels (keeps degenerate detections sampling something).
    Returns:
        boxes (B, 12, 4) as (x1, y1, x2, y2) pixels; side (B,) pixels.
    """
    centers = normalized_to_pixels(joints_2d, image_size)
    side = mean_bone_length(centers).clamp_min(min_side)
    return boxes_from_centers(centers, side), side


def normalized_template(vertices: Tensor) -> Tensor:
    """GraphCMR's vertex embedding: centred on the bounding-box centre and divided by the largest
    absolute coordinate. (N, 3) -> (N, 3) in [-1, 1]."""
    centre = 0.5 * (vertices.amax(dim=0) + vertices.amin(dim=0))
    centred = vertices - centre
    return centred / centred.abs().max()


# ----------------------------------------------------------------------------------------------
# Branch inputs
# ----------------------------------------------------------------------------------------------
class MeshInput(nn.Module):
    """Eq. (3): X_m^0 = F_m^0(v_i^T (+) x_g), one GraphLinear over [template xyz, global feature].

    The global feature is the same for every vertex, so W [v; g] + b is computed as
    W_v v + (W_g g) broadcast + b: the same function as ``GraphLinear`` on the concatenation (parameter
    names and initialisation included) without materialising (B, 3 + C_g, N).

    Args:
        template: (N, 3) vertex embedding (``normalized_template`` of the reference mesh).
        global_channels: C_g (2048).
        out_channels: C (512).
    """

    def __init__(self, template: Tensor, global_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("template", template.t().contiguous().float(), persistent=False)   # (3, N)
        self.linear = GraphLinear(3 + global_channels, out_channels)

    def image_term(self, global_feature: Tensor) -> Tensor:
        """The per-image term W_g g + b of X_m^0 (the rest, W_v v, depends on the vertex only): (B, C_g) -> (B, C)."""
        w, b = self.linear.W, self.linear.b
        return global_feature @ w[:, 3:].t() + b

    def forward(self, global_feature: Tensor) -> Tensor:
        """(B, C_g) -> (B, C, N)."""
        w = self.linear.W
        per_vertex = torch.matmul(w[:, :3], self.template.to(w.dtype))             # (C, N)
        return per_vertex[None] + self.image_term(global_feature)[:, :, None]

    def followed_by(self, linear: GraphLinear, image_term: Tensor) -> Tensor:
        """``linear`` applied to X_m^0 without X_m^0: W' (W_v v + q) + b' = (W' W_v) v + (W' q + b'), i.e. a
        (C', 3) by (3, N) product and a per-image term, not a (C', C) by (C, N) one per image.
        image_term (B, C) from ``image_term`` -> (B, C', N)."""
        w = linear.W
        per_vertex = torch.matmul(torch.matmul(w, self.linear.W[:, :3]), self.template.to(w.dtype))   # (C', N)
        return per_vertex[None] + (image_term @ w.t() + linear.b)[:, :, None]


class SkeletonInput(nn.Module):
    """Eq. (4): X_s^0 = F_s^0(s_i (+) RoI(s_i, x^1 .. x^K)), one GraphLinear over the 12 joints.

    ``localized=True``: RoI Align (aligned, adaptive sampling) of a square patch centred on each joint, side
    = the image's mean bone length (``joint_boxes``), from each stage in ``stages``, pooled to
    ``output_size`` x ``output_size`` bins (1: the patch's mean) and flattened. ``localized=False`` (Table 4,
    row B): the global feature replaces the patches for every joint.

    Args:
        feature_channels: channels of each backbone stage, e.g. {"c2": 256, ..., "c5": 2048}.
        stages: the stages sampled.
        global_channels: C_g.
        out_channels: C.
        image_size: crop side in pixels; each stage's spatial scale is its width / image_size.
        output_size, min_side: RoI Align bins per side; smallest patch side in pixels.
    """

    def __init__(self, feature_channels: dict[str, int], stages: Sequence[str], global_channels: int,
                 out_channels: int, image_size: int, localized: bool = True, output_size: int = 1,
                 min_side: float = 4.0) -> None:
        super().__init__()
        missing = [s for s in stages if s not in feature_channels]
        if localized and (missing or not stages):
            raise ValueError(f"RoI stages {list(stages)} must be non-empty and among {sorted(feature_channels)}")
        self.stages = tuple(stages)
        self.localized = localized
        self.image_size = image_size
        self.output_size = output_size
        self.min_side = min_side
        local = sum(feature_channels[s] for s in self.stages) * output_size ** 2
        self.linear = GraphLinear(2 + (local if localized else global_channels), out_channels)

    def patch_features(self, features: dict[str, Tensor], boxes: Tensor) -> Tensor:
        """RoI features of every stage: boxes (B, 12, 4) pixels -> (B, 12, sum_k C_k P^2)."""
        out = []
        for stage in self.stages:
            fmap = features[stage]
            patches = roi_align(fmap, boxes, self.output_size, fmap.shape[-1] / self.image_size,
                                sampling_ratio=-1, aligned=True)                   # (B, 12, C_k, P, P)
            out.append(patches.flatten(2))
        return torch.cat(out, dim=-1)

    def forward(self, features: dict[str, Tensor], global_feature: Tensor,
                joints_2d: Tensor) -> tuple[Tensor, Tensor | None]:
        """features {stage: (B, C_k, H_k, W_k)}, global_feature (B, C_g), joints_2d (B, 12, 2) in [-1, 1]
        -> X_s^0 (B, C, 12) and the RoI boxes (B, 12, 4) in pixels (None when not localized)."""
        if self.localized:
            boxes, _ = joint_boxes(joints_2d, self.image_size, self.min_side)
            image = self.patch_features(features, boxes)
        else:
            boxes = None
            image = global_feature[:, None].expand(-1, joints_2d.shape[1], -1)
        x = torch.cat([joints_2d.to(image.dtype), image], dim=-1)                   # (B, 12, D)
        return self.linear(x.transpose(1, 2)), boxes


# ----------------------------------------------------------------------------------------------
# Fusion graph
# ----------------------------------------------------------------------------------------------
class FusionAdjacency(nn.Module):
    """A_fs (fixed buffer) and W_f (learnable, init 1) between N_s joints and N_m vertices; ``forward()``
    gives the row-normalised blocks (joint_vertex (N_s, N_m), vertex_joint (N_m, N_s))."""

    def __init__(self, joints: Tensor, vertices: Tensor) -> None:
        super().__init__()
        fixed = reciprocal_distances(joints.float(), vertices.float())
        self.register_buffer("fixed", fixed, persistent=False)                      # A_fs (N_s, N_m)
        self.w_joint_vertex = nn.Parameter(torch.ones_like(fixed))
        self.w_vertex_joint = nn.Parameter(torch.ones_like(fixed.t()))

    def forward(self) -> tuple[Tensor, Tensor]:
        return fusion_adjacency_blocks(self.fixed, self.w_joint_vertex, self.w_vertex_joint)

    def matrix(self) -> Tensor:
        """The full A_f over [vertices, joints]: (N_m + N_s, N_m + N_s)."""
        return assemble_fusion_adjacency(*self())


class FusionBlock(nn.Module):
    """Fusion-GCN block: the GraphResBlock layer sequence (GN-ReLU, GraphLinear C -> C/2, GN-ReLU,
    graph conv C/2 -> C/2, GN-ReLU, GraphLinear C/2 -> C) on the fusion graph, returning the messages
    (f_s, f_m) that the bilayer block adds to the skeleton and mesh branches (Fig. 3).

    Our choices (paper silent): the fusion block returns its residual branch only; its identity path is
    the one the skeleton and mesh blocks already carry (adding the input a second time would double the
    features at every block). GroupNorm statistics are computed per node set (joints, vertices) with shared
    affine parameters, so 1,723 vertices do not set the normalisation of 12 joints.

    ``mode``: "graph" (A_f blocks), or Table 5's pooling fusions, "avg_pool" / "max_pool": every joint
    receives the same pooled mesh feature and every vertex the same pooled joint feature (the same
    convolution weight applied to the pooled feature).
    """

    def __init__(self, channels: int, mode: str = "graph", channels_per_group: int = 8) -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {mode!r}")
        mid = channels // 2
        self.mode = mode
        self.pre_norm = group_norm(channels, channels_per_group)
        self.lin1 = GraphLinear(channels, mid)
        self.norm1 = group_norm(mid, channels_per_group)
        self.conv = GraphConvolution(mid, mid, adjacency=None)
        self.norm2 = group_norm(mid, channels_per_group)
        self.lin2 = GraphLinear(mid, channels)

    def exchange(self, z_s: Tensor, z_m: Tensor, joint_vertex: Tensor | None,
                 vertex_joint: Tensor | None) -> tuple[Tensor, Tensor]:
        """The graph convolution across the two node sets: z_s (B, C', N_s), z_m (B, C', N_m) ->
        joints' input from the mesh (B, C', N_s), vertices' input from the joints (B, C', N_m)."""
        n_s, n_m = z_s.shape[-1], z_m.shape[-1]
        if self.mode == "graph":
            return self.conv(z_m, joint_vertex), self.conv(z_s, vertex_joint)
        pool = (lambda z: z.mean(-1, keepdim=True)) if self.mode == "avg_pool" else (lambda z: z.amax(-1, keepdim=True))
        broadcast_s, broadcast_m = z_s.new_ones(n_s, 1), z_m.new_ones(n_m, 1)      # one pooled node -> all
        return self.conv(pool(z_m), broadcast_s), self.conv(pool(z_s), broadcast_m)

    def forward(self, x_s: Tensor, x_m: Tensor, joint_vertex: Tensor | None = None,
                vertex_joint: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x_s (B, C, N_s), x_m (B, C, N_m) -> messages f_s (B, C, N_s), f_m (B, C, N_m)."""
        z_s = self.lin1(norm_relu(self.pre_norm, x_s))
        z_m = self.lin1(norm_relu(self.pre_norm, x_m))
        c_s, c_m = self.exchange(norm_relu(self.norm1, z_s), norm_relu(self.norm1, z_m), joint_vertex, vertex_joint)
        return self.lin2(norm_relu(self.norm2, c_s)), self.lin2(norm_relu(self.norm2, c_m))


# ----------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------
class CoordinateHead(nn.Module):
    """"Two graph linear layers to regress the skeleton vertices and joint vertices ... The first linear
    layer also follows a group normalization and ReLU" (4.3.4):
        out = base + lin2(GN-ReLU(lin1(GN-ReLU(x))))
    (the leading GN-ReLU normalises the un-normalised residual stream, as GraphCMR's heads do).
    ``base`` (N, 3) is OUR CHOICE: the reference (mean-parameter) body, so that the head predicts a
    deformation of the template and starts from it (GraphCMR regresses coordinates from zero).

    (B, C, N) -> (B, N, 3).
    """

    def __init__(self, in_channels: int, hidden_channels: int, base: Tensor, channels_per_group: int = 8) -> None:
        super().__init__()
        self.norm0 = group_norm(in_channels, channels_per_group)
        self.lin1 = GraphLinear(in_channels, hidden_channels)
        self.norm1 = group_norm(hidden_channels, channels_per_group)
        self.lin2 = GraphLinear(hidden_channels, base.shape[-1])
        self.register_buffer("base", base.float().clone(), persistent=False)          # (N, 3)

    def forward(self, x: Tensor) -> Tensor:
        y = self.lin2(norm_relu(self.norm1, self.lin1(norm_relu(self.norm0, x))))         # (B, 3, N)
        return self.base + y.transpose(1, 2)          # float32: bf16 would round metre coordinates to ~4 mm


class CameraHead(nn.Module):
    """Weak-perspective camera (s, tx, ty) "from the intermediate features of the Mesh-GCN with two graph
    linear layers" (4.4): the CoordinateHead layers with 3 outputs per vertex, averaged over the vertices,
    plus the body model's mean camera (our choice, as the coordinate heads start from the template).

    (B, C, N) -> (B, 3).
    """

    def __init__(self, in_channels: int, hidden_channels: int, mean_cam: Tensor, channels_per_group: int = 8) -> None:
        super().__init__()
        self.norm0 = group_norm(in_channels, channels_per_group)
        self.lin1 = GraphLinear(in_channels, hidden_channels)
        self.norm1 = group_norm(hidden_channels, channels_per_group)
        self.lin2 = GraphLinear(hidden_channels, 3)
        self.register_buffer("mean_cam", mean_cam.float().clone(), persistent=False)  # (3,)

    def forward(self, x: Tensor) -> Tensor:
        y = self.lin2(norm_relu(self.norm1, self.lin1(norm_relu(self.norm0, x))))         # (B, 3, N)
        return self.mean_cam + y.mean(dim=-1)         # float32 under autocast, as the coordinate heads
