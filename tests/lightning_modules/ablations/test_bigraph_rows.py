"""BiGraph's ablation rows (Tables 4-5) at the LightningModule level.

Each switch is checked on what it changes observably: the features BiGraph's joints read, which way
information flows between the skeleton and mesh graphs, and the skeleton loss formula, compared with an
independent computation in this file or with a contrasting row. The network-level switch tests are in
``tests/lightning_modules/nets/test_bigraph_net.py``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from body.joints import BIGRAPH12_JOINT_NAMES, SPIN24_GT_JOINT_NAMES
from tests.lightning_modules.ablations.support import (BIGRAPH_ROWS, FULL_BIGRAPH, build, hooks, max_diff, n_params,
                                                       run_eval)

ALL_OUTPUTS = {"iterations", "vertices_np", "vertices_coarse", "skeleton_joints", "roi_boxes", "fusion_adjacency"}
ALL_TERMS = {"vertices", "mesh_joints_3d", "keypoints_2d", "pose", "betas", "skeleton_2d", "skeleton_3d",
             "skeleton_focal"}
SKELETON_OUTPUTS = {"skeleton_joints", "roi_boxes"}
ADJACENCY = {"fusion_adjacency"}
# outputs missing, loss terms missing, fusion blocks, whether the mesh depends on the RoI joints
BIGRAPH_EXPECTED = {
    "bigraph_t4_a_mesh_only": (SKELETON_OUTPUTS | ADJACENCY, {"skeleton_2d", "skeleton_3d", "skeleton_focal"}, [],
                               False),
    "bigraph_t4_b_global_features": ({"roi_boxes"}, set(), list("01234"), True),
    "bigraph_t4_c_no_fusion": (ADJACENCY, set(), [], False),
    "bigraph_t4_d_full": (set(), set(), list("01234"), True),
    "bigraph_t5_avgpool_fusion": (ADJACENCY, set(), list("01234"), True),
    "bigraph_t5_maxpool_fusion": (ADJACENCY, set(), list("01234"), True),
    "bigraph_t5_fusion_at_first": (set(), set(), ["0"], True),
    "bigraph_t5_fusion_at_last": (set(), set(), ["4"], True),
    "bigraph_t5_shared_weight": (set(), set(), list("01234"), True),
    "bigraph_t5_no_focal_loss": (set(), set(), list("01234"), True),
}


def perturbed_joints(batch: dict) -> dict:
    """The same images with other RoI joints (reversed joint order, shifted 0.05)."""
    joints = batch["bigraph_joints_2d"].clone()
    joints[..., :2] = joints[..., :2].flip(1) + 0.05
    return dict(batch, bigraph_joints_2d=joints)


def test_bigraph_expectations_cover_the_rows():
    assert set(BIGRAPH_EXPECTED) == set(BIGRAPH_ROWS)


@pytest.mark.parametrize("name", BIGRAPH_ROWS)
def test_bigraph_outputs_terms_and_joint_dependence(data, name):
    """What each row outputs and supervises, and whether the mesh sees the RoI joints at all: without a
    skeleton (A) or without fusion (C) moving the joints leaves every mesh output bit-identical; every
    other row passes the skeleton's information to the mesh."""
    dm, batch, _ = data
    missing, missing_terms, fusion_blocks, mesh_sees_joints = BIGRAPH_EXPECTED[name]
    module = build(name, dm.eval_names)
    graph = module.net.graph
    assert sorted(graph.fusion_blocks) == fusion_blocks
    out = run_eval(module, batch)
    assert out.present() == ALL_OUTPUTS - missing
    with torch.no_grad():
        terms = module.criterion(batch, out, module.decoder)
    assert set(terms) == ALL_TERMS - missing_terms
    assert all(torch.isfinite(v) for v in terms.values())
    moved = run_eval(module, perturbed_joints(batch))
    moved_tensors, out_tensors = moved.named_tensors(), out.named_tensors()
    for key in ("vertices_np", "iterations.0.cam", "iterations.0.pose_rotmat", "iterations.0.betas"):
        # bit-identical unless the mesh reads the joints
        assert torch.equal(moved_tensors[key], out_tensors[key]) != mesh_sees_joints, key
    if mesh_sees_joints:
        assert max_diff(moved.vertices_np, out.vertices_np) > 1e-5   # row B's is the smallest: ~1e-4 m
    if out.skeleton_joints is not None:
        # float32 noise is ~1e-7 m; row B (joints only as positions) moves least: ~6e-5 m at the test width
        assert max_diff(moved.skeleton_joints, out.skeleton_joints) > 1e-5


