"""Asset sets by name: the errors a user sees, the command-line error path, and the ``smpl`` loader on
a fake licensed folder (the open model exported in SMPL's file formats)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import body.assets as body_assets
from body.assets import BodyAssetError, load_asset_set
from body.export import export_asset_set
from body.model import BodyModel
from runtime.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
SMPL_URL = "https://smpl.is.tue.mpg.de"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and msg, repr(msg)
    return msg


@pytest.fixture(scope="module")
def open_assets():
    return load_asset_set("open")


# ------------------------------------------------------------------ names and genders
def test_unknown_asset_set_names_the_choices():
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("smplx")
    msg = _one_line(e)
    assert "'smplx'" in msg and "open" in msg and "smpl" in msg
    assert isinstance(e.value, UserError)


def test_unknown_gender_names_the_choices():
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("open", gender="other")
    msg = _one_line(e)
    assert "'other'" in msg
    for g in ("neutral", "male", "female"):
        assert g in msg


def test_open_has_only_a_neutral_gender():
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("open", gender="male")
    msg = _one_line(e)
    assert "neutral" in msg and "'male'" in msg and "smpl" in msg


# ------------------------------------------------------------------ missing licensed files
def test_smpl_without_a_folder(monkeypatch):
    monkeypatch.delenv("SMPL_DIR", raising=False)
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("smpl")
    msg = _one_line(e)
    assert "SMPL_NEUTRAL.pkl" in msg and SMPL_URL in msg and "SMPL_DIR" in msg


def test_smpl_with_an_empty_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SMPL_DIR", raising=False)
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("smpl", smpl_dir=str(tmp_path))
    msg = _one_line(e)
    assert "SMPL_NEUTRAL.pkl" in msg and SMPL_URL in msg and str(tmp_path) in msg
    # The environment variable is read when no folder is given.
    monkeypatch.setenv("SMPL_DIR", str(tmp_path))
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("smpl")
    assert str(tmp_path) in _one_line(e)


def test_smpl_gendered_file_name(tmp_path):
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("smpl", gender="female", smpl_dir=str(tmp_path))
    msg = _one_line(e)
    assert "SMPL_FEMALE.pkl" in msg and "basicmodel_f_lbs_10_207_0_v1.1.0.pkl" in msg


def test_missing_spin_regressors_are_named(open_assets, tmp_path):
    export_asset_set(open_assets, tmp_path)
    (tmp_path / "J_regressor_extra.npy").unlink()
    (tmp_path / "J_regressor_h36m.npy").unlink()
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("smpl", smpl_dir=str(tmp_path))
    msg = _one_line(e)
    assert "J_regressor_extra.npy" in msg and "SPIN" in msg
    np.save(tmp_path / "J_regressor_extra.npy", open_assets.J_regressor_extra)
    with pytest.raises(BodyAssetError) as e:
        load_asset_set("smpl", smpl_dir=str(tmp_path))
    assert "J_regressor_h36m.npy" in _one_line(e)


# ------------------------------------------------------------------ command line
def _cli_env():
    env = {k: v for k, v in os.environ.items() if k != "SMPL_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def test_cli_user_error_is_one_line_and_exit_code_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cli.export_body", "--asset-set", "smpl", "--out", str(tmp_path / "out")],
                       cwd=REPO_ROOT, env=_cli_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "SMPL_NEUTRAL.pkl" in lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_exports_the_open_model(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cli.export_body", "--asset-set", "open", "--out", str(tmp_path)],
                       cwd=REPO_ROOT, env=_cli_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = {"SMPL_NEUTRAL.pkl", "mesh_downsampling.npz", "J_regressor_extra.npy", "J_regressor_h36m.npy",
             "smpl_mean_params.npz", "vertex_ids.json"}
    assert {p.name for p in tmp_path.iterdir()} == names
    assert {Path(line).name for line in r.stdout.split()} == names


# ------------------------------------------------------------------ a fake licensed folder
@pytest.fixture
def fake_smpl_dir(open_assets, tmp_path):
    export_asset_set(open_assets, tmp_path)
    (tmp_path / "mesh_downsampling.npz").unlink()
    (tmp_path / "smpl_mean_params.npz").unlink()
    return tmp_path


def _assert_same_matrices(a, b, atol):
    for ma, mb in zip(a, b):
        assert ma.shape == mb.shape
        d = abs(ma.tocsr() - mb.tocsr())
        assert d.nnz == 0 or d.max() <= atol


def test_licensed_folder_derives_and_caches_the_rest(open_assets, fake_smpl_dir, monkeypatch):
    a = load_asset_set("smpl", smpl_dir=str(fake_smpl_dir))
    assert a.name == "smpl" and a.gender == "neutral"
    np.testing.assert_allclose(a.v_template, open_assets.v_template, atol=1e-7)
    np.testing.assert_array_equal(a.faces, open_assets.faces)
    np.testing.assert_allclose(a.shapedirs, open_assets.shapedirs, atol=1e-7)
    np.testing.assert_allclose(a.J_regressor, open_assets.J_regressor, atol=1e-7)
    np.testing.assert_allclose(a.J_regressor_extra, open_assets.J_regressor_extra, atol=1e-7)
    np.testing.assert_allclose(a.J_regressor_h36m, open_assets.J_regressor_h36m, atol=1e-7)
    # Derived: parts (same rule as the open build), mean parameters (the open ones, zero shape).
    np.testing.assert_array_equal(a.part24, open_assets.part24)
    np.testing.assert_array_equal(a.part_lsp6, open_assets.part_lsp6)
    np.testing.assert_allclose(a.iuv, open_assets.iuv, atol=1e-4)
    np.testing.assert_allclose(a.mean_pose, open_assets.mean_pose)
    np.testing.assert_array_equal(a.mean_shape, np.zeros(10))
    # The derived COCO regressor is convex and puts the shoulders on SMPL's shoulder joints.
    assert a.J_regressor_coco.shape == (17, a.num_vertices) and a.J_regressor_coco.min() >= 0
    np.testing.assert_allclose(a.J_regressor_coco.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a.J_regressor_coco[5], a.J_regressor[16])
    # The hierarchy is derived, near GraphCMR's sizes, and cached next to the files.
    counts = a.hierarchy.num_vertices
    assert counts[0] == 6890
    for got, want in zip(counts[1:], (1723, 431)):
        assert abs(got - want) <= 0.05 * want, counts
    cache = fake_smpl_dir / "meshrec_hierarchy.npz"
    assert cache.exists()

    # A second load reads the cache: building is impossible now.
    def no_build(*args, **kwargs):
        raise AssertionError("the hierarchy was rebuilt instead of read from the cache")

    monkeypatch.setattr(body_assets, "build_mesh_hierarchy", no_build)
    b = load_asset_set("smpl", smpl_dir=str(fake_smpl_dir))
    assert b.hierarchy.num_vertices == counts
    _assert_same_matrices(b.hierarchy.down, a.hierarchy.down, 0)
    _assert_same_matrices(b.hierarchy.up, a.hierarchy.up, 1e-7)
    _assert_same_matrices(b.hierarchy.adjacency, a.hierarchy.adjacency, 0)

    # GraphCMR's mesh_downsampling.npz, when present, wins over the cache and is read faithfully.
    export_asset_set(open_assets, fake_smpl_dir)
    c = load_asset_set("smpl", smpl_dir=str(fake_smpl_dir))
    oh = open_assets.hierarchy
    assert c.hierarchy.num_vertices == oh.num_vertices
    _assert_same_matrices(c.hierarchy.down, oh.down, 0)
    _assert_same_matrices(c.hierarchy.up, oh.up, 0)
    _assert_same_matrices(c.hierarchy.adjacency, oh.adjacency, 0)
    for fc, fo in zip(c.hierarchy.faces, oh.faces):
        np.testing.assert_array_equal(fc, fo)
    # ... as are SPIN's smpl_mean_params.npz.
    np.testing.assert_allclose(c.mean_cam, open_assets.mean_cam)


def test_body_model_on_the_licensed_folder_poses_like_the_open_one(fake_smpl_dir):
    g = torch.Generator().manual_seed(0)
    betas = torch.randn(2, 10, generator=g)
    pose = torch.randn(2, 72, generator=g) * 0.4
    m_open = BodyModel.from_config("open")
    m_smpl = BodyModel.from_config("smpl", smpl_dir=str(fake_smpl_dir))
    with torch.no_grad():
        a = m_open(betas, pose[:, 3:], pose[:, :3])
        b = m_smpl(betas, pose[:, 3:], pose[:, :3])
    torch.testing.assert_close(b.vertices, a.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.joints, a.joints, atol=1e-5, rtol=0)
    torch.testing.assert_close(m_smpl.h36m17(b.vertices), m_open.h36m17(a.vertices), atol=1e-5, rtol=0)
