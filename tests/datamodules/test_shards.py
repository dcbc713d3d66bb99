"""The sample format: round trips, shards, validation, skipping and truncated tars."""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from body.camera import crop_affine, invert_affine
from datamodules import shards
from datamodules.shards import (CorruptSampleError, Sample, SkipCounter, decode_or_skip, decode_sample,
                                encode_sample, pack_array, person_crop_affine, read_shard, safe_key,
                                unpack_array, validate, write_shards)
from runtime.errors import UserError


def smooth_image(h: int, w: int, phase: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 100 * np.sin(xx / w * 3.0 + phase)
    g = 127.5 + 100 * np.cos(yy / h * 2.5 - phase)
    b = 60 + 120 * (xx + yy) / (h + w)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def make_sample(i: int = 0, size: int = 320, full: bool = True) -> Sample:
    """A deterministic sample; ``full`` sets every optional field."""
    rng = np.random.default_rng(i)
    kp = np.concatenate([rng.uniform(0, size, (49, 2)), rng.uniform(0, 1, (49, 1))], 1)
    kp[3] = 0.0  # a missing keypoint
    j3 = np.concatenate([rng.normal(0, 0.4, (24, 2)), rng.uniform(3, 6, (24, 1)), np.ones((24, 1))], 1)
    j3[13] = 0.0
    bg = np.concatenate([rng.uniform(0, size, (12, 2)), rng.uniform(0, 1, (12, 1))], 1)
    center, scale = rng.uniform(200, 600, 2), float(rng.uniform(1.0, 3.0))
    fields = dict(
        image=smooth_image(size, size, phase=i * 0.1), source="h36m" if i % 2 else "up3d",
        image_size=[1000, 1002], crop_to_image=person_crop_affine(center, scale, size),
        keypoints_2d=kp, joints_3d=j3, pose=rng.normal(0, 0.3, 72), betas=rng.normal(0, 1, 10),
        bigraph_joints_2d=bg, has_smpl=True, has_3d=True, gender=("male", "female", "neutral")[i % 3],
    )
    if full:
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4: 3 * size // 4, size // 3: 2 * size // 3] = 1 + (i % 6)
        mask[:4] = 255
        fields.update(vertices=rng.normal(0, 0.5, (6890, 3)) + [0, 0, 5], mask=mask,
                      camera={"focal_length": [1500.0, 1510.0], "principal_point": [500.0, 501.0]},
                      center=center, scale=scale)
    return Sample.build(**fields)


def assert_samples_equal(a: Sample, b: Sample, image_tol: float | None = 3.0) -> None:
    """Every field equal: arrays bit-exact (dtype and shape too), the image within JPEG tolerance."""
    for f in dataclasses.fields(Sample):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name in ("image", "key"):
            continue
        if va is None or vb is None:
            assert va is None and vb is None, f.name
        elif isinstance(va, np.ndarray):
            assert isinstance(vb, np.ndarray) and va.dtype == vb.dtype and va.shape == vb.shape, f.name
            assert va.tobytes() == vb.tobytes(), f.name
        elif isinstance(va, dict):
            assert va.keys() == vb.keys()
            for k in va:
                assert va[k].dtype == vb[k].dtype and va[k].tobytes() == vb[k].tobytes(), f"{f.name}.{k}"
        else:
            assert type(va) is type(vb) and va == vb, f.name
    assert a.image.shape == b.image.shape and b.image.dtype == np.uint8
    if image_tol is not None:
        assert np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).mean() < image_tol


# ----------------------------------------------------------------------------------------------
# Round trip
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("full", [True, False])
def test_round_trip_preserves_every_field(full):
    sample = make_sample(7, full=full)
    members = encode_sample(sample, "h36m_000007")
    expected = {"__key__", "ann.msgpack", "jpg"} | ({"mask.png"} if full else set())
    assert set(members) == expected
    assert all(isinstance(v, bytes) for k, v in members.items() if k != "__key__")
    back = decode_sample(members)
    assert back.key == "h36m_000007"
    assert_samples_equal(sample, back)
    assert (back.vertices is None, back.mask is None, back.camera is None, back.center is None,
            back.scale is None) == ((not full),) * 5
    assert back.has_mask is full and back.has_smpl is True and back.has_3d is True
    assert back.gender == "female" and back.source == "h36m"  # i = 7
    assert back.crop_size == (320, 320) and back.person_box() == (160.0, 160.0, 320 / 1.5)
    if full:
        assert np.array_equal(back.mask, sample.mask)  # PNG is lossless
    # Decoded arrays are writable (augmentation works in place).
    back.keypoints_2d[0, 0] = -1.0
    back.image[0, 0, 0] = 0