def test_bigraph_mesh_only_row_is_graphcmr_like(data):
    """Row A: no skeleton input, blocks, joint head or fusion parameters; fewer parameters than D."""
    dm, _, _ = data
    mesh_only, full = build("bigraph_t4_a_mesh_only", dm.eval_names), build(FULL_BIGRAPH, dm.eval_names)
    prefixes = ("net.graph.skeleton", "net.graph.joint_head", "net.graph.fusion")
    assert not [n for n, _ in mesh_only.named_parameters() if n.startswith(prefixes)]
    assert [n for n, _ in full.named_parameters() if n.startswith(prefixes)]
    mesh_names = {n for n, _ in mesh_only.named_parameters()}
    assert mesh_names == {n for n, _ in full.named_parameters() if not n.startswith(prefixes)}
    assert n_params(mesh_only) < n_params(full)


def test_bigraph_no_fusion_mesh_ignores_the_skeleton_branch(data):
    """Row C: even other skeleton weights leave the mesh bit-identical; in D they change it."""
    dm, batch, _ = data
    for name, independent in (("bigraph_t4_c_no_fusion", True), (FULL_BIGRAPH, False)):
        module = build(name, dm.eval_names)
        out = run_eval(module, batch)
        with torch.no_grad():
            torch.manual_seed(1)
            graph = module.net.graph
            for p in [*graph.skeleton_input.parameters(), *graph.skeleton_blocks.parameters()]:
                p.add_(0.1 * torch.randn_like(p))
        changed = run_eval(module, batch)
        assert max_diff(changed.skeleton_joints, out.skeleton_joints) > 1e-4
        if independent:
            assert torch.equal(changed.vertices_np, out.vertices_np)
        else:
            assert max_diff(changed.vertices_np, out.vertices_np) > 1e-6


def test_bigraph_joints_read_global_or_localised_image_features(data):
    """Row B: each joint's input is [its 2D position, the mean-pooled c5 feature] (recomputed here), so
    its image part is the same for every joint and does not move with the joints; D reads RoI patches
    centred on the joints, which differ per joint and move with them."""
    dm, batch, _ = data
    moved_batch = perturbed_joints(batch)
    for name in ("bigraph_t4_b_global_features", FULL_BIGRAPH):
        module = build(name, dm.eval_names)
        graph = module.net.graph
        seen = []
        with hooks(graph.skeleton_input.linear.register_forward_pre_hook(lambda m, a: seen.append(a[0]))):
            out = run_eval(module, batch)
            moved = run_eval(module, moved_batch)
        inputs, moved_inputs = seen
        joints = batch["bigraph_joints_2d"][..., :2]
        torch.testing.assert_close(inputs[:, :2], joints.transpose(1, 2), rtol=0, atol=0)
        torch.testing.assert_close(moved_inputs[:, :2], moved_batch["bigraph_joints_2d"][..., :2].transpose(1, 2),
                                   rtol=0, atol=0)
        image_part, moved_image_part = inputs[:, 2:], moved_inputs[:, 2:]
        if name == FULL_BIGRAPH:
            assert graph.skeleton_input.localized
            assert max_diff(image_part, image_part[..., :1]) > 1e-4
            assert max_diff(moved_image_part, image_part) > 1e-4
            boxes = out.roi_boxes
            centres = torch.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)
            torch.testing.assert_close(centres, (joints + 1.0) * 112.0, rtol=0, atol=1e-4)
        else:
            assert not graph.skeleton_input.localized and out.roi_boxes is None
            with torch.no_grad():
                c5 = module.net.backbone.forward_features(module.normalize(batch["img"]))["c5"]
            torch.testing.assert_close(image_part, c5.mean(dim=(2, 3))[..., None].expand_as(image_part),
                                       rtol=1e-5, atol=1e-6)
            assert torch.equal(moved_image_part, image_part)
            assert graph.skeleton_input.linear.in_channels == 2 + c5.shape[1]
            assert max_diff(moved.skeleton_joints, out.skeleton_joints) > 1e-5   # the positions still count


