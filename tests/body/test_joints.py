import re

import pytest
import roma
import torch

from body import joints as J


def mirror_name(name: str) -> str:
    """The name of the mirrored joint, from the name string alone."""
    return re.sub(r"(left|right)", lambda m: "right" if m.group(1) == "left" else "left", name)


ALL_SETS = list(J.JOINT_SETS.values())


# ------------------------------------------------------------------ flip permutations
@pytest.mark.parametrize("js", ALL_SETS, ids=lambda js: js.name)
def test_flip_perm_is_involution(js):
    perm = js.flip_perm
    assert len(perm) == len(js.names)
    assert sorted(perm) == list(range(len(perm)))
    assert all(perm[perm[i]] == i for i in range(len(perm)))


@pytest.mark.parametrize("js", ALL_SETS, ids=lambda js: js.name)
def test_flip_perm_matches_names(js):
    assert len(set(js.names)) == len(js.names), "joint names must be unique"
    for i, name in enumerate(js.names):
        mirrored = js.names[js.flip_perm[i]]
        assert mirrored == mirror_name(name), (js.name, name, mirrored)
        if "left" not in name and "right" not in name:
            assert js.flip_perm[i] == i


def test_set_sizes_and_known_entries():
    sizes = {"smpl24": 24, "body_model45": 45, "body_model54": 54, "h36m17": 17, "lsp14": 14,
             "coco17": 17, "openpose25": 25, "j24": 24, "spin49": 49, "bigraph12": 12}
    assert {k: len(v) for k, v in J.JOINT_SETS.items()} == sizes
    assert J.SMPL_JOINT_NAMES[15] == "head" and J.SMPL_JOINT_NAMES[21] == "right_wrist"
    assert J.OPENPOSE25_JOINT_NAMES[8] == "mid_hip" and J.OPENPOSE25_JOINT_NAMES[24] == "right_heel"
    assert J.COCO17_JOINT_NAMES[5] == "left_shoulder" and J.COCO17_JOINT_NAMES[16] == "right_ankle"
    assert J.H36M17_JOINT_NAMES[J.H36M17_PELVIS] == "pelvis"
    # SPIN's J49_FLIP_PERM, written out independently.
    spin_j49 = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21,
                30, 29, 28, 27, 26, 25, 36, 35, 34, 33, 32, 31, 37, 38, 39, 40, 41, 42, 43, 44, 46, 45, 48, 47]
    assert J.SPIN49_FLIP_PERM == spin_j49