def test_jpeg_quality_on_smooth_image_and_non_square_crop():
    sample = dataclasses.replace(make_sample(1, full=False), image=smooth_image(240, 320))
    back = decode_sample(encode_sample(sample, "k"))
    diff = np.abs(back.image.astype(np.int16) - sample.image.astype(np.int16))
    assert back.image.shape == (240, 320, 3)
    assert diff.mean() < 3.0
    assert back.crop_size == (320, 240)


def test_build_casts_and_fills_defaults():
    s = Sample.build(image=smooth_image(32, 32), source="coco", image_size=(640, 480),
                     crop_to_image=np.eye(2, 3), scale=np.float64(1.25), center=(1, 2))
    validate(s)
    assert s.keypoints_2d.dtype == np.float32 and s.keypoints_2d.shape == (49, 3) and not s.keypoints_2d.any()
    assert s.joints_3d.shape == (24, 4) and s.pose.shape == (72,) and s.betas.shape == (10,)
    assert s.bigraph_joints_2d.shape == (12, 3)
    assert (s.has_smpl, s.has_3d, s.has_mask, s.gender) == (False, False, False, "neutral")
    assert s.image_size.dtype == np.int32 and s.image_size.tolist() == [640, 480]
    assert type(s.scale) is float and s.scale == 1.25 and s.center.dtype == np.float32
    with pytest.raises(TypeError, match="unknown fields"):
        Sample.build(image=s.image, source="coco", image_size=(1, 1), crop_to_image=np.eye(2, 3), posee=1)


def test_person_crop_affine_matches_spin_crop_convention():
    center, scale, size = np.array([412.5, 300.25]), 1.7, 320
    a = person_crop_affine(center, scale, size)
    # Crop centre -> box centre; crop corners -> box centre -+ 1.5 * 100 * scale.
    pts = np.array([[size / 2, size / 2], [0, 0], [size, size]])
    orig = pts @ a[:, :2].T + a[:, 2]
    np.testing.assert_allclose(orig[0], center, atol=1e-3)
    np.testing.assert_allclose(orig[1], center - 150 * scale, atol=1e-3)
    np.testing.assert_allclose(orig[2], center + 150 * scale, atol=1e-3)
    # Same as inverting body.camera.crop_affine of the 1.5x box.
    ref = invert_affine(crop_affine(torch.from_numpy(center)[None], torch.tensor([1.5 * scale], dtype=torch.float64),
                                     size))[0]
    np.testing.assert_allclose(a, ref.numpy(), rtol=1e-5, atol=1e-3)


def test_docstring_table_lists_every_schema_key():
    doc = Sample.__doc__
    rows = {line.split()[0]: line for line in doc.splitlines() if line.strip() and line.startswith("    ")
            and line.split()[0] in shards.SCHEMA}
    assert set(rows) == set(shards.SCHEMA)
    for name, spec in shards.SCHEMA.items():
        if spec.dtype is not None:
            assert spec.dtype in rows[name], name
        if spec.kind == "array" and all(isinstance(d, int) for d in spec.shape):
            shape = "(" + ", ".join(map(str, spec.shape)) + ("," if len(spec.shape) == 1 else "") + ")"
            assert shape in rows[name], name


def test_safe_key():
    assert safe_key("h36m/S1_Directions 1.54138969_000001.jpg") == "h36m_S1_Directions_1_54138969_000001_jpg"
    assert len(safe_key("x" * 300)) == 80
    with pytest.raises(UserError):
        safe_key("")