def independent_pooled_message(block, x_m: torch.Tensor, mode: str, n_joints: int) -> torch.Tensor:
    """The fusion block's message to the joints when it pools the mesh: the vertices' features pooled
    (mean or max) into one node, convolved and sent identically to every joint."""
    z = F.relu(block.norm1(block.lin1(F.relu(block.pre_norm(x_m)))))               # (B, C', N_m)
    pooled = z.mean(-1, keepdim=True) if mode == "avg_pool" else z.amax(-1, keepdim=True)
    conv = torch.einsum("bcn,cd->bdn", pooled, block.conv.weight) + block.conv.bias[:, None]
    return block.lin2(F.relu(block.norm2(conv.expand(-1, -1, n_joints))))


@pytest.mark.parametrize("name", ["bigraph_t5_avgpool_fusion", "bigraph_t5_maxpool_fusion", FULL_BIGRAPH,
                                  "bigraph_t5_fusion_at_first", "bigraph_t5_fusion_at_last"])
def test_bigraph_fusion_messages(data, name):
    """Pooling fusions: no A_f, every joint receives the same pooled-mesh message (recomputed here with
    mean or max) and every vertex the same pooled-skeleton message; graph fusion (D) sends each joint
    its own. Fusion at first / last: only that block runs a fusion block."""
    dm, batch, _ = data
    module = build(name, dm.eval_names)
    graph = module.net.graph
    mode = graph.config.fusion
    calls = []

    def record(block_name):
        return lambda m, args, result: calls.append((block_name, args, result))

    handles = [b.register_forward_hook(record(k)) for k, b in graph.fusion_blocks.items()]
    with hooks(*handles):
        out = run_eval(module, batch)
    assert [c[0] for c in calls] == BIGRAPH_EXPECTED[name][2]
    assert (graph.fusion_adjacency is None) == (mode != "graph") and (ADJACENCY <= out.present()) == (mode == "graph")
    for block_name, (x_s, x_m, a_jv, a_vj), (f_s, f_m) in calls:
        if mode == "graph":
            assert a_jv is not None and max_diff(f_s, f_s[..., :1]) > 1e-6
        else:
            assert a_jv is None and a_vj is None
            assert max_diff(f_s, f_s[..., :1]) < 1e-6 * (1 + float(f_s.abs().max()))
            assert max_diff(f_m, f_m[..., :1]) < 1e-6 * (1 + float(f_m.abs().max()))
            with torch.no_grad():
                expected = independent_pooled_message(graph.fusion_blocks[block_name], x_m, mode, x_s.shape[-1])
            torch.testing.assert_close(f_s, expected, rtol=1e-4, atol=1e-6)
            other = "max_pool" if mode == "avg_pool" else "avg_pool"
            with torch.no_grad():
                assert max_diff(independent_pooled_message(graph.fusion_blocks[block_name], x_m, other,
                                                           x_s.shape[-1]), f_s) > 1e-5


