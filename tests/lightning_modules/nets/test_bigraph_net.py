"""BiGraphNet: the paper's structure, outputs, locality of the skeleton features, and every ablation switch."""
from __future__ import annotations

import math

import pytest
import torch

from body.joints import SPIN49_TO_BIGRAPH12
from body.model import BodyModel
from body.rotations import rot6d_to_rotmat
from lightning_modules.nets.bigraph_net import BiGraphConfig, BiGraphNet, bigraph_template
from lightning_modules.nets.resnet import ResNet50

SMALL_CHANNELS = {"c2": 8, "c3": 8, "c4": 12, "c5": 16}
SIZES = {"c2": 56, "c3": 28, "c4": 14, "c5": 7}


@pytest.fixture(scope="module")
def body_model():
    return BodyModel.from_config("open")


def small_config(**kw) -> BiGraphConfig:
    return BiGraphConfig(**{"width": 1 / 16, "feature_channels": dict(SMALL_CHANNELS), **kw})


def make_inputs(batch: int = 2, seed: int = 0, channels=SMALL_CHANNELS, requires_grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    feats = {k: torch.randn(batch, c, SIZES[k], SIZES[k], generator=gen).requires_grad_(requires_grad)
             for k, c in channels.items()}
    joints = 0.8 * torch.rand(batch, 12, 2, generator=gen) - 0.4
    return feats, joints


def total(out) -> torch.Tensor:
    """A loss touching every differentiable output."""
    return sum(v.float().pow(2).mean() for v in out.named_tensors().values() if v.requires_grad)


def grads_of(module) -> dict[str, bool]:
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in module.named_parameters()}


def forward_backward(net, feats, joints):
    net.zero_grad(set_to_none=True)
    out = net(feats, joints)
    total(out).backward()
    return out


# ----------------------------------------------------------------------------------------------
# Structure and outputs
# ----------------------------------------------------------------------------------------------
def test_paper_defaults(body_model):
    cfg = BiGraphConfig()
    net = BiGraphNet(cfg, body_model)
    assert cfg.num_blocks == 5 and len(net.mesh_blocks) == 5 and len(net.skeleton_blocks) == 5
    assert sorted(net.fusion_blocks) == ["0", "1", "2", "3", "4"]
    assert net.num_vertices == 1723 and net.skeleton_adjacency.shape == (12, 12)
    assert net.mesh_input.linear.in_channels == 3 + 2048 and net.mesh_input.linear.out_channels == 512
    # GraphCMR's graph layers: 3 + 2048 -> 512, a 512 -> 256 residual block, then 256-channel blocks.
    for reduce in (net.mesh_reduce, net.skeleton_reduce):
        assert (reduce.in_channels, reduce.out_channels, reduce.lin1.out_channels) == (512, 256, 128)
        assert reduce.skip is not None
    assert all((b.in_channels, b.out_channels) == (256, 256) for b in [*net.mesh_blocks, *net.skeleton_blocks])
    assert net.skeleton_reduce.conv.num_nodes == 12 and net.mesh_reduce.conv.num_nodes == 1723
    assert all(f.lin1.in_channels == 256 for f in net.fusion_blocks.values())
    assert net.skeleton_input.linear.in_channels == 2 + 256 + 512 + 1024 + 2048
    assert net.mesh_blocks[0].conv.num_nodes == 1723 and net.mesh_blocks[0].conv.sparse
    assert net.smpl_regressor.fc_in.in_features == 1723 * 6 and net.smpl_regressor.fc_in.out_features == 1024
    assert net.fusion_adjacency.w_joint_vertex.shape == (12, 1723)
    assert len(net.joint_names) == 12


def test_output_shapes(body_model):
    net = BiGraphNet(small_config(), body_model)
    feats, joints = make_inputs(3)
    out = net(feats, joints)
    shapes = {k: tuple(v.shape) for k, v in out.named_tensors().items()}
    assert shapes == {
        "vertices_np": (3, 6890, 3), "vertices_coarse": (3, 1723, 3), "iterations.0.cam": (3, 3),
        "iterations.0.pose_rotmat": (3, 24, 3, 3), "iterations.0.betas": (3, 10), "skeleton_joints": (3, 12, 3),
        "roi_boxes": (3, 12, 4), "fusion_adjacency.0": (12, 1723), "fusion_adjacency.1": (1723, 12),
    }
    r = out.final.pose_rotmat
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3).expand_as(r), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(3, 24), rtol=0, atol=1e-5)