# ----------------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------------
def test_write_2500_samples_to_three_shards_and_read_back_in_order(tmp_path):
    base = make_sample(3, size=32, full=False)
    rng = np.random.default_rng(0)
    kps = rng.uniform(0, 1, (2500, 49, 3)).astype(np.float32)
    samples = [dataclasses.replace(base, keypoints_2d=kps[i], key=f"h36m_{i:06d}") for i in range(2500)]
    paths = write_shards(iter(samples), str(tmp_path / "out" / "h36m-%06d.tar"), max_count=1000)
    assert paths == [str(tmp_path / "out" / f"h36m-{i:06d}.tar") for i in range(3)]
    assert sorted(os.listdir(tmp_path / "out")) == [f"h36m-{i:06d}.tar" for i in range(3)]  # no .partial left
    counts, keys = [], []
    for path in paths:
        got = list(read_shard(path))
        counts.append(len(got))
        for s in got:
            i = int(s.key.split("_")[1])
            assert s.keypoints_2d.tobytes() == kps[i].tobytes()
            keys.append(s.key)
    assert counts == [1000, 1000, 500]
    assert keys == [s.key for s in samples]
    with tarfile.open(paths[2]) as tar:
        names = tar.getnames()
    assert names[:2] == ["h36m_002000.ann.msgpack", "h36m_002000.jpg"] and len(names) == 1000


def test_write_shards_default_keys_deterministic_bytes_and_errors(tmp_path):
    samples = [dataclasses.replace(make_sample(i, size=48), key=None) for i in range(5)]
    a = write_shards(samples, str(tmp_path / "a-%02d.tar"), max_count=2)
    b = write_shards(samples, str(tmp_path / "b-%02d.tar"), max_count=2)
    assert len(a) == 3
    assert [Path(p).read_bytes() for p in a] == [Path(p).read_bytes() for p in b]
    back = [s for p in a for s in read_shard(p)]
    assert [s.key for s in back] == [f"{i:09d}" for i in range(5)]
    for s, r in zip(samples, back):
        assert_samples_equal(s, r)
    assert write_shards([], str(tmp_path / "empty-%02d.tar")) == []
    with pytest.raises(UserError, match="integer field"):
        write_shards(samples, str(tmp_path / "nofield.tar"))
    with pytest.raises(UserError, match=r"\.tar"):
        write_shards(samples, str(tmp_path / "x-%02d.tar.gz"))
    dup = [dataclasses.replace(samples[0], key="same")] * 2
    with pytest.raises(UserError, match="duplicate sample key 'same'"):
        write_shards(dup, str(tmp_path / "d-%02d.tar"))
    bad = [samples[0], dataclasses.replace(samples[1], pose=np.full(72, np.nan, np.float32))]
    with pytest.raises(CorruptSampleError, match="pose: contains NaN"):
        write_shards(bad, str(tmp_path / "bad-%02d.tar"))


# ----------------------------------------------------------------------------------------------
# Validation: each corruption, one line naming the field
# ----------------------------------------------------------------------------------------------
def _nan(s):
    j = s.joints_3d.copy()
    j[5, 2] = np.nan
    return dataclasses.replace(s, joints_3d=j)


def _conf(s):
    k = s.keypoints_2d.copy()
    k[10, 2] = 1.5
    return dataclasses.replace(s, keypoints_2d=k)