def test_coco_sigmas():
    official = [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
    assert J.COCO17_SIGMAS == pytest.approx([s / 10.0 for s in official], abs=1e-12)
    # symmetric keypoints share a sigma
    assert all(J.COCO17_SIGMAS[i] == J.COCO17_SIGMAS[p] for i, p in enumerate(J.COCO17_FLIP_PERM))


# ------------------------------------------------------------------ SMPL tree and smplx order
def test_smpl_parents_tree_and_symmetry():
    parents = J.SMPL_PARENTS
    assert parents[0] == -1 and all(0 <= p < i for i, p in enumerate(parents) if i > 0)
    names = J.SMPL_JOINT_NAMES
    for i in range(1, 24):  # the tree is left/right symmetric
        assert names[parents[J.SMPL_FLIP_PERM[i]]] == mirror_name(names[parents[i]])
    assert names[parents[names.index("left_elbow")]] == "left_shoulder"
    assert names[parents[names.index("right_ankle")]] == "right_knee"
    assert names[parents[names.index("head")]] == "neck"


def test_smplx_extra_joint_order_matches_installed_smplx():
    from smplx.vertex_ids import vertex_ids
    from smplx.vertex_joint_selector import VertexJointSelector

    sel = VertexJointSelector(vertex_ids=vertex_ids["smplh"])
    expected = [vertex_ids["smplh"][k] for k in J.SMPLX_EXTRA_VERTEX_ID_KEYS]
    assert sel.extra_joints_idxs.tolist() == expected
    # our snake-case names are the smplx keys spelled out
    short = {"l": "left", "r": "right", "L": "left", "R": "right"}
    for key, name in zip(J.SMPLX_EXTRA_VERTEX_ID_KEYS, J.SMPLX_EXTRA_JOINT_NAMES):
        if key == "nose":
            assert name == "nose"
            continue
        side, part = short[key[0]], key[1:]
        part = re.sub(r"(?<!^)([A-Z])", r"_\1", part).lower()  # BigToe -> big_toe
        part = part if part in ("eye", "ear", "heel") or "toe" in part else part + "_tip"  # finger tips
        assert name == f"{side}_{part}", (key, name)


# ------------------------------------------------------------------ index maps
def canonical(name: str) -> str:
    """Strip the source prefixes/suffixes that name the same anatomical point."""
    name = name.removeprefix("op_").removesuffix("_lsp")
    return {"mid_hip": "pelvis"}.get(name, name)


def test_spin49_from_body_model_points_at_same_names():
    assert len(J.SPIN49_FROM_BODY_MODEL) == 49
    for name, idx in zip(J.SPIN49_JOINT_NAMES, J.SPIN49_FROM_BODY_MODEL):
        assert canonical(J.BODY_MODEL54_JOINT_NAMES[idx]) == canonical(name), (name, idx)
    # SPIN's JOINT_MAP facts, spot-checked
    m = dict(zip(J.SPIN49_JOINT_NAMES, J.SPIN49_FROM_BODY_MODEL))
    assert m["op_nose"] == 24 and m["op_neck"] == 12 and m["op_mid_hip"] == 0 and m["op_right_heel"] == 34
    assert m["right_hip"] == 45 and m["left_hip"] == 46 and m["neck"] == 47 and m["head_top"] == 48
    assert m["head_h36m"] == 53 and m["right_eye"] == 25 and m["left_ear"] == 28
    # OpenPose hips come from SMPL's skeleton, not the LSP regressor
    assert m["op_right_hip"] == 2 and m["op_left_hip"] == 1


def test_spin49_from_body_model_commutes_with_flip():
    p54, p49, sel = J.BODY_MODEL54_FLIP_PERM, J.SPIN49_FLIP_PERM, J.SPIN49_FROM_BODY_MODEL
    assert [sel[p49[i]] for i in range(49)] == [p54[sel[i]] for i in range(49)]


# LSP-14 joints are filled from H36M/J24 joints of other names in two places.
LSP_ALIASES = {"neck": {"neck", "thorax"}, "head_top": {"head_top", "head_h36m"}}


@pytest.mark.parametrize("src_names,table", [
    (J.H36M17_JOINT_NAMES, J.H36M_TO_LSP14),
    (J.SPIN24_GT_JOINT_NAMES, J.J24_TO_LSP14),
])
def test_lsp14_maps(src_names, table):
    assert len(table) == 14
    for target, idx in zip(J.LSP14_JOINT_NAMES, table):
        assert src_names[idx] in LSP_ALIASES.get(target, {target}), (target, src_names[idx])


def test_lsp14_tables_are_spin_facts():
    assert J.H36M_TO_LSP14 == [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
    assert J.J24_TO_LSP14 == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18]
    assert J.SPIN24_GT_JOINT_NAMES[:14] == J.LSP14_JOINT_NAMES
    assert J.SPIN24_GT_JOINT_NAMES[J.J24_PELVIS] == "pelvis_mpii"


@pytest.mark.parametrize("src_names,table", [
    (J.COCO17_JOINT_NAMES, J.COCO17_TO_BIGRAPH12),
    (J.SPIN24_GT_JOINT_NAMES, J.J24_TO_BIGRAPH12),
    (J.SPIN49_JOINT_NAMES, J.SPIN49_TO_BIGRAPH12),
    (J.OPENPOSE25_JOINT_NAMES, J.OPENPOSE25_TO_BIGRAPH12),
    (J.H36M17_JOINT_NAMES, J.H36M17_TO_BIGRAPH12),
])
def test_bigraph12_maps(src_names, table):
    assert [src_names[i] for i in table] == J.BIGRAPH12_JOINT_NAMES


def test_bigraph12_known_indices_and_edges():
    assert J.COCO17_TO_BIGRAPH12 == list(range(5, 17))
    assert min(J.SPIN49_TO_BIGRAPH12) >= 25  # the ground-truth part, not OpenPose
    names = J.BIGRAPH12_JOINT_NAMES
    edges = {frozenset((names[a], names[b])) for a, b in J.BIGRAPH12_EDGES}
    expected = set()
    for side in ("left", "right"):
        for a, b in [("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"),
                     ("shoulder", "hip")]:
            expected.add(frozenset((f"{side}_{a}", f"{side}_{b}")))
    expected |= {frozenset(("left_shoulder", "right_shoulder")), frozenset(("left_hip", "right_hip"))}
    assert edges == expected and len(J.BIGRAPH12_EDGES) == 12
    # flip-invariant edge set
    perm = J.BIGRAPH12_FLIP_PERM
    assert {frozenset((perm[a], perm[b])) for a, b in J.BIGRAPH12_EDGES} == \
        {frozenset(e) for e in J.BIGRAPH12_EDGES}


def test_build_index_map_errors():
    with pytest.raises(ValueError, match="'left_toe'"):
        J.build_index_map(["a", "b"], ["left_toe"])


def test_registry_lookup():
    assert J.get_joint_set("coco17").names == tuple(J.COCO17_JOINT_NAMES)
    assert J.get_joint_set("lsp14").index("neck") == 12
    with pytest.raises(ValueError, match="valid names: .*bigraph12.*coco17"):
        J.get_joint_set("coco18")
    with pytest.raises(ValueError, match="'tail'"):
        J.get_joint_set("smpl24").index("tail")
    with pytest.raises(Exception):
        J.get_joint_set("smpl24").name = "x"  # frozen


# ------------------------------------------------------------------ pelvis and flip functions
def test_hip_midpoint():
    x = torch.randn(3, 14, 3, dtype=torch.float64)
    assert torch.allclose(J.hip_midpoint(x), (x[:, J.LSP14_JOINT_NAMES.index("right_hip")]
                                             + x[:, J.LSP14_JOINT_NAMES.index("left_hip")]) / 2)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        J.hip_midpoint(torch.zeros(14, 3))


def _forward_kinematics(pose_aa: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Posed joint positions of the SMPL tree: pose (B, 24, 3), rest (24, 3) -> (B, 24, 3)."""
    rot = roma.rotvec_to_rotmat(pose_aa)
    glob_r, glob_t = [rot[:, 0]], [rest[0].expand(pose_aa.shape[0], 3)]
    for i in range(1, 24):
        p = J.SMPL_PARENTS[i]
        glob_t.append(glob_t[p] + glob_r[p] @ (rest[i] - rest[p]))
        glob_r.append(glob_r[p] @ rot[:, i])
    return torch.stack(glob_t, 1)


def test_flip_smpl_pose_mirrors_forward_kinematics():
    torch.manual_seed(0)
    # a left/right-symmetric rest skeleton (body's left at +x)
    half = torch.randn(24, 3, dtype=torch.float64)
    rest = torch.empty_like(half)
    for i, p in enumerate(J.SMPL_FLIP_PERM):
        if p == i:
            rest[i] = half[i] * torch.tensor([0.0, 1, 1], dtype=torch.float64)
        else:
            rest[i] = half[min(i, p)] * torch.tensor([1.0 if i < p else -1.0, 1, 1], dtype=torch.float64)
    pose = torch.randn(5, 24, 3, dtype=torch.float64)
    flipped = J.flip_smpl_pose(pose)
    joints = _forward_kinematics(pose, rest)
    joints_of_flipped = _forward_kinematics(flipped, rest)
    assert torch.allclose(joints_of_flipped, J.flip_joints_3d(joints, J.SMPL_FLIP_PERM), atol=1e-10)
    # (B, 72) layout gives the same, the pose perm is the joint perm expanded, and flipping twice is identity
    flat = J.flip_smpl_pose(pose.reshape(5, 72))
    assert flat.shape == (5, 72) and torch.equal(flat, flipped.reshape(5, 72))
    assert torch.equal(pose.reshape(5, 72)[:, J.SMPL_POSE_FLIP_PERM].reshape(5, 24, 3)[..., 0], flipped[..., 0])
    assert torch.equal(J.flip_smpl_pose(flipped), pose)
    with pytest.raises(ValueError, match=r"\(B, 72\) or \(B, 24, 3\)"):
        J.flip_smpl_pose(torch.zeros(2, 69))


def test_flip_keypoints_2d():
    kp = torch.tensor([[[0.5, 0.2, 1.0], [-0.3, 0.4, 0.0], [0.1, -0.9, 0.7]]])
    perm = [0, 2, 1]
    out = J.flip_keypoints_2d(kp, perm)
    assert torch.equal(out, torch.tensor([[[-0.5, 0.2, 1.0], [-0.1, -0.9, 0.7], [0.3, 0.4, 0.0]]]))
    px = J.flip_keypoints_2d(kp * 100 + 100, perm, image_width=200)
    assert torch.allclose(px, out * torch.tensor([100.0, 100, 100]) + torch.tensor([100.0, 100, 100]))
    assert torch.equal(J.flip_keypoints_2d(out, perm), kp)
    assert torch.equal(kp[0, 0, 0], torch.tensor(0.5))  # input untouched
    with pytest.raises(ValueError, match="3 joints"):
        J.flip_keypoints_2d(kp, [1, 0])


def test_flip_joints_3d_keeps_confidence():
    j = torch.randn(2, 24, 4)
    out = J.flip_joints_3d(j, J.J24_FLIP_PERM)
    assert torch.equal(out[:, 20], j[:, 21] * torch.tensor([-1.0, 1, 1, 1]))
    assert torch.equal(out[:, 19], j[:, 19] * torch.tensor([-1.0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"C>=3"):
        J.flip_joints_3d(torch.zeros(2, 24, 2), J.J24_FLIP_PERM)
