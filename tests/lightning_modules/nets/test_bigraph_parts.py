"""BiGraph's fixed graphs, RoI geometry, branch inputs, fusion block and heads."""
from __future__ import annotations

import pytest
import torch

from body.joints import BIGRAPH12_EDGES
from lightning_modules.nets.bigraph_parts import (
    CameraHead, CoordinateHead, FusionAdjacency, FusionBlock, MeshInput, SkeletonInput,
    assemble_fusion_adjacency, fusion_adjacency_blocks, joint_boxes, mean_bone_length, normalized_template,
    reciprocal_distances, skeleton_adjacency,
)
from lightning_modules.nets.graph import GraphLinear


def test_reciprocal_distances_and_clamp():
    a = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(reciprocal_distances(a, b),
                               torch.tensor([[0.5, 1e3], [1 / 5 ** 0.5, 1.0]]))


def test_skeleton_adjacency_reciprocal_rows_and_self_loops():
    gen = torch.Generator().manual_seed(0)
    joints = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    a = skeleton_adjacency(joints)
    torch.testing.assert_close(a.sum(1), torch.ones(12, dtype=torch.float64))
    d = torch.cdist(joints, joints)
    for i in range(12):
        others = [j for j in range(12) if j != i]
        # Off-diagonal weights are proportional to 1 / distance within a row ...
        ratio = a[i, others] * d[i, others]
        torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))
        # ... and the self-loop equals the nearest joint's weight.
        torch.testing.assert_close(a[i, i], a[i, others].max())


def test_skeleton_adjacency_on_bones_only():
    """skeleton_edges=bones: non-zero weights exactly on the bones (both ways) and the diagonal, each
    bone's weight proportional to 1 / its length within a row."""
    from body.joints import BIGRAPH12_EDGES

    gen = torch.Generator().manual_seed(0)
    joints = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    a = skeleton_adjacency(joints, BIGRAPH12_EDGES)
    torch.testing.assert_close(a.sum(1), torch.ones(12, dtype=torch.float64))
    want = torch.eye(12, dtype=torch.bool)
    for i, j in BIGRAPH12_EDGES:
        want[i, j] = want[j, i] = True
    assert torch.equal(a != 0, want)
    d = torch.cdist(joints, joints)
    for i in range(12):
        nbrs = [j for j in range(12) if want[i, j] and j != i]
        ratio = a[i, nbrs] * d[i, nbrs]
        torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))
        torch.testing.assert_close(a[i, i], a[i, nbrs].max())


def test_fusion_adjacency_blocks_rows_sum_to_one_and_assembly():
    gen = torch.Generator().manual_seed(1)
    fixed = torch.rand(3, 5, generator=gen) + 0.1
    w_jv, w_vj = torch.rand(3, 5, generator=gen) + 0.5, torch.rand(5, 3, generator=gen) + 0.5
    jv, vj = fusion_adjacency_blocks(fixed, w_jv, w_vj)
    torch.testing.assert_close(jv.sum(1), torch.ones(3))
    torch.testing.assert_close(vj.sum(1), torch.ones(5))
    torch.testing.assert_close(jv, fixed * w_jv / (fixed * w_jv).sum(1, keepdim=True))
    full = assemble_fusion_adjacency(jv, vj)       # [5 vertices, 3 joints]
    assert full.shape == (8, 8)
    assert (full[:5, :5] == 0).all() and (full[5:, 5:] == 0).all()
    torch.testing.assert_close(full[:5, 5:], vj)
    torch.testing.assert_close(full[5:, :5], jv)
    torch.testing.assert_close(full.sum(1), torch.ones(8))


def test_fusion_adjacency_module_initial_state():
    gen = torch.Generator().manual_seed(2)
    joints, verts = torch.randn(4, 3, generator=gen), torch.randn(9, 3, generator=gen)
    module = FusionAdjacency(joints, verts)
    assert (module.w_joint_vertex == 1).all() and (module.w_vertex_joint == 1).all()
    jv, vj = module()
    inv = 1 / torch.cdist(joints, verts)
    torch.testing.assert_close(jv, inv / inv.sum(1, keepdim=True))
    torch.testing.assert_close(vj, inv.t() / inv.t().sum(1, keepdim=True))
    assert set(module.state_dict()) == {"w_joint_vertex", "w_vertex_joint"}


def test_mean_bone_length_and_boxes():
    joints = torch.zeros(2, 12, 2)
    joints[0, :, 0] = torch.arange(12) * 0.1 - 0.5           # spread along x
    joints[1] = 0.25                                         # degenerate: all on one point
    boxes, side = joint_boxes(joints, 224, min_side=4.0)
    px = (joints + 1) * 112
    expected0 = torch.stack([(px[0, i] - px[0, j]).norm() for i, j in BIGRAPH12_EDGES]).mean()
    torch.testing.assert_close(side, torch.stack([expected0, torch.tensor(4.0)]))
    torch.testing.assert_close(mean_bone_length(px)[0], expected0)
    torch.testing.assert_close((boxes[..., :2] + boxes[..., 2:]) / 2, px)    # centred on the joints
    torch.testing.assert_close(boxes[..., 2] - boxes[..., 0], side[:, None].expand(2, 12))


def test_normalized_template_range():
    v = torch.tensor([[0.0, -1.0, 0.2], [0.5, 0.7, 0.0], [-0.3, 0.1, 0.1]])
    n = normalized_template(v)
    assert n.abs().max() == 1.0
    torch.testing.assert_close(0.5 * (n.amax(0) + n.amin(0)), torch.zeros(3))