def test_zero_heads_give_the_template(body_model):
    """With the heads' last layers at zero, the mesh is the mean-parameter body (T-pose, mean shape, mean
    orientation) at graph level, its barycentric up-sampling at full level, the skeleton its 12 joints and the
    camera the mean camera."""
    net = BiGraphNet(small_config(), body_model)
    for lin in (net.vertex_head.lin2, net.joint_head.lin2, net.camera_head.lin2):
        torch.nn.init.zeros_(lin.W)
        torch.nn.init.zeros_(lin.b)
    out = net(*make_inputs(2))
    with torch.no_grad():
        pose = rot6d_to_rotmat(body_model.mean_pose.reshape(24, 6))
        body = body_model(body_model.mean_shape[None], pose[None, 1:], pose[None, :1])
    coarse = body_model.mesh_hierarchy.downsample(body.vertices, 0, 1)
    torch.testing.assert_close(out.vertices_coarse, coarse.expand(2, -1, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.vertices_np, body_model.mesh_hierarchy.upsample(coarse, 1, 0).expand(2, -1, -1),
                               rtol=0, atol=1e-6)
    # The up-sampled coarse template is close to the full template (barycentric, within ~2 cm).
    assert (out.vertices_np[0] - body.vertices[0]).norm(dim=-1).max() < 0.02
    torch.testing.assert_close(out.skeleton_joints, body.keypoints49[:, SPIN49_TO_BIGRAPH12].expand(2, -1, -1),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(out.final.cam, body_model.mean_cam.expand(2, -1))
    # Upright in the camera frame (y down): the head is above (smaller y than) the ankles.
    assert out.vertices_np[0, :, 1].min() < out.skeleton_joints[0, 10:, 1].min()


def test_coarser_mesh_level(body_model):
    """mesh_level=2 (431 vertices): up-sampling composes both barycentric levels."""
    net = BiGraphNet(small_config(mesh_level=2), body_model)
    torch.nn.init.zeros_(net.vertex_head.lin2.W)
    torch.nn.init.zeros_(net.vertex_head.lin2.b)
    out = net(*make_inputs(2))
    assert out.vertices_coarse.shape == (2, 431, 3) and out.vertices_np.shape == (2, 6890, 3)
    expected = body_model.mesh_hierarchy.upsample(out.vertices_coarse, 2, 0)
    torch.testing.assert_close(out.vertices_np, expected, rtol=0, atol=1e-6)


def test_template_does_not_move_the_body_model(body_model):
    tpl = bigraph_template(body_model, 1)
    assert tpl.vertices.shape == (1723, 3) and tpl.joints.shape == (12, 3)
    assert tpl.rest_vertices.shape == (1723, 3) and tpl.rest_joints.shape == (12, 3)
    assert tpl.upsample.shape == (6890, 1723)
    assert body_model.mean_shape.device.type == "cpu"
    with pytest.raises(ValueError, match="mesh_level"):
        bigraph_template(body_model, 3)


def test_graphs_come_from_the_rest_body(body_model):
    """A_s, A_fs and the vertex embedding use the T-pose (zero pose, mean shape); SMPL's own frame is y-up,
    so the rest body's head is at the top."""
    net = BiGraphNet(small_config(), body_model)
    tpl = bigraph_template(body_model, 1)
    torch.testing.assert_close(net.fusion_adjacency.fixed, 1 / torch.cdist(tpl.rest_joints, tpl.rest_vertices))
    d = torch.cdist(tpl.rest_joints, tpl.rest_joints)
    a = net.skeleton_adjacency
    torch.testing.assert_close(a[0, 1:] * d[0, 1:], (a[0, 1:] * d[0, 1:])[:1].expand(11))
    emb = net.mesh_input.template.t()
    assert emb.abs().max() == 1.0 and emb[:, 1].argmax() == tpl.rest_vertices[:, 1].argmax()
    assert tpl.rest_vertices[:, 1].max() > tpl.rest_joints[:, 1].max()      # head above the shoulders


def test_fusion_adjacency_rows_and_wf_gradients(body_model):
    net = BiGraphNet(small_config(), body_model)
    feats, joints = make_inputs(2)
    out = net(feats, joints)
    torch.testing.assert_close(out.fusion_adjacency[0].sum(1), torch.ones(12))
    torch.testing.assert_close(out.fusion_adjacency[1].sum(1), torch.ones(1723))
    full = net.fusion_adjacency.matrix()
    assert full.shape == (1735, 1735)
    torch.testing.assert_close(full.sum(1), torch.ones(1735))
    # A loss on the mesh alone reaches W_f (through the fusion of the skeleton into the mesh).
    out.vertices_np.pow(2).mean().backward()
    for w in (net.fusion_adjacency.w_joint_vertex, net.fusion_adjacency.w_vertex_joint):
        assert w.grad is not None and w.grad.abs().sum() > 0


def test_every_parameter_learns(body_model):
    """No unused parameters (DistributedDataParallel's default needs this) and gradients reach every
    backbone stage (c2..c5 through the RoI features, c5 also through the global feature)."""
    net = BiGraphNet(small_config(), body_model)
    feats, joints = make_inputs(2, requires_grad=True)
    forward_backward(net, feats, joints)
    missing = [n for n, ok in grads_of(net).items() if not ok]
    assert missing == []
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats.values())


def test_with_resnet_backbone(body_model):
    backbone = ResNet50(width=8).eval()
    net = BiGraphNet(BiGraphConfig(width=1 / 16, feature_channels=backbone.out_channels), body_model).eval()
    image = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = net(backbone.forward_features(image), torch.zeros(1, 12, 2).uniform_(-0.5, 0.5))
    assert out.vertices_np.shape == (1, 6890, 3) and torch.isfinite(out.vertices_np).all()


def test_joints_are_required_with_a_skeleton(body_model):
    net = BiGraphNet(small_config(), body_model)
    feats, _ = make_inputs(1)
    with pytest.raises(ValueError, match="joints_2d"):
        net(feats, None)
    with pytest.raises(ValueError, match="joints_2d"):
        net(feats, torch.zeros(1, 14, 2))


# ----------------------------------------------------------------------------------------------
# Locality of the skeleton branch
# ----------------------------------------------------------------------------------------------
def far_from_boxes(boxes: torch.Tensor, height: int, width: int, scale: float) -> torch.Tensor:
    """Pixels of a (height, width) map more than one pixel beyond every RoI (aligned RoI Align samples
    lie in [x1 s - 0.5, x2 s - 0.5] and bilinear reads the two neighbouring pixels). boxes (B, N, 4)
    -> (B, H, W) bool."""
    x1, y1 = boxes[..., 0] * scale - 0.5, boxes[..., 1] * scale - 0.5
    x2, y2 = boxes[..., 2] * scale - 0.5, boxes[..., 3] * scale - 0.5
    xs, ys = torch.arange(width).float(), torch.arange(height).float()
    near_x = (xs >= x1[..., None] - 1) & (xs <= x2[..., None] + 1)             # (B, N, W)
    near_y = (ys >= y1[..., None] - 1) & (ys <= y2[..., None] + 1)             # (B, N, H)
    near = (near_y[..., :, None] & near_x[..., None, :]).any(dim=1)             # (B, H, W)
    return ~near


def test_skeleton_features_are_local(body_model):
    """Changing image features away from every RoI changes nothing in the skeleton branch (fusion off),
    while the mesh branch, which reads the global feature, changes."""
    net = BiGraphNet(small_config(fusion_graph=False), body_model).eval()
    gen = torch.Generator().manual_seed(3)
    feats, _ = make_inputs(2, seed=3)
    joints = 0.5 * torch.rand(2, 12, 2, generator=gen) - 0.9             # upper-left part of the crop
    out = net(feats, joints)
    changed = {}
    for k, f in feats.items():
        far = far_from_boxes(out.roi_boxes, f.shape[2], f.shape[3], f.shape[3] / 224)
        assert far.float().mean(dim=(1, 2)).min() > 0.1, k                   # every map really changes
        changed[k] = torch.where(far[:, None], f + 5.0 * torch.randn(f.shape, generator=gen), f)
    out2 = net(changed, joints)
    torch.testing.assert_close(out2.skeleton_joints, out.skeleton_joints, rtol=0, atol=0)
    assert (out2.vertices_np - out.vertices_np).abs().max() > 1e-4
    # Changing a pixel inside a box does reach the skeleton.
    box = out.roi_boxes[0, 0] * 56 / 224
    inside = {k: v.clone() for k, v in feats.items()}
    inside["c2"][0, :, int(box[1:4:2].mean()), int(box[0:3:2].mean())] += 100.0
    assert (net(inside, joints).skeleton_joints - out.skeleton_joints).abs().max() > 0


# ----------------------------------------------------------------------------------------------
# Ablation switches (Tables 4 and 5)
# ----------------------------------------------------------------------------------------------
def test_mesh_only_model(body_model):
    """skeleton_graph=False (Table 4, row A): a GraphCMR-like mesh-only model."""
    net = BiGraphNet(small_config(skeleton_graph=False), body_model)
    names = [n for n, _ in net.named_parameters()]
    assert not [n for n in names if n.startswith(("skeleton", "joint_head", "fusion"))]
    feats, _ = make_inputs(2)
    out = forward_backward(net, feats, None)
    assert out.present() == {"iterations", "vertices_np", "vertices_coarse"}
    assert all(grads_of(net).values())
    full = BiGraphNet(small_config(), body_model)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())


