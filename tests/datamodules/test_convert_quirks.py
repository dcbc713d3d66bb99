"""SPIN-format converters: units, joint orders, genders, SMPL flags, masks, EXIF, body models, npz errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from body.assets import BodyAssetError
from body.joints import BIGRAPH12_JOINT_NAMES, OPENPOSE25_JOINT_NAMES, SPIN24_GT_JOINT_NAMES
from body.parts import LSP6_PART_NAMES
from datamodules.convert.crop import crop_image, crop_labels
from datamodules.convert.keypoints import (H36M17_TO_J24, bigraph12_from_openpose, bigraph12_from_part,
                                           clean_confidence_rows, crop_to_original, keypoints_to_crop)
from datamodules.convert.masks import map_part_labels, read_label_png
from datamodules.convert.spin_npz import SpinNpz, normalise_gender
from datamodules.convert.datasets import DATASETS
from datamodules.sample import person_crop_affine
from runtime.errors import UserError
from tests.datamodules.spin_fixtures import (CROP, H36M17_TO_J24_BY_HAND, J24_TO_BIGRAPH12_BY_HAND,
                                             OPENPOSE25_TO_BIGRAPH12_BY_HAND, make_spin_file, part_label_image,
                                             run, save_image)


# ----------------------------------------------------------------------------------------------
# Units
# ----------------------------------------------------------------------------------------------
def test_millimetre_S_is_a_clear_error_and_s_units_mm_converts(tmp_path):
    d = make_spin_file(tmp_path, "mpi_inf_3dhp", n=3, s_factor=1000.0)
    with pytest.raises(UserError, match=r"S looks like millimetres \(max \|coordinate\| [\d.]+ > 10.*--s-units mm"):
        run(tmp_path, "mpi_inf_3dhp")
    report, samples = run(tmp_path, "mpi_inf_3dhp", s_units="mm")
    for i, s in enumerate(samples):
        expect = d["S"][i].copy()
        expect[:, :3] /= 1000.0
        np.testing.assert_allclose(s.joints_3d, expect, rtol=1e-6, atol=1e-7)
        assert np.abs(s.joints_3d[:, :3]).max() < 5.0  # metres
    assert report["s_max_abs_metres"] < 5.0 and report["settings"]["s_units"] == "mm"


def test_s_units_mm_on_metres_is_refused(tmp_path):
    make_spin_file(tmp_path, "h36m", n=2)
    with pytest.raises(UserError, match="already looks like metres"):
        run(tmp_path, "h36m", s_units="mm", overwrite=True)


def test_h36m_S_stays_root_relative_metres_and_nan_joints_are_dropped(tmp_path):
    d = make_spin_file(tmp_path, "h36m", n=2)
    d["S"][1, 3, 0] = np.nan
    np.savez(tmp_path / "h36m.npz", **d)
    report, samples = run(tmp_path, "h36m")
    assert samples[0].joints_3d[14].tolist() == [0, 0, 0, 1]  # pelvis slot, root-relative
    assert samples[1].joints_3d[3].tolist() == [0, 0, 0, 0] and samples[1].has_3d
    assert report["notes"]["S: rows with NaN/inf zeroed"] == 1


# ----------------------------------------------------------------------------------------------
# Joint orders
# ----------------------------------------------------------------------------------------------
def test_index_maps_match_the_names_and_spin_tables():
    assert H36M17_TO_J24 == H36M17_TO_J24_BY_HAND
    op = np.stack([np.arange(25), 100 + np.arange(25), np.ones(25)], 1).astype(float)
    gt = np.stack([np.arange(24), 100 + np.arange(24), np.ones(24)], 1).astype(float)
    for name, row_op, row_gt in zip(BIGRAPH12_JOINT_NAMES, bigraph12_from_openpose(op), bigraph12_from_part(gt)):
        assert OPENPOSE25_JOINT_NAMES[int(row_op[0])] == name
        assert SPIN24_GT_JOINT_NAMES[int(row_gt[0])] == name
    assert bigraph12_from_openpose(op)[:, 0].tolist() == OPENPOSE25_TO_BIGRAPH12_BY_HAND
    assert bigraph12_from_part(gt)[:, 0].tolist() == J24_TO_BIGRAPH12_BY_HAND


def test_keypoint_crop_transform_round_trip_and_missing_rows():
    affine = person_crop_affine([300.0, 200.0], 1.3, 320)
    kp, n_bad = clean_confidence_rows(np.array([[310.2, 190.7, 0.8], [1.0, 2.0, 0.0], [np.nan, 3, 1], [5, 6, 3.0]]))
    assert n_bad == 1 and kp[1].tolist() == [0, 0, 0] and kp[2].tolist() == [0, 0, 0] and kp[3, 2] == 1.0
    crop = keypoints_to_crop(kp, affine)
    assert crop[1].tolist() == [0, 0, 0]  # missing stays zeros
    np.testing.assert_allclose(crop_to_original(crop, affine)[[0, 3], :2], kp[[0, 3], :2], atol=1e-9)
    # The crop centre is the box centre in continuous coordinates.
    np.testing.assert_allclose(keypoints_to_crop(np.array([[299.5, 199.5, 1.0]]), affine)[0, :2], [160, 160])


# ----------------------------------------------------------------------------------------------
# Genders and SMPL flags
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,expected", [("m", "male"), ("f", "female"), (b"m", "male"), ("F", "female"),
                                          ("male", "male"), ("x", None), ("", None), ("0", None)])
def test_gender_mapping(raw, expected):
    assert normalise_gender(raw) == expected


def test_gender_field_with_open_body_and_unknown_gender_note(tmp_path, capsys):
    make_spin_file(tmp_path, "3dpw", n=4)  # genders m, f, x, m
    report, samples = run(tmp_path, "3dpw", split="test")
    assert [s.gender for s in samples] == ["male", "female", "neutral", "male"]
    assert report["notes"]["gender 'x' -> neutral"] == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("note: --body open has only a neutral body model")
    assert report["notes"]["printed"][0].startswith("--body open")


def test_body_smpl_without_files_fails_before_writing(tmp_path):
    make_spin_file(tmp_path, "3dpw", n=1)
    (tmp_path / "smpl").mkdir()
    with pytest.raises(BodyAssetError, match="SMPL_MALE.pkl"):
        run(tmp_path, "3dpw", body="smpl", smpl_dir=str(tmp_path / "smpl"))
    assert not (tmp_path / "out").exists()


def test_has_smpl_defaults_flags_and_placeholders(tmp_path):
    d = make_spin_file(tmp_path, "up3d", n=3)
    d["pose"][2] = 0.0  # an all-zero pose is a placeholder, not a fit
    np.savez(tmp_path / "up3d.npz", **d)
    report, samples = run(tmp_path, "up3d")
    assert [s.has_smpl for s in samples] == [True, True, False]  # default 1 where pose exists
    assert report["notes"]["has_smpl set False: pose all zeros (a placeholder)"] == 1
    d["has_smpl"] = np.array([0, 1, 0])
    np.savez(tmp_path / "up3d.npz", **d)
    _, samples = run(tmp_path, "up3d", overwrite=True)
    assert [s.has_smpl for s in samples] == [False, True, False]
    np.testing.assert_array_equal(samples[0].pose, d["pose"][0].astype(np.float32))  # kept, not supervised


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------
def test_up3d_part_labels_map_to_ours():
    up = np.array([[0, 1, 2, 3, 4, 5, 6, 255, 9, 7]])
    ours, unknown = map_part_labels(up)
    names = ["background", "head", "torso", "right_arm", "left_arm", "right_leg", "left_leg"]
    assert ours[0, :7].tolist() == [LSP6_PART_NAMES.index(n) for n in names] == [0, 1, 2, 4, 3, 6, 5]
    assert ours[0, 7:].tolist() == [255, 255, 255] and unknown == 2


def test_lsp_test_masks_are_cropped_with_nearest_labels_and_ignore_outside(tmp_path):
    make_spin_file(tmp_path, "lsp", n=2, scale=0.6)
    report, samples = run(tmp_path, "lsp", split="test", crop_size=CROP)
    assert report["mask_from"] == "partname" and report["notes"]["mask: samples with unknown part labels set to 255"] == 2
    up = part_label_image()
    ours, _ = map_part_labels(up)
    for s in samples:
        # Each crop pixel centre, mapped to the original image, reads the original label (nearest).
        yy, xx = np.mgrid[0:CROP, 0:CROP] + 0.5
        ox = s.crop_to_image[0, 0] * xx + s.crop_to_image[0, 2]
        oy = s.crop_to_image[1, 1] * yy + s.crop_to_image[1, 2]
        inside = (ox >= 0) & (ox < up.shape[1]) & (oy >= 0) & (oy < up.shape[0])
        expect = np.full((CROP, CROP), 255, np.uint8)
        expect[inside] = ours[np.floor(oy[inside]).astype(int), np.floor(ox[inside]).astype(int)]
        assert (s.mask == expect).mean() > 0.995  # pixel centres exactly on a band edge may round either way
        assert (s.mask[~inside] == 255).all() and (~inside).any()


def test_silhouette_mask_mode_and_missing_mask_file(tmp_path):
    d = make_spin_file(tmp_path, "lsp", n=3, keys=("maskname",))
    (tmp_path / "images" / str(d["partname"][1])).unlink()
    report, samples = run(tmp_path, "lsp", split="test", mask="silhouette")
    assert report["mask_from"] == "maskname" and len(samples) == 3
    assert all(set(np.unique(s.mask)) <= {0, 1, 255} and (s.mask == 1).any() for s in samples)
    report, samples = run(tmp_path, "lsp", split="test", overwrite=True)  # auto: parts; one is missing
    assert len(samples) == 2 and report["skipped"]["reasons"] == {"mask: missing file": 1}
    report, samples = run(tmp_path, "lsp", split="test", overwrite=True, mask="none")
    assert len(samples) == 3 and not any(s.has_mask for s in samples)


def test_asking_for_absent_masks_fails_before_touching_old_shards(tmp_path):
    make_spin_file(tmp_path, "coco", n=1)
    run(tmp_path, "coco")
    with pytest.raises(UserError, match="--mask parts: .* has no partname key"):
        run(tmp_path, "coco", mask="parts", overwrite=True)
    assert (tmp_path / "out" / "coco-000000.tar").exists()


def test_mask_root_separate_from_images(tmp_path):
    d = make_spin_file(tmp_path, "lsp", n=1)
    for key, folder in (("partname", "parts"), ("maskname", "seg")):
        (tmp_path / "upi-s1h" / folder).mkdir(parents=True)
        (tmp_path / "images" / str(d[key][0])).rename(tmp_path / "upi-s1h" / str(d[key][0]))
    _, samples = run(tmp_path, "lsp", masks=str(tmp_path / "upi-s1h"))
    assert samples[0].has_mask and samples[0].silhouette_original is not None


def test_label_png_readers(tmp_path):
    lab = part_label_image(20, 10)
    Image.fromarray(lab).save(tmp_path / "l.png")
    assert np.array_equal(read_label_png(str(tmp_path / "l.png")), lab)
    Image.fromarray(np.repeat(lab[..., None], 3, 2)).save(tmp_path / "rgb_grey.png")
    assert np.array_equal(read_label_png(str(tmp_path / "rgb_grey.png")), lab)
    pal = Image.fromarray(lab, mode="L").convert("P")
    pal.putpalette([(i * 37) % 256 for i in range(768)])
    pal.save(tmp_path / "p.png")
    assert np.array_equal(read_label_png(str(tmp_path / "p.png")), np.array(pal))  # palette indices
    colour = np.zeros((10, 20, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match="colour-coded"):
        read_label_png(str(tmp_path / "c.png"))


def test_colour_coded_part_png_is_skipped_with_reason(tmp_path):
    d = make_spin_file(tmp_path, "up3d", n=2)
    colour = np.zeros((180, 240, 3), np.uint8)
    colour[:, :, 1] = 90
    save_image(tmp_path / "images" / str(d["partname"][0]), colour)
    report, samples = run(tmp_path, "up3d")
    assert len(samples) == 1 and report["skipped"]["reasons"] == {"mask: unknown encoding": 1}


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------
def test_exif_orientation_is_applied_like_cv2_imread(tmp_path):
    d = make_spin_file(tmp_path, "coco", n=1)
    path = tmp_path / "images" / str(d["imgname"][0])
    stored = np.zeros((240, 180, 3), np.uint8)  # portrait pixels, displayed as landscape 240 x 180
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(stored).save(path, exif=exif)
    report, (s,) = run(tmp_path, "coco")
    assert s.image_size.tolist() == [240, 180] and report["notes"]["images with EXIF orientation applied"] == 1


def test_large_box_prefilter_keeps_alignment():
    """A box of 8 source px per crop px is box-averaged first; content stays where the affine puts it."""
    img = np.zeros((1200, 1600, 3), np.uint8)
    img[600:680, 800:880] = 255  # an 80 x 80 square: 10 x 10 crop pixels
    affine = np.array([[8.0, 0, 440.0], [0, 8.0, 240.0]], np.float32)
    crop = crop_image(img, affine, 100)
    bright = np.argwhere(crop[..., 0] > 127)
    assert bright.min(0).tolist() == [45, 45] and bright.max(0).tolist() == [54, 54]
    assert crop_labels(np.full((1200, 1600), 3, np.uint8), affine, 100)[50, 50] == 3


# ----------------------------------------------------------------------------------------------
# npz problems
# ----------------------------------------------------------------------------------------------
def test_wrong_shape_and_pickled_npz_are_one_line_errors(tmp_path):
    d = make_spin_file(tmp_path, "lspet", n=2)
    np.savez(tmp_path / "bad.npz", **{**d, "part": d["part"][:, :14]})
    with pytest.raises(UserError, match=r"key 'part' has shape \(2, 14, 3\), expected \(N, 24, 3\)"):
        SpinNpz(str(tmp_path / "bad.npz"), DATASETS["lspet"], "train")
    np.savez(tmp_path / "obj.npz", **{**d, "imgname": np.array(list(d["imgname"]), dtype=object)})
    with pytest.raises(UserError, match="object arrays .*--allow-pickle"):
        SpinNpz(str(tmp_path / "obj.npz"), DATASETS["lspet"], "train")
    npz = SpinNpz(str(tmp_path / "obj.npz"), DATASETS["lspet"], "train", allow_pickle=True)
    assert npz.record(1).imgname == str(d["imgname"][1])
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 nope")
    with pytest.raises(UserError, match="cannot read"):
        SpinNpz(str(tmp_path / "garbage.npz"), DATASETS["lspet"], "train")


def test_bad_box_row_is_skipped(tmp_path):
    d = make_spin_file(tmp_path, "mpii", n=3)
    d["scale"][1] = 0.0
    np.savez(tmp_path / "mpii.npz", **d)
    report, samples = run(tmp_path, "mpii")
    assert len(samples) == 2 and report["skipped"]["reasons"] == {"box: invalid center/scale": 1}


@pytest.mark.parametrize("field,value,pattern", [("dataset", "h36", "unknown dataset 'h36'"),
                                                 ("split", "val", "unknown split"),
                                                 ("images", "/nonexistent", "no such folder")])
def test_bad_settings(tmp_path, field, value, pattern):
    from datamodules.convert import ConvertSettings, convert

    make_spin_file(tmp_path, "coco", n=1)
    kw = dict(dataset="coco", npz=str(tmp_path / "coco.npz"), images=str(tmp_path / "images"), out=str(tmp_path / "o"))
    with pytest.raises(UserError, match=pattern):
        convert(ConvertSettings(**{**kw, field: value}))
