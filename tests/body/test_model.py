"""The open body model: acceptance checks on the exported SMPL pickle with plain ``smplx``, and
``body.model.BodyModel`` against independent computations on the same arrays."""
from __future__ import annotations

import json

import contextlib
import io

import numpy as np
import pytest
import smplx
import torch

from body.export import export_asset_set
from body.joints import (
    BODY_MODEL54_JOINT_NAMES,
    H36M17_JOINT_NAMES,
    SMPL_FLIP_PERM,
    SMPL_JOINT_NAMES,
    SMPLX_EXTRA_VERTEX_ID_KEYS,
    SPIN49_FROM_BODY_MODEL,
    flip_joints_3d,
    flip_smpl_pose,
)
from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat

MIRROR_X = np.array([-1.0, 1.0, 1.0])


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model(assets):
    return BodyModel(assets).double()


@pytest.fixture(scope="module")
def export_dir(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("open_export")
    export_asset_set(assets, out)
    return out


def _smplx(path, **kw):
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 betas
        return smplx.SMPL(model_path=str(path), **kw)


@pytest.fixture(scope="module")
def plain_smpl(export_dir):
    """Plain smplx on the exported pickle, exactly as another codebase would load it."""
    return _smplx(export_dir)


def _random_params(n, seed, pose_std=0.4, beta_std=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(n, 72, generator=g, dtype=torch.float64) * pose_std
    betas = torch.randn(n, 10, generator=g, dtype=torch.float64) * beta_std
    return pose.to(dtype), betas.to(dtype)


def _run_plain(smpl, pose, betas, **kw):
    with torch.no_grad():
        return smpl(betas=betas, global_orient=pose[:, :3], body_pose=pose[:, 3:], **kw)


# ------------------------------------------------------------------ acceptance: exported pickle + plain smplx
def test_exported_pickle_vertex_count(plain_smpl):
    n = plain_smpl.get_num_verts()
    assert abs(n - 6890) <= 0.05 * 6890, n
    assert plain_smpl.faces.max() == n - 1


def test_left_shoulder_rotation_about_forward_axis_raises_left_elbow(plain_smpl):
    pose = torch.zeros(1, 72)
    rest = _run_plain(plain_smpl, pose, torch.zeros(1, 10)).joints[0]
    pose[0, 16 * 3 + 2] = 1.2  # left shoulder (SMPL joint 16), +1.2 rad about +z (the body's forward axis)
    raised = _run_plain(plain_smpl, pose, torch.zeros(1, 10)).joints[0]
    rise = (raised[18, 1] - rest[18, 1]).item()
    assert rise > 0.15, f"left elbow rose by {rise:.3f} m"
    # The left arm is on +x, and the right arm did not move.
    assert rest[18, 0] > 0.2
    torch.testing.assert_close(raised[[17, 19, 21]], rest[[17, 19, 21]], atol=1e-6, rtol=0)
    # The shoulder is the pivot: the shoulder-elbow distance is preserved.
    d0 = (rest[18] - rest[16]).norm()
    d1 = (raised[18] - raised[16]).norm()
    assert abs(d0 - d1).item() < 1e-5


def test_first_beta_makes_the_body_taller(plain_smpl):
    betas = torch.zeros(2, 10)
    betas[0, 0], betas[1, 0] = 2.0, -2.0
    v = _run_plain(plain_smpl, torch.zeros(2, 72), betas).vertices
    height = v[..., 1].amax(1) - v[..., 1].amin(1)
    assert height[0] > height[1] + 0.05, f"heights for beta0=+2/-2: {height.tolist()}"
    assert 1.3 < height[1] < height[0] < 2.1, height.tolist()


@pytest.mark.parametrize("beta_std", [0.0, 1.0], ids=["mean_shape", "random_betas"])
def test_mirrored_pose_mirrors_the_joints(plain_smpl, beta_std):
    pose, betas = _random_params(6, seed=11, pose_std=0.4, beta_std=beta_std)
    joints = _run_plain(plain_smpl, pose, betas).joints[:, :24]
    joints_of_flipped = _run_plain(plain_smpl, flip_smpl_pose(pose), betas).joints[:, :24]
    expected = flip_joints_3d(joints, SMPL_FLIP_PERM)
    err = (joints_of_flipped - expected).norm(dim=-1).max().item()
    assert err < 1e-3, f"mirror mismatch {err * 1000:.3f} mm"
    # Not vacuous: the poses are not symmetric themselves.
    assert (joints - expected).norm(dim=-1).max().item() > 0.05


# ------------------------------------------------------------------ BodyModel vs plain smplx
def test_body_model_matches_plain_smplx(model, assets, export_dir):
    # smplx's default vertex ids are SMPL's; the export writes the open model's to vertex_ids.json.
    vids = json.loads((export_dir / "vertex_ids.json").read_text())
    plain = _smplx(export_dir, vertex_ids=vids).double()
    pose, betas = _random_params(5, seed=3, pose_std=0.5, beta_std=1.0, dtype=torch.float64)
    ref = _run_plain(plain, pose, betas)
    with torch.no_grad():
        out = model(betas, pose[:, 3:], pose[:, :3])
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, ref.joints[:, :24], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints54[:, :45], ref.joints, atol=1e-5, rtol=0)
    # The 21 vertex joints are the manifest's vertices of the posed mesh.
    ids = [assets.vertex_ids[k] for k in SMPLX_EXTRA_VERTEX_ID_KEYS]
    torch.testing.assert_close(out.joints54[:, 24:45], out.vertices[:, ids], atol=0, rtol=0)


def test_float32_body_model_matches_plain_smplx(assets, plain_smpl):
    model32 = BodyModel(assets)  # default dtype, as the networks use it
    pose, betas = _random_params(5, seed=4, pose_std=0.5, beta_std=1.0)
    ref = _run_plain(plain_smpl, pose, betas)
    with torch.no_grad():
        out = model32(betas, pose[:, 3:], pose[:, :3])
    assert out.vertices.dtype == torch.float32
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, ref.joints[:, :24], atol=1e-5, rtol=0)


