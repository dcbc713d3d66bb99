"""Converter ``--fits``: SPIN's final fits (or EFT's) as SMPL pseudo ground truth for the in-the-wild sets."""
from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from runtime.errors import UserError
from tests.datamodules.spin_fixtures import make_spin_file, run, write_eft_json, write_final_fits


def test_final_fits_turn_has_smpl_on_exactly_where_valid_fit(tmp_path):
    """LSPET has no SMPL of its own: has_smpl == valid_fit row by row, and the fit is the supervision."""
    n = 6
    make_spin_file(tmp_path, "lspet", n=n)
    valid = np.array([1, 0, 1, 1, 0, 0])
    fits = write_final_fits(tmp_path / "lspet_fits.npz", n, valid)
    report, samples = run(tmp_path, "lspet", fits=str(tmp_path / "lspet_fits.npz"))
    assert [s.has_smpl for s in samples] == [bool(v) for v in valid]
    for s, v, pose, betas in zip(samples, valid, fits["pose"], fits["betas"]):
        if v:
            np.testing.assert_array_equal(s.pose, pose.astype(np.float32))
            np.testing.assert_array_equal(s.betas, betas.astype(np.float32))
        else:
            assert not s.pose.any() and not s.betas.any()
    assert report["fits"]["kind"] == "spin_npz" and report["fits"]["valid"] == 3
    assert report["notes"]["fits: rows supervised by a fit"] == 3
    assert report["notes"]["fits: rows without a valid fit"] == 3
    _, without = run(tmp_path, "lspet", overwrite=True)
    assert not any(s.has_smpl for s in without)   # the 70 % of a PyMAF batch without fits


def test_a_fit_with_any_beta_beyond_3_gets_all_its_betas_zeroed(tmp_path):
    n = 4
    make_spin_file(tmp_path, "coco", n=n)
    betas = np.full((n, 10), 0.5)
    betas[1, 7] = 3.2      # one extreme beta zeroes all ten
    betas[2, 0] = -3.01
    betas[3, 4] = 3.0      # |beta| = 3 is not beyond 3: kept
    fits = write_final_fits(tmp_path / "coco_fits.npz", n, np.ones(n), betas=betas)
    report, samples = run(tmp_path, "coco", fits=str(tmp_path / "coco_fits.npz"))
    assert all(s.has_smpl for s in samples)
    assert [bool(s.betas.any()) for s in samples] == [True, False, False, True]
    np.testing.assert_array_equal(samples[3].betas, betas[3].astype(np.float32))
    np.testing.assert_array_equal(samples[1].pose, fits["pose"][1].astype(np.float32))   # the pose stays
    assert report["notes"]["fits: betas zeroed (some |beta| > 3)"] == 2
    _, kept = run(tmp_path, "coco", fits=str(tmp_path / "coco_fits.npz"), fits_extreme_betas="keep", overwrite=True)
    np.testing.assert_array_equal(kept[1].betas, betas[1].astype(np.float32))


def test_ground_truth_smpl_wins_over_a_fit(tmp_path):
    """MPI-INF-3DHP's npz carries its own fits (has_smpl on even rows): those stay; a valid final fit supervises
    only the rows without: has_smpl = has_smpl_npz OR valid_fit."""
    n = 4
    d = make_spin_file(tmp_path, "mpi_inf_3dhp", n=n)
    valid = np.array([0, 1, 1, 0])
    fits = write_final_fits(tmp_path / "fits.npz", n, valid)
    _, samples = run(tmp_path, "mpi_inf_3dhp", fits=str(tmp_path / "fits.npz"))
    own = d["has_smpl"] > 0
    assert [s.has_smpl for s in samples] == list(own | (valid > 0))
    for i, s in enumerate(samples):
        if own[i]:
            np.testing.assert_array_equal(s.pose, d["pose"][i].astype(np.float32))
        elif valid[i]:
            np.testing.assert_array_equal(s.pose, fits["pose"][i].astype(np.float32))


def test_fits_as_npy_of_pose_and_betas_are_all_valid(tmp_path):
    n = 3
    make_spin_file(tmp_path, "mpii", n=n)
    params = np.random.default_rng(0).normal(0, 0.3, (n, 82))
    np.save(tmp_path / "mpii.npy", params)
    _, samples = run(tmp_path, "mpii", fits=str(tmp_path / "mpii.npy"))
    assert all(s.has_smpl for s in samples)
    np.testing.assert_array_equal(samples[2].betas, params[2, 72:].astype(np.float32))


def test_eft_fits_are_matched_by_image_and_nearest_box(tmp_path):
    n = 3
    d = make_spin_file(tmp_path, "coco", n=n)
    aa = np.random.default_rng(3).normal(0, 0.4, (24, 3))
    rot = roma.rotvec_to_rotmat(torch.tensor(aa)).numpy()
    name = lambda i: str(d["imgname"][i]).split("/")[-1]   # noqa: E731  EFT stores base names
    side = 200 * d["scale"]
    entries = [
        {"imageName": name(0), "parm_pose": rot.tolist(), "parm_shape": [0.1] * 10,
         "bbox_center": (d["center"][0] + 0.1 * side[0]).tolist(), "bbox_scale": 1.0},            # row 0
        {"imageName": name(1), "parm_pose": rot.tolist(), "parm_shape": [0.2] * 10,
         "bbox_center": (d["center"][1] + 0.5 * side[1]).tolist(), "bbox_scale": 1.0},            # too far
        {"imageName": "elsewhere.jpg", "parm_pose": rot.tolist(), "parm_shape": [0.3] * 10,
         "bbox_center": d["center"][2].tolist(), "bbox_scale": 1.0},                              # no image
    ]
    write_eft_json(tmp_path / "eft.json", entries)
    report, samples = run(tmp_path, "coco", fits=str(tmp_path / "eft.json"))
    assert [s.has_smpl for s in samples] == [True, False, False]
    np.testing.assert_allclose(samples[0].pose, aa.reshape(72), atol=1e-5)
    np.testing.assert_allclose(samples[0].betas, 0.1, atol=1e-7)
    assert report["fits"]["kind"] == "eft_json"
    assert report["notes"]["fits: EFT entries matching no npz row"] == 2


def test_fits_errors_are_one_line(tmp_path):
    make_spin_file(tmp_path, "lsp", n=3)
    write_final_fits(tmp_path / "short.npz", 2, np.ones(2))
    np.savez(tmp_path / "nokeys.npz", pose=np.zeros((3, 72)))
    (tmp_path / "fits.txt").write_text("x")
    cases = [(tmp_path / "short.npz", "2 fits for an npz of 3 rows"),
             (tmp_path / "nokeys.npz", "lacks key(s) betas, valid_fit"),
             (tmp_path / "fits.txt", "unknown file type .txt"),
             (tmp_path / "none.npz", "no such file")]
    for path, message in cases:
        with pytest.raises(UserError) as err:
            run(tmp_path, "lsp", fits=str(path), overwrite=True)
        assert message in str(err.value) and "\n" not in str(err.value), path
    with pytest.raises(UserError, match="choose zero or keep"):
        run(tmp_path, "lsp", fits=str(tmp_path / "short.npz"), fits_extreme_betas="clip")
