"""Per-vertex part labels (24 SMPL parts, LSP 6 parts) and the derived IUV chart of the open model."""
from __future__ import annotations

import numpy as np
import pytest

from body.joints import SMPL_FLIP_PERM, SMPL_JOINT_NAMES, SMPL_PARENTS
from body.parts import LSP6_PART_NAMES, lsp6_labels, part_labels_from_weights, part_uv, vertex_iuv


@pytest.fixture(scope="module")
def rest_joints(assets):
    return assets.J_regressor.astype(np.float64) @ assets.v_template.astype(np.float64)


def _expected_lsp6(name: str) -> str:
    """The LSP part of an SMPL part, from its name alone (the documented grouping: UP's, the neck in the torso)."""
    if name == "head":
        return "head"
    side = "left" if name.startswith("left_") else "right" if name.startswith("right_") else None
    if side and any(k in name for k in ("shoulder", "elbow", "wrist", "hand")):
        return f"{side}_arm"
    if side and any(k in name for k in ("hip", "knee", "ankle", "foot")):
        return f"{side}_leg"
    return "torso"  # pelvis, spines, collars, neck


def test_every_part_has_vertices_and_labels_follow_the_weights(assets):
    counts = np.bincount(assets.part24, minlength=24)
    assert len(counts) == 24 and (counts > 0).all(), counts
    np.testing.assert_array_equal(assets.part24, part_labels_from_weights(assets.weights))
    # Each vertex's label is a part whose weight is maximal for it.
    w = assets.weights
    np.testing.assert_array_equal(w[np.arange(len(w)), assets.part24], w.max(1))


def test_parts_are_where_their_joints_are(assets, rest_joints):
    """Anatomical sanity in SMPL's axes (+x the body's left, y up)."""
    v = assets.v_template
    p = assets.part24
    for j, name in enumerate(SMPL_JOINT_NAMES):
        centre = v[p == j].mean(0)
        if name.startswith("left_"):
            assert centre[0] > 0, name
        elif name.startswith("right_"):
            assert centre[0] < 0, name
        # The part is around its bone (joint -> its only child; the joint itself for leaves and forks).
        a = rest_joints[j]
        b = rest_joints[SMPL_PARENTS.index(j)] if SMPL_PARENTS.count(j) == 1 else a
        t = np.clip((centre - a) @ (b - a) / max((b - a) @ (b - a), 1e-12), 0.0, 1.0)
        dist = np.linalg.norm(centre - (a + t * (b - a)))
        assert dist < 0.12, (name, dist)
    assert v[p == 15, 1].min() > rest_joints[12, 1] - 0.05  # the head is above the neck
    assert v[p == 10, 1].max() < rest_joints[4, 1]  # the left foot is below the left knee


def test_lsp6_labels_match_the_24_part_map(assets):
    lsp = assets.part_lsp6
    assert set(np.unique(lsp)) == set(range(1, 7))
    np.testing.assert_array_equal(lsp, lsp6_labels(assets.part24))
    for j, name in enumerate(SMPL_JOINT_NAMES):
        want = LSP6_PART_NAMES.index(_expected_lsp6(name))
        got = np.unique(lsp[assets.part24 == j])
        assert got.tolist() == [want], (name, got, want)
    # Spelled out for the cases a user would check first.
    assert (lsp[assets.part24 == 15] == 1).all()  # head
    assert (lsp[np.isin(assets.part24, [16, 18, 20, 22])] == 3).all()  # left arm
    assert (lsp[np.isin(assets.part24, [17, 19, 21, 23])] == 4).all()  # right arm
    assert (lsp[np.isin(assets.part24, [1, 4, 7, 10])] == 5).all()  # left leg


def test_labels_are_mirror_consistent(assets):
    m = assets.mirror
    flip = np.asarray(SMPL_FLIP_PERM)
    agree24 = (assets.part24[m] == flip[assets.part24]).mean()
    assert agree24 >= 0.99, f"{agree24:.4f} of vertices have mirror-consistent 24-part labels"
    lsp_flip = np.array([0, 1, 2, 4, 3, 6, 5])
    agree6 = (assets.part_lsp6[m] == lsp_flip[assets.part_lsp6]).mean()
    assert agree6 >= 0.99, f"{agree6:.4f} of vertices have mirror-consistent LSP labels"