def test_rotation_matrices_and_axis_angle_agree(model):
    pose, betas = _random_params(4, seed=5, pose_std=0.6, dtype=torch.float64)
    rot = axis_angle_to_rotmat(pose.reshape(4, 24, 3))
    with torch.no_grad():
        aa = model(betas, pose[:, 3:], pose[:, :3])
        rm = model(betas, rot[:, 1:], rot[:, :1])
        rm3 = model(betas, rot[:, 1:], rot[:, 0])  # (B, 3, 3) orient
        aa3 = model(betas, pose[:, 3:].reshape(4, 23, 3), pose[:, :3])  # (B, 23, 3) axis-angle
    # smplx's Rodrigues adds 1e-8 to the rotation vector before taking its norm: agreement is ~1e-8.
    for other in (rm, rm3, aa3):
        torch.testing.assert_close(other.vertices, aa.vertices, atol=1e-7, rtol=0)
        torch.testing.assert_close(other.joints54, aa.joints54, atol=1e-7, rtol=0)


def test_keypoints49_and_extra_joints(model, assets):
    pose, betas = _random_params(3, seed=8, dtype=torch.float64)
    with torch.no_grad():
        out = model(betas, pose[:, 3:], pose[:, :3])
    v = out.vertices.numpy()
    extra = np.einsum("kv,bvd->bkd", assets.J_regressor_extra.astype(np.float64), v)
    np.testing.assert_allclose(out.joints54[:, 45:].numpy(), extra, atol=1e-6)
    np.testing.assert_array_equal(out.keypoints49.numpy(), out.joints54.numpy()[:, SPIN49_FROM_BODY_MODEL])
    # Spot-check the named mapping: OpenPose nose = the nose vertex, ground-truth head top = extra row 3.
    assert SPIN49_FROM_BODY_MODEL[0] == BODY_MODEL54_JOINT_NAMES.index("nose")
    np.testing.assert_allclose(out.keypoints49[:, 0].numpy(), v[:, assets.vertex_ids["nose"]], atol=0)
    np.testing.assert_allclose(out.keypoints49[:, 25 + 13].numpy(), v[:, assets.vertex_ids["head_top"]], atol=1e-6)


def test_h36m_and_coco_regressors(model, assets):
    pose, betas = _random_params(3, seed=9, dtype=torch.float64)
    with torch.no_grad():
        v = model(betas, pose[:, 3:], pose[:, :3]).vertices
    vn = v.numpy()
    np.testing.assert_allclose(model.h36m17(v).numpy(), np.einsum("kv,bvd->bkd", assets.J_regressor_h36m.astype(np.float64), vn), atol=1e-6)
    np.testing.assert_allclose(model.coco17(v).numpy(), np.einsum("kv,bvd->bkd", assets.J_regressor_coco.astype(np.float64), vn), atol=1e-6)