def test_bigraph_shared_weights_skeleton_runs_the_mesh_blocks(data):
    """shared_weights: the skeleton blocks' parameters are gone, the mesh blocks run twice per forward
    (1,723 vertices and 12 joints), and the last mesh block's weights move the skeleton joints, which in
    D they cannot (block 4's mesh output reaches nothing but the mesh heads)."""
    dm, batch, _ = data
    shared, full = build("bigraph_t5_shared_weight", dm.eval_names), build(FULL_BIGRAPH, dm.eval_names)
    assert shared.net.graph.skeleton_blocks is None and shared.net.graph.skeleton_reduce is None
    skeleton_own = n_params(full.net.graph.skeleton_blocks) + n_params(full.net.graph.skeleton_reduce)
    assert n_params(full) - n_params(shared) == skeleton_own
    for module, node_counts in ((shared, [1723, 12]), (full, [1723])):
        nodes = []
        last = module.net.graph.mesh_blocks[-1]
        with hooks(last.register_forward_pre_hook(lambda m, a: nodes.append(a[0].shape[-1]))):
            out = run_eval(module, batch)
        assert nodes == node_counts
        with torch.no_grad():
            last.lin2.W.mul_(-3.0)
        changed = run_eval(module, batch)
        assert max_diff(changed.vertices_np, out.vertices_np) > 1e-6
        if module is shared:
            assert max_diff(changed.skeleton_joints, out.skeleton_joints) > 1e-5
        else:
            assert torch.equal(changed.skeleton_joints, out.skeleton_joints)


def test_bigraph_skeleton_3d_loss_focal_or_l1(data):
    """skeleton_3d_loss: on the same outputs, both rows have L_s (1 x the L1 of the coordinates) and a
    second joint term of weight 5: D's is the focal formula of the per-joint distance, the "w/o FL" row's
    the distance itself; hip-centred joints over the valid points (has_3d and confidence > 0), recomputed
    here; every other term is the same."""
    dm, batch, _ = data
    focal, l1 = build(FULL_BIGRAPH, dm.eval_names), build("bigraph_t5_no_focal_loss", dm.eval_names)
    assert focal.criterion.cfg["skeleton_3d_loss"] == "focal" and l1.criterion.cfg["skeleton_3d_loss"] == "l1"
    batch = dict(batch, joints_3d=batch["joints_3d"].clone())
    wrist = SPIN24_GT_JOINT_NAMES.index("left_wrist")
    batch["joints_3d"][0, wrist] = torch.tensor([9.0, 9.0, 9.0, 0.0])   # a missing joint: must not count
    out = run_eval(focal, batch)
    with torch.no_grad():
        terms_focal, terms_l1 = focal.criterion(batch, out, focal.decoder), l1.criterion(batch, out, l1.decoder)

    index = [SPIN24_GT_JOINT_NAMES.index(n) for n in BIGRAPH12_JOINT_NAMES]
    hips = [BIGRAPH12_JOINT_NAMES.index("left_hip"), BIGRAPH12_JOINT_NAMES.index("right_hip")]
    pred, gt = out.skeleton_joints, batch["joints_3d"][:, index]
    pred = pred - pred[:, hips].mean(1, keepdim=True)
    target = gt[..., :3] - gt[:, hips, :3].mean(1, keepdim=True)
    valid = batch["has_3d"][:, None] & (gt[..., 3] > 0)
    assert int(valid.sum()) == 2 * 12 - 1
    diff = (pred - target)[valid]                              # (n_valid, 3)
    expected_ls = diff.abs().mean()
    distance = diff.double().norm(dim=-1)
    expected_plain = distance.mean()
    expected_focal = (-distance * torch.log(1.0 - distance.clamp(max=0.9))).mean()
    for terms in (terms_focal, terms_l1):
        torch.testing.assert_close(terms["skeleton_3d"], 1.0 * expected_ls, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms_l1["skeleton_focal"].double(), 5.0 * expected_plain, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms_focal["skeleton_focal"].double(), 5.0 * expected_focal, rtol=1e-5, atol=0)
    assert abs(float(expected_focal / expected_plain) - 1.0) > 0.05     # the two rows really differ
    assert set(terms_focal) == set(terms_l1)
    for key in set(terms_focal) - {"skeleton_focal"}:
        assert torch.equal(terms_focal[key], terms_l1[key])