def test_mesh_input_equals_graph_linear_on_concatenation():
    gen = torch.Generator().manual_seed(3)
    template = torch.randn(11, 3, generator=gen)
    module = MeshInput(template, 20, 8)
    with torch.no_grad():
        module.linear.W.normal_(generator=gen)
        module.linear.b.normal_(generator=gen)
    g = torch.randn(2, 20, generator=gen)
    concat = torch.cat([template.t()[None].expand(2, -1, -1), g[:, :, None].expand(-1, -1, 11)], dim=1)
    torch.testing.assert_close(module(g), module.linear(concat), rtol=1e-5, atol=1e-5)
    assert isinstance(module.linear, GraphLinear) and module.linear.in_channels == 23
    # A layer after it, from the two parts (how the reduction block's skip runs): equals the layer on X_m^0.
    after = GraphLinear(8, 6)
    with torch.no_grad():
        after.W.normal_(generator=gen)
        after.b.normal_(generator=gen)
    torch.testing.assert_close(module.followed_by(after, module.image_term(g)), after(module(g)), rtol=1e-5, atol=1e-5)


def _features(batch, channels, gen):
    sizes = {"c2": 56, "c3": 28, "c4": 14, "c5": 7}
    return {k: torch.randn(batch, c, sizes[k], sizes[k], generator=gen) for k, c in channels.items()}


def test_skeleton_input_dimensions_and_patch_mean():
    gen = torch.Generator().manual_seed(4)
    channels = {"c2": 3, "c3": 4, "c4": 5, "c5": 6}
    feats = _features(2, channels, gen)
    joints = torch.rand(2, 12, 2, generator=gen) - 0.5
    local = SkeletonInput(channels, ("c2", "c5"), 6, 8, 224, localized=True, output_size=2)
    assert local.linear.in_channels == 2 + (3 + 6) * 4
    x, boxes = local(feats, feats["c5"].mean((2, 3)), joints)
    assert x.shape == (2, 8, 12) and boxes.shape == (2, 12, 4)
    glob = SkeletonInput(channels, ("c2",), 6, 8, 224, localized=False)
    assert glob.linear.in_channels == 2 + 6
    x, boxes = glob(feats, feats["c5"].mean((2, 3)), joints)
    assert x.shape == (2, 8, 12) and boxes is None
    # output_size 1 averages the patch: a constant map gives the constant.
    const = {k: torch.full_like(v, 3.0) for k, v in feats.items()}
    patches = SkeletonInput(channels, ("c3",), 6, 8, 224).patch_features(const, joint_boxes(joints, 224)[0])
    torch.testing.assert_close(patches, torch.full((2, 12, 4), 3.0))


def test_skeleton_input_rejects_unknown_stage():
    with pytest.raises(ValueError, match="RoI stages"):
        SkeletonInput({"c5": 4}, ("c2",), 4, 8, 224)


@pytest.mark.parametrize("mode", ["avg_pool", "max_pool"])
def test_pooling_fusion_sends_one_message_to_all_nodes(mode):
    gen = torch.Generator().manual_seed(5)
    block = FusionBlock(16, mode)
    z_s, z_m = torch.randn(2, 8, 12, generator=gen), torch.randn(2, 8, 30, generator=gen)
    c_s, c_m = block.exchange(z_s, z_m, None, None)
    assert c_s.shape == (2, 8, 12) and c_m.shape == (2, 8, 30)
    torch.testing.assert_close(c_s, c_s[..., :1].expand_as(c_s))
    torch.testing.assert_close(c_m, c_m[..., :1].expand_as(c_m))
    pooled = z_m.mean(-1) if mode == "avg_pool" else z_m.amax(-1)
    torch.testing.assert_close(c_s[..., 0], pooled @ block.conv.weight + block.conv.bias)


def test_graph_fusion_exchange_is_bipartite_convolution():
    gen = torch.Generator().manual_seed(6)
    block = FusionBlock(16, "graph")
    z_s, z_m = torch.randn(2, 8, 12, generator=gen), torch.randn(2, 8, 30, generator=gen)
    jv, vj = torch.rand(12, 30, generator=gen), torch.rand(30, 12, generator=gen)
    c_s, c_m = block.exchange(z_s, z_m, jv, vj)
    w, b = block.conv.weight, block.conv.bias
    torch.testing.assert_close(c_s, (jv @ z_m.transpose(1, 2) @ w + b).transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_m, (vj @ z_s.transpose(1, 2) @ w + b).transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_fusion_block_normalises_node_sets_separately():
    """A joint's message does not depend on the scale of the vertex features through GroupNorm: scaling all
    vertex features leaves the joints' pre-normalised inputs, hence f_m, unchanged."""
    gen = torch.Generator().manual_seed(7)
    block = FusionBlock(16, "graph")
    x_s, x_m = torch.randn(1, 16, 12, generator=gen), torch.randn(1, 16, 30, generator=gen)
    jv, vj = torch.rand(12, 30, generator=gen), torch.rand(30, 12, generator=gen)
    _, f_m = block(x_s, x_m, jv, vj)
    _, f_m_scaled = block(x_s * 100.0, x_m, jv, vj)
    torch.testing.assert_close(f_m, f_m_scaled, rtol=1e-4, atol=1e-5)


def test_heads_start_from_their_bases():
    gen = torch.Generator().manual_seed(8)
    base = torch.randn(10, 3, generator=gen)
    head = CoordinateHead(16, 8, base)
    cam = CameraHead(16, 8, torch.tensor([0.9, 0.0, 0.0]))
    x = torch.randn(2, 16, 10, generator=gen)
    for lin in (head.lin2, cam.lin2):
        torch.nn.init.zeros_(lin.W)
        torch.nn.init.zeros_(lin.b)
    torch.testing.assert_close(head(x), base.expand(2, -1, -1))
    torch.testing.assert_close(cam(x), torch.tensor([[0.9, 0.0, 0.0]] * 2))