def test_h36m_limb_joints_are_the_smpl_joints_under_a_global_rotation(model):
    """The manifest documents H36M hips/knees/ankles/shoulders/elbows/wrists/pelvis as SMPL joints.
    Without body pose, a global rotation acts linearly on vertices and joints alike, so the regressed
    H36M joints must equal the skeleton joints of the same name (left at H36M 1-3, right at 4-6)."""
    _, betas = _random_params(3, seed=10, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    orient = torch.randn(3, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = model(betas, torch.zeros(3, 69, dtype=torch.float64), orient)
    h36m = model.h36m17(out.vertices)
    names = ["pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle",
             "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist"]
    hi = [H36M17_JOINT_NAMES.index(n) for n in names]
    si = [SMPL_JOINT_NAMES.index(n) for n in names]
    torch.testing.assert_close(h36m[:, hi], out.joints[:, si], atol=1e-6, rtol=0)
    # H36M thorax is SMPL's neck.
    torch.testing.assert_close(h36m[:, H36M17_JOINT_NAMES.index("thorax")], out.joints[:, 12], atol=1e-6, rtol=0)


def test_translation_moves_everything_rigidly(model):
    pose, betas = _random_params(3, seed=12, dtype=torch.float64)
    transl = torch.tensor([[0.3, -1.0, 4.0], [0.0, 0.0, 0.0], [-2.0, 0.5, 10.0]], dtype=torch.float64)
    with torch.no_grad():
        a = model(betas, pose[:, 3:], pose[:, :3])
        b = model(betas, pose[:, 3:], pose[:, :3], transl=transl)
    t = transl[:, None]
    torch.testing.assert_close(b.vertices, a.vertices + t, atol=1e-9, rtol=0)
    # The 9 extra joints come from a float32 regressor whose rows sum to 1 within ~1e-7.
    torch.testing.assert_close(b.joints54, a.joints54 + t, atol=1e-6, rtol=0)
    torch.testing.assert_close(b.keypoints49, a.keypoints49 + t, atol=1e-6, rtol=0)
    torch.testing.assert_close(model.h36m17(b.vertices), model.h36m17(a.vertices) + t, atol=1e-6, rtol=0)
    torch.testing.assert_close(model.coco17(b.vertices), model.coco17(a.vertices) + t, atol=1e-6, rtol=0)


def test_rest_joints(model, assets):
    _, betas = _random_params(4, seed=13, dtype=torch.float64)
    v = assets.v_template.astype(np.float64) + np.einsum("vdk,bk->bvd", assets.shapedirs.astype(np.float64), betas.numpy())
    expected = np.einsum("jv,bvd->bjd", assets.J_regressor.astype(np.float64), v)
    with torch.no_grad():
        got = model.rest_joints(betas)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    # ... and they are the skeleton of the unposed body.
    with torch.no_grad():
        out = model(betas, torch.zeros(4, 69, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64))
    np.testing.assert_allclose(out.joints.numpy(), expected, atol=1e-6)


# ------------------------------------------------------------------ arrays
def test_regressors_are_convex(assets):
    for name in ("J_regressor", "J_regressor_extra", "J_regressor_h36m", "J_regressor_coco"):
        r = getattr(assets, name).astype(np.float64)
        assert r.min() >= 0.0, name
        np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-5, err_msg=name)


def test_skinning_weights_sum_to_one(assets):
    w = assets.weights.astype(np.float64)
    assert w.shape[1] == 24 and w.min() >= 0.0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)


def test_open_model_is_exactly_left_right_symmetric(assets):
    m = assets.mirror
    assert m is not None
    np.testing.assert_array_equal(m[m], np.arange(len(m)))  # an involution
    v = assets.v_template.astype(np.float64)
    np.testing.assert_allclose(v[m] * MIRROR_X, v, atol=1e-5)
    # Midline vertices (their own mirror) sit on x = 0; every other vertex has a distinct twin.
    mid = m == np.arange(len(m))
    assert 0 < mid.sum() < 0.1 * len(m)
    np.testing.assert_allclose(v[mid, 0], 0.0, atol=1e-6)
    # Shape directions are symmetric too (mirrored betas are the same betas).
    s = assets.shapedirs.astype(np.float64)
    np.testing.assert_allclose(s[m] * MIRROR_X[None, :, None], s, atol=1e-5)
    # Faces map to faces (with reversed orientation).
    faces = {tuple(np.roll(f, -int(np.argmin(f)))) for f in assets.faces}
    mirrored = {tuple(np.roll(f, -int(np.argmin(f)))) for f in m[assets.faces][:, ::-1]}
    assert faces == mirrored
    # Skinning weights and the joint regressor are mirror-consistent.
    np.testing.assert_allclose(assets.weights[m][:, SMPL_FLIP_PERM], assets.weights, atol=1e-5)
    np.testing.assert_allclose(assets.J_regressor[:, m], assets.J_regressor[SMPL_FLIP_PERM], atol=1e-6)


def test_manifest_joint_regressor_error_below_10mm(assets):
    fit = assets.manifest["fit"]
    assert fit["joint_regressor_heldout_mean_mm"] < 10.0, fit["joint_regressor_heldout_mean_mm"]
    per_joint = fit["joint_regressor_heldout_per_joint_mean_mm"]
    assert len(per_joint) == 24
    assert abs(np.mean(per_joint) - fit["joint_regressor_heldout_mean_mm"]) < 0.05
    assert assets.manifest["num_vertices"] == assets.num_vertices
    assert assets.manifest["num_faces"] == len(assets.faces)


def test_keypoints_regressed_from_the_rest_mesh_equal_the_forward_keypoints():
    """At zero pose the joint regressor on the mesh gives the kinematic joints exactly (posed: a few mm)."""
    import torch

    from body.model import BodyModel
    body = BodyModel.from_config("open")
    betas = torch.randn(2, 10, generator=torch.Generator().manual_seed(0))
    out = body(betas=betas, body_pose=torch.zeros(2, 69), global_orient=torch.zeros(2, 3))
    assert torch.allclose(body.keypoints49_from_vertices(out.vertices), out.keypoints49, atol=1e-5)
    posed = body(betas=betas, body_pose=torch.randn(2, 69, generator=torch.Generator().manual_seed(1)) * 0.2,
                 global_orient=torch.zeros(2, 3))
    err = (body.keypoints49_from_vertices(posed.vertices) - posed.keypoints49).norm(dim=-1)[:, 25:]
    assert err.mean() < 0.01