SAMPLE_CORRUPTIONS = {
    "missing": (lambda s: dataclasses.replace(s, betas=None), "betas", "missing required"),
    "nan": (_nan, "joints_3d", "NaN"),
    "inf_vertices": (lambda s: dataclasses.replace(s, vertices=np.full_like(s.vertices, np.inf)), "vertices",
                     "NaN or inf"),
    "shape": (lambda s: dataclasses.replace(s, keypoints_2d=s.keypoints_2d[:48]), "keypoints_2d",
              r"shape must be \(49, 3\)"),
    "dtype": (lambda s: dataclasses.replace(s, pose=s.pose.astype(np.float64)), "pose", "dtype must be float32"),
    "list": (lambda s: dataclasses.replace(s, betas=[0.0] * 10), "betas", "numpy float32 array"),
    "confidence": (_conf, "keypoints_2d", r"outside \[0, 1\]"),
    "negative_score": (lambda s: dataclasses.replace(s, bigraph_joints_2d=s.bigraph_joints_2d - 2), "bigraph_joints_2d",
                       r"outside \[0, 1\]"),
    "millimetres": (lambda s: dataclasses.replace(s, joints_3d=s.joints_3d * np.float32([1000, 1000, 1000, 1])),
                    "joints_3d", "millimetres"),
    "has_3d": (lambda s: dataclasses.replace(s, joints_3d=s.joints_3d * np.float32([1, 1, 1, 0])), "has_3d",
               "every joints_3d confidence is 0"),
    "has_smpl": (lambda s: dataclasses.replace(s, pose=np.zeros(72, np.float32)), "has_smpl", "pose is all zeros"),
    "has_mask": (lambda s: dataclasses.replace(s, mask=None), "has_mask", "mask is absent"),
    "mask_size": (lambda s: dataclasses.replace(s, mask=s.mask[:-1]), "mask", r"shape must be \(320, 320\)"),
    "gender": (lambda s: dataclasses.replace(s, gender="other"), "gender", "neutral/male/female"),
    "source": (lambda s: dataclasses.replace(s, source=""), "source", "non-empty"),
    "center_alone": (lambda s: dataclasses.replace(s, scale=None), "scale", "give both or neither"),
    "scale": (lambda s: dataclasses.replace(s, scale=-1.0), "scale", "must be > 0"),
    "singular": (lambda s: dataclasses.replace(s, crop_to_image=np.zeros((2, 3), np.float32)), "crop_to_image",
                 "singular"),
    "camera": (lambda s: dataclasses.replace(s, camera={"focal_length": s.camera["focal_length"]}), "camera",
               "keys"),
    "flag_type": (lambda s: dataclasses.replace(s, has_3d=1), "has_3d", "expected a bool"),
}


@pytest.mark.parametrize("name", list(SAMPLE_CORRUPTIONS))
def test_validate_rejects_corruption_with_one_line_naming_the_field(name):
    corrupt, field, pattern = SAMPLE_CORRUPTIONS[name]
    good = make_sample(2)
    validate(good)
    bad = corrupt(good)
    with pytest.raises(CorruptSampleError, match=pattern) as info:
        validate(bad)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{field}: "), msg
    assert isinstance(info.value, UserError) and info.value.field == field
    # encode_sample refuses it too, with the key in the message.
    with pytest.raises(CorruptSampleError, match=f"sample 'k1': {field}: "):
        encode_sample(bad, "k1")


def _edit_ann(members, fn):
    ann = msgpack.unpackb(members["ann.msgpack"], raw=False)
    fn(ann)
    return {**members, "ann.msgpack": msgpack.packb(ann, use_bin_type=True)}


def _ann_nan(ann):
    arr = np.frombuffer(ann["pose"]["bytes"], np.float32).copy()
    arr[3] = np.nan
    ann["pose"]["bytes"] = arr.tobytes()


