"""Converter: image_id for every sample; mask_original (the full-resolution labels) for test splits with masks."""
from __future__ import annotations

import numpy as np

from tests.datamodules.spin_fixtures import IMAGE_H, IMAGE_W, make_spin_file, part_label_image, run

# UP-3D six-part labels -> ours (body.parts: 3/4 left/right arm, 5/6 left/right leg), written out by hand;
# any other label (the fixture's 9) is unknown -> 255.
UP3D_TO_OURS_BY_HAND = {0: 0, 1: 1, 2: 2, 3: 4, 4: 3, 5: 6, 6: 5, 255: 255}


def expected_parts() -> np.ndarray:
    src = part_label_image()
    out = np.full(src.shape, 255, np.uint8)
    for up, ours in UP3D_TO_OURS_BY_HAND.items():
        out[src == up] = ours
    return out


def test_test_split_with_part_masks_stores_mask_original(tmp_path):
    d = make_spin_file(tmp_path, "lsp", n=3)
    report, samples = run(tmp_path, "lsp", split="test")
    assert report["written"] == 3 and report["mask_from"] == "partname"
    expected = expected_parts()
    assert set(np.unique(expected)) == {0, 1, 2, 3, 4, 5, 6, 255}
    for i, s in enumerate(samples):
        assert s.image_id == str(d["imgname"][i]) == f"sub dir/lsp_{i:03d}.jpg"
        assert s.mask_original.dtype == np.uint8 and s.mask_original.shape == (IMAGE_H, IMAGE_W)
        assert np.array_equal(s.mask_original, expected)
        assert s.has_mask and s.mask is not None  # the crop mask as before
        assert s.area is None  # not in SPIN's files


def test_test_split_stores_silhouettes_apart_from_the_parts(tmp_path):
    """LSP test: the silhouette annotation (maskname) is kept at full resolution as silhouette_original,
    0 / 1 with no ignore label, next to the part labels (partname) in mask_original; a crop mask of
    silhouettes is no part map, so mask_original stays empty then."""
    make_spin_file(tmp_path, "lsp", n=2)
    expected = np.zeros((IMAGE_H, IMAGE_W), np.uint8)
    expected[40:140, 60:180] = 1  # the fixture's silhouette PNG (255 there) -> foreground 1
    report, samples = run(tmp_path, "lsp", split="test")
    assert report["mask_from"] == "partname" and report["silhouette_original_from"] == "maskname"
    for s in samples:
        assert np.array_equal(s.silhouette_original, expected) and np.array_equal(s.mask_original, expected_parts())
    _, samples = run(tmp_path, "lsp", split="test", mask="silhouette", overwrite=True)
    assert all(np.array_equal(s.silhouette_original, expected) and s.mask_original is None for s in samples)
    _, samples = run(tmp_path, "lsp", split="train", overwrite=True)
    assert all(s.silhouette_original is None and s.mask_original is None for s in samples)


def test_training_splits_and_maskless_files_store_no_mask_original(tmp_path):
    d = make_spin_file(tmp_path, "up3d", n=2)
    _, samples = run(tmp_path, "up3d", split="train")  # with partname masks
    assert all(s.has_mask and s.mask_original is None for s in samples)
    assert [s.image_id for s in samples] == [str(n) for n in d["imgname"]]
    d = make_spin_file(tmp_path, "lsp", n=2)
    _, samples = run(tmp_path, "lsp", split="test", mask="none", overwrite=True)
    assert all(not s.has_mask and s.mask_original is None and s.silhouette_original is None for s in samples)
    assert [s.image_id for s in samples] == [str(n) for n in d["imgname"]]