def test_fusion_graph_off_separates_the_branches(body_model):
    """fusion_graph=False (row C): no fusion parameters; the mesh ignores the joints, which it sees only
    through the fusion graph."""
    feats, joints = make_inputs(2)
    other = joints.flip(1)
    off = BiGraphNet(small_config(fusion_graph=False), body_model).eval()
    assert len(off.fusion_blocks) == 0 and off.fusion_adjacency is None
    out = off(feats, joints)
    assert out.fusion_adjacency is None
    torch.testing.assert_close(off(feats, other).vertices_np, out.vertices_np, rtol=0, atol=0)
    on = BiGraphNet(small_config(), body_model).eval()
    for name, p in on.named_parameters():     # make the (nearly zero-initialised) fusion messages visible
        if p.dim() > 1 and not name.startswith("fusion_adjacency"):
            torch.nn.init.normal_(p, std=0.1)
    assert (on(feats, other).vertices_np - on(feats, joints).vertices_np).abs().max() > 1e-6
    off.train()
    forward_backward(off, feats, joints)
    assert all(grads_of(off).values())


def test_global_features_for_joints(body_model):
    """localized_features=False (row B): every joint gets the global feature, no RoIs; features far from
    the joints now reach the skeleton."""
    net = BiGraphNet(small_config(localized_features=False, fusion_graph=False), body_model).eval()
    assert net.skeleton_input.linear.in_channels == 2 + SMALL_CHANNELS["c5"]
    feats, joints = make_inputs(2)
    out = net(feats, joints)
    assert out.roi_boxes is None
    shifted = dict(feats, c5=feats["c5"] + 1.0)
    assert (net(shifted, joints).skeleton_joints - out.skeleton_joints).abs().max() > 0
    # ... and c2..c4 are not read at all.
    assert torch.equal(net(dict(feats, c2=feats["c2"] * 0), joints).skeleton_joints, out.skeleton_joints)
    net.train()
    forward_backward(net, feats, joints)
    assert all(grads_of(net).values())