def test_iuv_layout(assets, rest_joints):
    iuv = assets.iuv
    assert iuv.shape == (assets.num_vertices, 3)
    np.testing.assert_array_equal(iuv[:, 0], assets.part24 + 1)
    assert iuv[:, 0].min() == 1 and iuv[:, 0].max() == 24
    assert iuv[:, 1:].min() >= 0.0 and iuv[:, 1:].max() <= 1.0
    # U is normalised per part: it spans [0, 1] in every part.
    for j in range(24):
        u = iuv[assets.part24 == j, 1]
        assert u.min() < 1e-6 and u.max() > 1 - 1e-6, j
    # The stored chart is the one the module computes from the rest body.
    again = vertex_iuv(assets.v_template.astype(np.float64), rest_joints, np.asarray(SMPL_PARENTS), assets.part24)
    np.testing.assert_allclose(iuv, again, atol=1e-4)


LIMBS = ["left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder", "right_shoulder",
         "left_elbow", "right_elbow"]


@pytest.mark.parametrize("limb", LIMBS)
def test_u_runs_along_the_bone(assets, rest_joints, limb):
    j = SMPL_JOINT_NAMES.index(limb)
    child = SMPL_PARENTS.index(j)  # the limb's only child joint, from the kinematic tree
    assert SMPL_PARENTS.count(j) == 1
    m = assets.part24 == j
    along = (assets.v_template[m] - rest_joints[j]) @ (rest_joints[child] - rest_joints[j])
    r = np.corrcoef(along, assets.iuv[m, 1])[0, 1]
    assert r > 0.9, f"{limb}: correlation of U with the bone axis {r:.3f}"


@pytest.mark.parametrize("limb", LIMBS)
def test_v_runs_around_the_bone(assets, limb):
    """V is an azimuth: on a limb it covers most of the circle."""
    v = np.sort(assets.iuv[assets.part24 == SMPL_JOINT_NAMES.index(limb), 2])
    largest_gap = max(np.diff(v).max(), 1 - v[-1] + v[0])
    assert largest_gap < 0.2, f"{limb}: V leaves a gap of {largest_gap:.2f} of the circle"


def test_iuv_mirror_rule(assets):
    """What a horizontal flip of an IUV map needs: the mirror vertex has the flipped part, the same U,
    and V -> (0.5 - V) mod 1 (the azimuth reflected)."""
    m = assets.mirror
    iuv = assets.iuv.astype(np.float64)
    np.testing.assert_array_equal(iuv[m, 0] - 1, np.asarray(SMPL_FLIP_PERM)[assets.part24])
    np.testing.assert_allclose(iuv[m, 1], iuv[:, 1], atol=1e-5)
    d = np.abs(iuv[m, 2] - (0.5 - iuv[:, 2]) % 1.0)
    assert np.minimum(d, 1 - d).max() < 1e-5


def test_part_uv_on_a_cylinder():
    """A known answer: points on a cylinder around a bone from (0,0,0) to (0,1,0)."""
    rng = np.random.default_rng(0)
    h = rng.uniform(0.0, 1.0, 200)
    phi = rng.uniform(-np.pi, np.pi, 200)
    verts = np.stack([0.1 * np.cos(phi), h, 0.1 * np.sin(phi)], 1)
    joints = np.zeros((24, 3))
    joints[18] = [0.0, 1.0, 0.0]  # part 16 (left shoulder) points at joint 18
    joints[13] = [0.0, -1.0, 0.0]
    part = np.full(200, 16)
    uv = part_uv(verts, joints, np.asarray(SMPL_PARENTS), part)
    np.testing.assert_allclose(uv[:, 0], (h - h.min()) / (h.max() - h.min()), atol=1e-12)
    # V is the azimuth, up to an offset and direction: equal angles give equal V, and V is periodic.
    dv = (uv[:, 1, None] - uv[None, :, 1]) % 1.0
    dphi = ((phi[:, None] - phi[None, :]) / (2 * np.pi)) % 1.0
    err = np.minimum(np.abs(dv - dphi), 1 - np.abs(dv - dphi))
    err_rev = np.minimum(np.abs(dv - (1 - dphi) % 1.0), 1 - np.abs(dv - (1 - dphi) % 1.0))
    assert min(err.max(), err_rev.max()) < 1e-9
