"""The evaluation fields ``image_id``, ``area`` and ``mask_original``: format, validation, inputs, batches."""
from __future__ import annotations

import dataclasses
import io

import msgpack
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.augment import AugmentConfig, AugmentParams, flip_input, prepare_sample
from datamodules.shards import (MASK_ORIGINAL_MEMBER, CorruptSampleError, Sample, decode_sample, encode_sample,
                                person_crop_affine, read_shard, validate, write_shards)
from datamodules.streams import UNSTACKED_KEYS, EvalStream, MixedTrainStream, SourceShards, collate

CROP = 32


def original_labels(width: int, height: int, seed: int) -> np.ndarray:
    """(height, width) uint8 labels: background, a few LSP parts, an ignore band."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.uint8)
    labels[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = rng.integers(1, 7, (1,))[0]
    labels[:2] = 255
    return labels


def small_sample(i: int, image_size: tuple[int, int] = (64, 48), eval_fields: bool = True,
                 source: str = "lsp") -> Sample:
    """A valid 32 px sample of an original image of ``image_size`` (width, height); with ``eval_fields``
    it has image_id, area and mask_original."""
    rng = np.random.default_rng(i)
    kp = np.concatenate([rng.uniform(0, CROP, (49, 2)), np.ones((49, 1))], 1)
    fields: dict = dict(image=rng.integers(0, 255, (CROP, CROP, 3), dtype=np.uint8), source=source,
                        image_size=image_size, crop_to_image=person_crop_affine(
                            [image_size[0] / 2, image_size[1] / 2], 0.1, CROP), keypoints_2d=kp, key=f"{source}_{i:04d}")
    if eval_fields:
        fields.update(image_id=f"images/im{i // 2:04d}.jpg", area=123.5 + i,
                      mask_original=original_labels(*image_size, seed=i))
    return Sample.build(**fields)


# ----------------------------------------------------------------------------------------------
# Format
# ----------------------------------------------------------------------------------------------
def test_round_trip_through_shards(tmp_path):
    samples = [small_sample(i, image_size=((64, 48), (50, 70))[i % 2]) for i in range(4)]
    paths = write_shards(samples, str(tmp_path / "lsp-%06d.tar"))
    back = [s for p in paths for s in read_shard(p)]
    assert len(back) == 4
    for a, b in zip(samples, back):
        assert b.image_id == a.image_id and isinstance(b.image_id, str)
        assert type(b.area) is float and b.area == a.area
        assert b.mask_original.dtype == np.uint8 and b.mask_original.shape == (a.image_size[1], a.image_size[0])
        assert np.array_equal(b.mask_original, a.mask_original)  # PNG: lossless
        assert b.mask is None and b.has_mask is False  # independent of has_mask
    # People of one image share its id.
    assert back[0].image_id == back[1].image_id != back[2].image_id


def test_mask_original_is_its_own_grayscale_png_member_and_not_in_the_annotation():
    sample = small_sample(3)
    members = encode_sample(sample, "k")
    assert set(members) == {"__key__", "ann.msgpack", "jpg", MASK_ORIGINAL_MEMBER}
    assert MASK_ORIGINAL_MEMBER == "mask_original.png"
    with Image.open(io.BytesIO(members[MASK_ORIGINAL_MEMBER])) as im:
        assert im.format == "PNG" and im.mode == "L" and im.size == (64, 48)
        assert np.array_equal(np.array(im), sample.mask_original)
    ann = msgpack.unpackb(members["ann.msgpack"], raw=False)
    assert "mask_original" not in ann and ann["image_id"] == sample.image_id and ann["area"] == sample.area


def test_old_samples_without_the_fields_still_load(tmp_path):
    old = small_sample(1, eval_fields=False)
    members = encode_sample(old, "k")
    ann = msgpack.unpackb(members["ann.msgpack"], raw=False)
    assert not {"image_id", "area", "mask_original"} & set(ann)  # what a writer before them wrote
    assert set(members) == {"__key__", "ann.msgpack", "jpg"}
    back = decode_sample(members)
    assert (back.image_id, back.area, back.mask_original) == (None, None, None)
    paths = write_shards([old], str(tmp_path / "old-%06d.tar"))
    assert next(read_shard(paths[0])).mask_original is None


CORRUPTIONS = {
    "mask_original_shape": (lambda s: dataclasses.replace(s, mask_original=s.mask_original.T.copy()),
                            "mask_original", r"shape must be \(48, 64\), got \(64, 48\)"),
    "mask_original_dtype": (lambda s: dataclasses.replace(s, mask_original=s.mask_original.astype(np.int64)),
                            "mask_original", "dtype must be uint8"),
    "area_zero": (lambda s: dataclasses.replace(s, area=0.0), "area", "must be > 0"),
    "area_negative": (lambda s: dataclasses.replace(s, area=-3.0), "area", "must be > 0"),
    "area_nan": (lambda s: dataclasses.replace(s, area=float("nan")), "area", "NaN or inf"),
    "area_inf": (lambda s: dataclasses.replace(s, area=float("inf")), "area", "NaN or inf"),
    "image_id_empty": (lambda s: dataclasses.replace(s, image_id=""), "image_id", "non-empty str"),
    "image_id_type": (lambda s: dataclasses.replace(s, image_id=17), "image_id", "non-empty str"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_validation_errors_are_one_line_naming_the_field(name):
    corrupt, field, pattern = CORRUPTIONS[name]
    good = small_sample(2)
    validate(good)
    with pytest.raises(CorruptSampleError, match=pattern) as info:
        validate(corrupt(good))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{field}: ") and info.value.field == field, msg
    with pytest.raises(CorruptSampleError, match=f"sample 'k2': {field}: "):
        encode_sample(corrupt(good), "k2")


def test_decode_rejects_a_bad_mask_original_member():
    members = {**encode_sample(small_sample(4), "k4"), "__url__": "s.tar"}
    wrong_size = io.BytesIO()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(wrong_size, format="PNG")
    with pytest.raises(CorruptSampleError, match=r"sample 'k4' \(s.tar\): mask_original: shape must be \(48, 64\)"):
        decode_sample({**members, MASK_ORIGINAL_MEMBER: wrong_size.getvalue()})
    with pytest.raises(CorruptSampleError, match=r"sample 'k4' \(s.tar\): mask_original.png: cannot decode PNG"):
        decode_sample({**members, MASK_ORIGINAL_MEMBER: b"not a png"})


# ----------------------------------------------------------------------------------------------
# Network inputs and batches
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [AugmentParams(), AugmentParams(rotation_deg=30.0, scale=0.8, flip=True)],
                         ids=["plain", "augmented"])
def test_prepare_sample_passes_the_fields_through_unchanged(params):
    sample = small_sample(5)
    item = prepare_sample(sample, params, 16)
    assert item["image_id"] == sample.image_id
    assert item["area"].dtype == torch.float32 and item["area"].shape == () and float(item["area"]) == sample.area
    assert item["has_area"].dtype == torch.bool and bool(item["has_area"])
    mo = item["mask_original"]
    assert mo.dtype == torch.uint8 and tuple(mo.shape) == (48, 64) and np.array_equal(mo.numpy(), sample.mask_original)
    flipped = flip_input(item, 16)
    for key in ("image_id", "area", "has_area", "mask_original"):
        assert flipped[key] is item[key], key

    plain = prepare_sample(small_sample(5, eval_fields=False), params, 16)
    assert plain["image_id"] == "" and float(plain["area"]) == 0.0 and plain["area"].dtype == torch.float32
    assert not bool(plain["has_area"]) and plain["mask_original"] is None


def test_collate_keeps_mask_original_as_a_list():
    items = [prepare_sample(small_sample(i, image_size=size, eval_fields=i != 2), AugmentParams(), 16)
             for i, size in enumerate([(64, 48), (50, 70), (64, 48)])]
    batch = collate(items, [])
    assert "mask_original" in UNSTACKED_KEYS
    mo = batch["mask_original"]
    assert isinstance(mo, list) and len(mo) == 3 and mo[2] is None
    assert [tuple(m.shape) for m in mo[:2]] == [(48, 64), (70, 50)]
    assert batch["image_id"] == ["images/im0000.jpg", "images/im0000.jpg", ""]
    assert batch["area"].shape == (3,) and batch["area"].tolist() == [123.5, 124.5, 0.0]
    assert batch["has_area"].tolist() == [True, True, False]
    # Same sizes: still a list, never stacked.
    same = collate([items[0], items[0]], [])
    assert isinstance(same["mask_original"], list) and len(same["mask_original"]) == 2


def test_eval_batches_keep_mask_original_and_training_batches_lack_it(tmp_path):
    samples = [small_sample(i, image_size=((64, 48), (50, 70))[i % 2]) for i in range(6)]
    paths = write_shards(samples, str(tmp_path / "lsp-%06d.tar"), max_count=4)
    stream = EvalStream("lsp", paths, [4, 2], batch_size=4, out_res=16)
    batches = list(stream)
    assert [len(b["key"]) for b in batches] == [4, 2]
    got = [m for b in batches for m in b["mask_original"]]
    assert all(np.array_equal(m.numpy(), s.mask_original) for m, s in zip(got, samples))
    assert [i for b in batches for i in b["image_id"]] == [s.image_id for s in samples]

    train = MixedTrainStream([SourceShards("lsp", tuple(paths))], batch_size=3, batches_per_rank=2,
                             augment=AugmentConfig(), out_res=16, shuffle_buffer=2)
    for batch in train:
        assert "mask_original" not in batch and "vertices" not in batch
        assert batch["img"].shape == (3, 3, 16, 16) and len(batch["image_id"]) == 3