@pytest.mark.parametrize("mode", ["avg_pool", "max_pool"])
def test_pooling_fusion(mode, body_model):
    """Table 5's avgpool- / maxpool-as-fusion: fusion blocks without a fusion adjacency (no W_f)."""
    net = BiGraphNet(small_config(fusion=mode), body_model)
    assert net.fusion_adjacency is None and len(net.fusion_blocks) == 5
    assert all(b.mode == mode for b in net.fusion_blocks.values())
    assert not [n for n, _ in net.named_parameters() if "w_joint_vertex" in n or "w_vertex_joint" in n]
    out = forward_backward(net, *make_inputs(2))
    assert out.fusion_adjacency is None
    assert all(grads_of(net).values())


@pytest.mark.parametrize("layers,expected", [("first", ["0"]), ("last", ["4"]), ("all", ["0", "1", "2", "3", "4"])])
def test_fusion_layers(layers, expected, body_model):
    """fusion-at-first / -last: only that block fuses, and only its fusion module learns."""
    net = BiGraphNet(small_config(fusion_layers=layers), body_model)
    assert sorted(net.fusion_blocks) == expected
    forward_backward(net, *make_inputs(2))
    learned = {n.split(".")[1] for n, ok in grads_of(net).items() if n.startswith("fusion_blocks.") and ok}
    assert sorted(learned) == expected
    assert net.fusion_adjacency.w_joint_vertex.grad.abs().sum() > 0


def test_shared_weights(body_model):
    """shared_weights: the skeleton runs the mesh graph's blocks on its own adjacency."""
    shared = BiGraphNet(small_config(shared_weights=True), body_model)
    separate = BiGraphNet(small_config(), body_model)
    assert shared.skeleton_blocks is None and shared.skeleton_reduce is None
    n_shared = sum(p.numel() for p in shared.parameters())
    n_separate = sum(p.numel() for p in separate.parameters())
    own = list(separate.skeleton_blocks.parameters()) + list(separate.skeleton_reduce.parameters())
    assert n_separate - n_shared == sum(p.numel() for p in own)
    # A loss on the skeleton alone (no fusion) trains the shared blocks, which see the skeleton graph.
    iso = BiGraphNet(small_config(shared_weights=True, fusion_graph=False), body_model)
    feats, joints = make_inputs(2)
    iso(feats, joints).skeleton_joints.pow(2).mean().backward()
    assert all(p.grad is not None for p in iso.mesh_blocks.parameters())
    x = torch.randn(2, iso.mesh_blocks[0].in_channels, 12)
    torch.testing.assert_close(iso.skeleton_block(0, x), iso.mesh_blocks[0](x, iso.skeleton_adjacency))
    x0 = torch.randn(2, iso.mesh_reduce.in_channels, 12)
    torch.testing.assert_close(iso.skeleton_reduction(x0), iso.mesh_reduce(x0, iso.skeleton_adjacency))
    forward_backward(shared, feats, joints)
    assert all(grads_of(shared).values())