MEMBER_CORRUPTIONS = {
    "missing_ann_key": (lambda m: _edit_ann(m, lambda a: a.pop("joints_3d")), "joints_3d", "missing required key"),
    "ann_nan": (lambda m: _edit_ann(m, _ann_nan), "pose", "NaN"),
    "ann_shape": (lambda m: _edit_ann(m, lambda a: a["betas"].update(shape=[5, 2])), "betas", r"shape must be \(10,\)"),
    "ann_bytes": (lambda m: _edit_ann(m, lambda a: a["betas"].update(bytes=b"\0" * 12)), "betas", "12 bytes"),
    "ann_dtype": (lambda m: _edit_ann(m, lambda a: a["betas"].update(dtype="|O")), "betas", "not allowed"),
    "unknown_key": (lambda m: _edit_ann(m, lambda a: a.update(posee=1)), "posee", "not in the sample schema"),
    "truncated_jpeg": (lambda m: {**m, "jpg": m["jpg"][: len(m["jpg"]) // 2]}, "jpg", "cannot decode JPEG"),
    "garbage_jpeg": (lambda m: {**m, "jpg": b"\xff\xd8\xff\xe0" + os.urandom(500)}, "jpg", "cannot decode JPEG"),
    "png_as_jpeg": (lambda m: {**m, "jpg": m["mask.png"]}, "jpg", "not JPEG"),
    "jpeg_size": (lambda m: {**m, "jpg": shards.encode_jpeg(smooth_image(64, 64))}, "jpg", "annotation says 320 x 320"),
    "missing_jpg": (lambda m: {k: v for k, v in m.items() if k != "jpg"}, "jpg", "is missing"),
    "missing_mask": (lambda m: {k: v for k, v in m.items() if k != "mask.png"}, "mask.png", "is missing"),
    "truncated_ann": (lambda m: {**m, "ann.msgpack": m["ann.msgpack"][:100]}, "ann.msgpack", "not valid msgpack"),
    "pickle_ann": (lambda m: {**m, "ann.msgpack": pickle.dumps({"pose": 1})}, "ann.msgpack", "pickle"),
}


@pytest.mark.parametrize("name", list(MEMBER_CORRUPTIONS))
def test_decode_rejects_corrupt_members(name):
    corrupt, field, pattern = MEMBER_CORRUPTIONS[name]
    members = {**encode_sample(make_sample(4), "h36m_4"), "__url__": "shard-000.tar"}
    with pytest.raises(CorruptSampleError, match=pattern) as info:
        decode_sample(corrupt(members))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"sample 'h36m_4' (shard-000.tar): {field}: "), msg
    assert info.value.field == field


def test_newer_format_version_fails_loudly_instead_of_skipping():
    members = _edit_ann(encode_sample(make_sample(1, size=32, full=False), "k"), lambda a: a.update(version=99))
    counter = SkipCounter()
    with pytest.raises(UserError, match="version 99 is newer"):
        decode_or_skip(members, counter)
    assert counter.count == 0


def test_decode_or_skip_counts_corrupt_samples_with_reasons():
    good = encode_sample(make_sample(1, size=32), "good")
    trunc = {**good, "__key__": "t", "jpg": good["jpg"][:-200]}
    nan = _edit_ann({**good, "__key__": "n"}, _ann_nan)
    conf = encode_sample(make_sample(2, size=32), "c")
    conf = _edit_ann(conf, lambda a: a["keypoints_2d"].update(
        bytes=(np.frombuffer(a["keypoints_2d"]["bytes"], np.float32) + 2).tobytes()))
    counter = SkipCounter()
    out = [decode_or_skip(m, counter) for m in (good, trunc, nan, good, trunc, conf)]
    assert [s is not None for s in out] == [True, False, False, True, False, False]
    assert out[0].key == "good"
    assert counter.count == 4
    assert counter.reasons == {"jpg: bad JPEG": 2, "pose: NaN/inf": 1, "keypoints_2d: confidence outside [0, 1]": 1}
    assert counter.examples[0].startswith("sample 't': jpg: cannot decode JPEG")
    with pytest.raises(CorruptSampleError) as info:
        decode_sample(trunc)
    again = pickle.loads(pickle.dumps(info.value))  # crosses worker processes intact
    assert str(again) == str(info.value) and again.reason == "jpg: bad JPEG"
    assert counter.summary().startswith("skipped 4: jpg: bad JPEG x2")
    # The module-level default counter.
    before = shards.SKIPPED.count
    assert decode_or_skip(trunc) is None and shards.SKIPPED.count == before + 1
    total = SkipCounter()
    total.merge(counter)
    total.merge(counter)
    assert total.count == 8 and total.reasons["jpg: bad JPEG"] == 4


# ----------------------------------------------------------------------------------------------
# Truncated tar
# ----------------------------------------------------------------------------------------------
@pytest.fixture()
def truncated_shard(tmp_path):
    samples = [dataclasses.replace(make_sample(i, size=64, full=False), key=f"s{i:03d}") for i in range(20)]
    (path,) = write_shards(samples, str(tmp_path / "s-%03d.tar"), max_count=100)
    with tarfile.open(path) as tar:
        jpg11 = tar.getmember("s011.jpg")
    data = Path(path).read_bytes()
    cut = jpg11.offset_data + jpg11.size // 2  # mid-member: inside the 12th sample's JPEG
    cut_path = tmp_path / "cut.tar"
    cut_path.write_bytes(data[:cut])
    return str(cut_path), samples


def test_truncated_tar_with_webdataset_yields_complete_samples_and_counts(truncated_shard):
    path, samples = truncated_shard
    counter = SkipCounter()
    ds = (wds.WebDataset(path, handler=counter.handler, shardshuffle=False, empty_check=False)
          .map(shards.shard_decoder(counter)).select(lambda s: s is not None))
    got = list(ds)
    assert [s.key for s in got] == [f"s{i:03d}" for i in range(11)]
    for s, ref in zip(got, samples):
        assert_samples_equal(ref, s)
    assert counter.count >= 1
    assert any(r.startswith("read error") for r in counter.reasons)
    # warn_and_continue also gets through it (it only warns).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = list(wds.WebDataset(path, handler=wds.warn_and_continue, shardshuffle=False, empty_check=False))
    assert [decode_or_skip(m, SkipCounter()) is not None for m in raw][:11] == [True] * 11


def test_truncated_tar_with_read_shard(truncated_shard):
    path, samples = truncated_shard
    counter = SkipCounter()
    got = list(read_shard(path, counter))
    assert [s.key for s in got] == [f"s{i:03d}" for i in range(11)]
    assert_samples_equal(samples[10], got[10])
    assert counter.count == 1 and counter.reasons == {"shard: truncated or damaged tar": 1}
    assert path in counter.examples[0]
    # Without a counter the failure is raised after the complete samples.
    it = read_shard(path)
    assert len([next(it) for _ in range(11)]) == 11
    with pytest.raises(CorruptSampleError, match="shard: "):
        next(it)


# ----------------------------------------------------------------------------------------------
# No pickle anywhere
# ----------------------------------------------------------------------------------------------
def _walk_types(obj):
    yield type(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_types(k)
            yield from _walk_types(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_types(v)


def test_annotation_is_plain_msgpack_and_decoding_uses_no_pickle(monkeypatch):
    members = encode_sample(make_sample(5), "k5")
    ann = members["ann.msgpack"]
    assert ann[0] != 0x80 and not ann.startswith(b"\x80")  # pickle protocol >= 2 header
    raw = msgpack.unpackb(ann, raw=False)
    assert set(_walk_types(raw)) <= {dict, list, str, bytes, int, float, bool}
    assert raw["format"] == "meshrec-sample" and raw["version"] == 1 and raw["crop_size"] == [320, 320]
    assert raw["keypoints_2d"]["dtype"] == "<f4" and raw["keypoints_2d"]["shape"] == [49, 3]
    assert raw["image_size"]["dtype"] == "<i4" and raw["camera"]["focal_length"]["shape"] == [2]
    # The raw arrays are exactly numpy.frombuffer of the stored bytes.
    sample = make_sample(5)
    assert np.frombuffer(raw["joints_3d"]["bytes"], "<f4").reshape(24, 4).tobytes() == sample.joints_3d.tobytes()

    def forbidden(*a, **k):
        raise AssertionError("pickle/np.load used while decoding")

    for mod, name in [(pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (np, "load")]:
        monkeypatch.setattr(mod, name, forbidden)
    calls = []
    real = np.frombuffer
    monkeypatch.setattr(np, "frombuffer", lambda *a, **k: calls.append(1) or real(*a, **k))
    back = decode_sample(members)
    assert len(calls) >= 9  # every array went through numpy.frombuffer
    assert_samples_equal(sample, back)


def test_pack_array_round_trip_and_allow_list():
    for arr in [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(5, dtype=">i4"),
                np.array([[True, False]]), np.zeros((0, 3), np.float64), np.arange(4, dtype=np.uint8),
                np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))]:
        back = unpack_array(msgpack.unpackb(msgpack.packb(pack_array(arr), use_bin_type=True), raw=False))
        assert back.shape == arr.shape and np.array_equal(back, arr) and back.dtype == arr.dtype.newbyteorder("<")
    with pytest.raises(TypeError):
        pack_array(np.array(["a"], dtype=object))
    with pytest.raises(CorruptSampleError, match="bad shape"):
        unpack_array({"dtype": "<f4", "shape": [-1], "bytes": b""}, "x")


def test_mask_member_is_a_plain_grayscale_png():
    sample = make_sample(9)
    png = encode_sample(sample, "k")["mask.png"]
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.mode == "L" and im.size == (320, 320)
        assert np.array_equal(np.array(im), sample.mask)