def test_equal_input_and_block_widths_drop_the_reduction_blocks(body_model):
    """input_channels == hidden_channels: no reduction blocks, so a configuration of the earlier
    one-width network (hidden_channels 512, no input_channels) builds exactly its parameters."""
    net = BiGraphNet(small_config(input_channels=512, hidden_channels=512), body_model)
    assert net.mesh_reduce is None and net.skeleton_reduce is None
    assert not [n for n, _ in net.named_parameters() if "reduce" in n]
    assert net.mesh_input.linear.out_channels == net.mesh_blocks[0].in_channels == 32   # 512 x 1/16
    out = forward_backward(net, *make_inputs(2))
    assert torch.isfinite(out.vertices_np).all()


def test_width_and_svd_rotation(body_model):
    net = BiGraphNet(small_config(width=1 / 8, rotation="svd"), body_model)
    assert net.mesh_input.linear.out_channels == 64 and net.vertex_head.lin1.out_channels == 8
    assert net.smpl_regressor.fc_in.out_features == 128 and net.smpl_regressor.fc_out.out_features == 24 * 9 + 10
    out = forward_backward(net, *make_inputs(2))
    r = out.final.pose_rotmat
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(2, 24), rtol=0, atol=1e-5)


def test_smpl_regressor_input_detached_by_default(body_model):
    feats, joints = make_inputs(2)
    for detach in (True, False):
        net = BiGraphNet(small_config(detach_smpl_input=detach), body_model)
        net(feats, joints).final.betas.sum().backward()
        reached = net.vertex_head.lin2.W.grad is not None
        assert reached != detach


@pytest.mark.parametrize("bad", [dict(fusion="sum"), dict(fusion_layers="middle"), dict(num_blocks=0),
                                 dict(rotation="quat"), dict(global_stage="c6")])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        small_config(**bad)


def test_config_scaled_channels():
    assert BiGraphConfig().scaled(512) == 512
    assert BiGraphConfig(width=1 / 16).scaled(64) == 4
    assert all(BiGraphConfig(width=w).scaled(c) % 2 == 0 for w in (0.01, 0.3, 1.7) for c in (64, 512, 1024))
    assert math.isclose(BiGraphConfig(width=0.5).scaled(1024), 512)


# ----------------------------------------------------------------------------------------------
# DistributedDataParallel (gloo, CPU)
# ----------------------------------------------------------------------------------------------
def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    import gc

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)      # different initial weights: DDP must broadcast rank 0's
        net = BiGraphNet(small_config(), BodyModel.from_config("open"))
        ddp = torch.nn.parallel.DistributedDataParallel(net)    # broadcasts parameters and buffers
        feats, joints = make_inputs(2, seed=10 + rank)
        total(ddp(feats, joints)).backward()
        torch.save({n: p.grad for n, p in net.named_parameters()}, f"{out_dir}/rank{rank}.pt")
        del ddp          # it holds the process group, which must not outlive destroy_process_group
        gc.collect()     # (its gloo threads would abort the interpreter's exit)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_data_parallel(tmp_path):
    """Two gloo ranks: DDP can broadcast every buffer (a sparse one would fail) and finds no unused
    parameter; the averaged gradients agree on both ranks."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    g0, g1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert set(g0) == set(g1) and all(g0[n] is not None for n in g0)
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n], msg=n)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(body_model):
    net = BiGraphNet(small_config(), body_model).eval()
    feats, joints = make_inputs(2)
    expected = net(feats, joints)
    net.cuda()
    got = net({k: v.cuda() for k, v in feats.items()}, joints.cuda())
    got, expected = got.named_tensors(), expected.named_tensors()
    for k in expected:
        torch.testing.assert_close(got[k].cpu(), expected[k], rtol=1e-4, atol=1e-4, msg=k)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = net({k: v.cuda() for k, v in feats.items()}, joints.cuda())
    assert all(torch.isfinite(v).all() for v in out.named_tensors().values())
