"""The sample format: what one training/evaluation sample is, and how it is written, read and validated.

This module is the single definition of a sample. Converters and the synthetic generator build
:class:`Sample` objects and call :func:`write_shards`; the DataModule decodes tar members with
:func:`decode_or_skip`; tools and tests read shards back with :func:`read_shard`.

On disk (WebDataset tar shards, plain ``.tar``, one sample = one person), members sharing a key::

    <key>.ann.msgpack   the annotation (msgpack map, see below); always present
    <key>.jpg           the RGB crop, JPEG (quality 95 by default); always present
    <key>.mask.png      the part/foreground mask in crop pixels, 8-bit grayscale PNG; iff has_mask
    <key>.mask_original.png   the same labels at the original image's resolution (``mask_original``,
                        evaluation sets), 8-bit grayscale PNG; iff present (independent of has_mask)
    <key>.silhouette_original.png   the silhouette annotation (0 / 1) at the original resolution
                        (``silhouette_original``, LSP's test set), 8-bit grayscale PNG; iff present

The masks are separate PNG members (not inside the annotation) so that any image viewer shows them,
the annotation stays small, and the PNG is lossless. Keys are ``[A-Za-z0-9_-]``, at most 80 characters
(no dots: WebDataset splits the member name at the first dot; see :func:`safe_key`).

The annotation is a msgpack map, never a pickle. Its keys are ``format`` (``"meshrec-sample"``),
``version`` (``1``), ``crop_size`` ([width, height] of the JPEG, checked on decoding), then the fields of
:class:`Sample` in :data:`SCHEMA` order (optional fields only when present). Values:

- numpy arrays as a map ``{"dtype": "<f4", "shape": [49, 3], "bytes": <raw C-order bytes>}``, the dtype
  a little-endian numpy type string from a short allow-list (``<f4 <f8 <i4 <i8 |u1 |b1``), decoded
  with ``numpy.frombuffer`` only;
- flags as msgpack booleans, strings as msgpack strings (``gender``, ``source``, ``image_id``),
  ``scale`` / ``crop_context`` / ``area`` as msgpack floats, ``camera`` as a map of two arrays.
An optional field that is None is left out of the map (and reads back as None); shards written before
a field existed read back with it None.

The content of a sample (schema, dataclass, validation) lives in :mod:`datamodules.sample`; the byte
encodings of arrays, JPEGs and PNGs in :mod:`datamodules.codec` (re-exported here).
"""
from __future__ import annotations

import os
import re
import tarfile
from typing import Any, Callable, Iterable, Iterator, Mapping

import msgpack

from datamodules.codec import (JPEG_QUALITY, decode_jpeg, decode_png, encode_jpeg, encode_png, pack_array,
                               unpack_array)
from datamodules.sample import (_KEY_RE, CAMERA_SCHEMA, CROP_CONTEXT, CROP_SIZE, GENDERS, SCHEMA, CorruptSampleError,
                                FieldSpec, Sample, person_crop_affine, safe_key, validate)
from datamodules.schema import _ANN_FIELDS
from datamodules.skips import SkipCounter
from runtime.errors import UserError

# The sample's content is re-exported so that `datamodules.shards` is the one import for the format.
__all__ = [
    "CAMERA_SCHEMA", "CROP_CONTEXT", "CROP_SIZE", "GENDERS", "SCHEMA", "CorruptSampleError", "FieldSpec", "Sample",
    "person_crop_affine", "safe_key", "validate", "FORMAT_NAME", "FORMAT_VERSION", "JPEG_QUALITY", "ANN_MEMBER",
    "JPG_MEMBER", "MASK_MEMBER", "MASK_ORIGINAL_MEMBER", "SILHOUETTE_ORIGINAL_MEMBER", "PNG_MEMBERS", "pack_array",
    "unpack_array", "encode_jpeg", "decode_jpeg", "encode_png", "decode_png", "encode_sample", "decode_sample",
    "SkipCounter", "SKIPPED", "decode_or_skip", "write_shards", "iter_shard_members", "iter_annotations",
    "read_shard", "shard_decoder",
]

FORMAT_NAME: str = "meshrec-sample"
FORMAT_VERSION: int = 1
# Member names (WebDataset extensions) of one sample.
ANN_MEMBER: str = "ann.msgpack"
JPG_MEMBER: str = "jpg"
MASK_MEMBER: str = "mask.png"
MASK_ORIGINAL_MEMBER: str = "mask_original.png"
SILHOUETTE_ORIGINAL_MEMBER: str = "silhouette_original.png"
# The label maps stored as their own PNG members: sample field -> member name.
PNG_MEMBERS: dict[str, str] = {"mask": MASK_MEMBER, "mask_original": MASK_ORIGINAL_MEMBER,
                               "silhouette_original": SILHOUETTE_ORIGINAL_MEMBER}
_PICKLE_PROTO = 0x80  # first byte of a pickle of protocol >= 2

def _encode_annotation(sample: Sample) -> bytes:
    ann: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "crop_size": list(sample.crop_size)}
    for name in _ANN_FIELDS:
        value = getattr(sample, name)
        if value is None:
            continue
        kind = SCHEMA[name].kind
        if kind == "array":
            ann[name] = pack_array(value)
        elif kind == "bool":
            ann[name] = bool(value)
        elif kind == "float":
            ann[name] = float(value)
        elif kind == "camera":
            ann[name] = {k: pack_array(value[k]) for k in CAMERA_SCHEMA}
        else:
            ann[name] = value
    return msgpack.packb(ann, use_bin_type=True)


def _decode_annotation(data: bytes) -> tuple[dict[str, Any], tuple[int, int]]:
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise CorruptSampleError(ANN_MEMBER, "unreadable", "empty annotation")
    if data[0] == _PICKLE_PROTO:
        raise CorruptSampleError(ANN_MEMBER, "pickle", "annotation is a pickle; shards hold msgpack only "
                                 "(rewrite the shard with datamodules.shards.write_shards)")
    try:
        ann = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True)
    except Exception as exn:  # msgpack raises several unrelated types on bad input
        raise CorruptSampleError(ANN_MEMBER, "unreadable", f"not valid msgpack ({type(exn).__name__}: {exn})") from None
    if not isinstance(ann, dict) or ann.get("format") != FORMAT_NAME:
        raise CorruptSampleError(ANN_MEMBER, "unreadable", f"not a {FORMAT_NAME} annotation")
    version = ann.get("version")
    if not isinstance(version, int) or version < 1:
        raise CorruptSampleError(ANN_MEMBER, "unreadable", f"bad format version {version!r}")
    if version > FORMAT_VERSION:
        # Not corruption: a newer writer. Fail loudly instead of skipping every sample.
        raise UserError(f"shard sample format version {version} is newer than this code's "
                        f"({FORMAT_VERSION}); update the repository")
    crop_size = ann.get("crop_size")
    if not (isinstance(crop_size, list) and len(crop_size) == 2 and all(isinstance(v, int) for v in crop_size)):
        raise CorruptSampleError("crop_size", "missing", "missing or malformed crop_size")
    unknown = set(ann) - set(_ANN_FIELDS) - {"format", "version", "crop_size"}
    if unknown:
        raise CorruptSampleError(sorted(unknown)[0], "unknown key", "not in the sample schema")
    fields: dict[str, Any] = {}
    for name in _ANN_FIELDS:
        spec = SCHEMA[name]
        if name not in ann:
            if spec.required:
                raise CorruptSampleError(name, "missing", "missing required key in the annotation")
            continue
        value = ann[name]
        if spec.kind == "array":
            value = unpack_array(value, name)
        elif spec.kind == "camera":
            if not isinstance(value, dict) or set(value) != set(CAMERA_SCHEMA):
                raise CorruptSampleError(name, "wrong keys", f"must map {sorted(CAMERA_SCHEMA)} to arrays")
            value = {k: unpack_array(value[k], f"{name}.{k}") for k in CAMERA_SCHEMA}
        fields[name] = value
    return fields, (crop_size[0], crop_size[1])


def encode_sample(sample: Sample, key: str, jpeg_quality: int = JPEG_QUALITY) -> dict[str, Any]:
    """The WebDataset member dict of a (validated) sample.

    Returns:
        ``{"__key__": key, "ann.msgpack": bytes, "jpg": bytes}`` plus one PNG member per label map the
        sample has (:data:`PNG_MEMBERS`: ``mask.png``, ``mask_original.png``, ``silhouette_original.png``).
    Raises:
        CorruptSampleError: the sample or the key violates the schema (nothing invalid is ever written).
    """
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise CorruptSampleError("key", "bad value", f"key {key!r} must match [A-Za-z0-9_-]{{1,80}} (use safe_key)",
                                 key=None)
    try:
        validate(sample)
    except CorruptSampleError as err:
        raise err.at(key, None) from None
    members: dict[str, Any] = {"__key__": key, ANN_MEMBER: _encode_annotation(sample),
                               JPG_MEMBER: encode_jpeg(sample.image, jpeg_quality)}
    for name, member in PNG_MEMBERS.items():
        if getattr(sample, name) is not None:
            members[member] = encode_png(getattr(sample, name))
    return members


def decode_sample(members: Mapping[str, Any]) -> Sample:
    """A validated :class:`Sample` from a WebDataset member dict (raw bytes, as the tar holds them).

    Extra members (``__url__``, ``__local_path__``, other extensions) are ignored; ``key`` is set from
    ``__key__``.

    Raises:
        CorruptSampleError: a member is missing or unreadable, or the sample violates the schema.
    """
    key = members.get("__key__")
    url = members.get("__url__")
    try:
        for member in (ANN_MEMBER, JPG_MEMBER):
            if member not in members:
                raise CorruptSampleError(member, "missing member", f"member <key>.{member} is missing")
        fields, crop_size = _decode_annotation(members[ANN_MEMBER])
        image = decode_jpeg(members[JPG_MEMBER])
        if (image.shape[1], image.shape[0]) != crop_size:
            raise CorruptSampleError(JPG_MEMBER, "wrong size", f"decodes to {image.shape[1]} x {image.shape[0]}, "
                                     f"annotation says {crop_size[0]} x {crop_size[1]}")
        labels = {name: decode_png(members[member], member) for name, member in PNG_MEMBERS.items()
                  if member in members}
        if fields.get("has_mask") and "mask" not in labels:
            raise CorruptSampleError(MASK_MEMBER, "missing member", "has_mask is True but <key>.mask.png is missing")
        sample = Sample(image=image, key=key if isinstance(key, str) else None, **labels, **fields)
        validate(sample)
    except CorruptSampleError as err:
        raise err.at(key, url) from None
    return sample


# ----------------------------------------------------------------------------------------------
# Skipping corrupt samples (the counter: datamodules.skips.SkipCounter, re-exported)
# ----------------------------------------------------------------------------------------------
SKIPPED = SkipCounter()  # the module-level default counter of decode_or_skip (per process)


def decode_or_skip(members: Mapping[str, Any], counter: SkipCounter | None = None) -> Sample | None:
    """:func:`decode_sample`, or None (counted in ``counter``, default :data:`SKIPPED`) for a corrupt sample.

    For a WebDataset pipeline: ``.map(partial(decode_or_skip, counter=c)).select(lambda s: s is not None)``.
    """
    try:
        return decode_sample(members)
    except CorruptSampleError as err:
        (SKIPPED if counter is None else counter).add(err)
        return None


# ----------------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------------
_PARTIAL = ".partial"
_MEMBER_RE = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # WebDataset's key/extension split


def write_shards(samples: Iterable[Sample], pattern: str, max_count: int = 1000,
                 max_size: float = 3e9, jpeg_quality: int = JPEG_QUALITY) -> list[str]:
    """Write samples to WebDataset shards; return the shard paths in order.

    Args:
        samples: validated on the way (a CorruptSampleError stops the writing). The key of each is
            ``sample.key`` when set, else the zero-padded running index (``"000000042"``).
        pattern: shard path with one integer format, e.g. ``"out/h36m-%06d.tar"`` (plain tar: JPEGs do
            not compress); the folder is created.
        max_count, max_size: start a new shard after this many samples / bytes.
    Each shard is written as ``<name>.partial`` and renamed when complete, so a shard that exists is whole.
    Members are stored with mtime 0: the same samples give byte-identical shards.
    """
    import webdataset as wds

    if not pattern.endswith(".tar"):
        raise UserError(f"shard pattern {pattern!r} must end with .tar, e.g. out/h36m-%06d.tar")
    try:
        if pattern % 0 == pattern % 1:
            raise TypeError
    except (TypeError, ValueError):
        raise UserError(f"shard pattern {pattern!r} needs one integer field, e.g. out/h36m-%06d.tar") from None
    if max_count < 1:
        raise UserError(f"max_count must be >= 1, got {max_count}")
    folder = os.path.dirname(pattern % 0)
    if folder:
        os.makedirs(folder, exist_ok=True)

    paths: list[str] = []

    def finished(fname: str) -> None:
        final = fname[: -len(_PARTIAL)]
        os.replace(fname, final)
        paths.append(final)

    writer = None
    seen: set[str] = set()
    try:
        for index, sample in enumerate(samples):
            key = sample.key if sample.key is not None else f"{index:09d}"
            if key in seen:
                raise UserError(f"duplicate sample key {key!r} while writing {pattern}; keys must be unique")
            seen.add(key)
            members = encode_sample(sample, key, jpeg_quality)
            if writer is None:  # opened lazily: no samples, no (empty) shard
                writer = wds.ShardWriter(pattern + _PARTIAL, maxcount=max_count, maxsize=max_size, post=finished,
                                         verbose=0, encoder=False, mtime=0.0)
            writer.write(members)
    finally:
        if writer is not None:
            writer.close()
    return paths


def iter_shard_members(path: str, counter: SkipCounter | None = None) -> Iterator[dict[str, Any]]:
    """Raw member dicts of a shard, grouped by key in tar order (like WebDataset's grouping).

    A read failure (a truncated or damaged tar) ends the iteration after the last complete group: it is
    counted in ``counter`` when one is given, else raised as a CorruptSampleError (field ``shard``).
    The group being read when the failure happened is dropped.
    """
    group: dict[str, Any] | None = None
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                match = _MEMBER_RE.match(info.name)
                if match is None:
                    continue
                key, ext = match.group(1), match.group(2)
                extracted = tar.extractfile(info)
                assert extracted is not None
                data = extracted.read()
                if len(data) != info.size:
                    raise tarfile.ReadError(f"member {info.name} truncated")
                if group is None or group["__key__"] != key:
                    if group is not None:
                        yield group
                    group = {"__key__": key, "__url__": path}
                if ext.lower() in group:
                    raise tarfile.ReadError(f"duplicate member {info.name}")
                group[ext.lower()] = data
    except (tarfile.TarError, OSError, EOFError) as exn:
        err = CorruptSampleError("shard", "truncated or damaged tar", f"{type(exn).__name__}: {exn}", url=path)
        if counter is None:
            raise err from None
        counter.add(err)
        return
    if group is not None:
        yield group


def iter_annotations(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, annotation fields) of each sample of a shard, reading only the annotation members (the tar is
    opened for random access: JPEGs and masks are skipped, not read). Nothing is validated beyond the
    annotation's own decoding; a damaged tar or annotation ends the iteration quietly (readers count it)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                match = _MEMBER_RE.match(info.name)
                if not (info.isreg() and match and match.group(2) == ANN_MEMBER):
                    continue
                extracted = tar.extractfile(info)
                assert extracted is not None
                yield match.group(1), _decode_annotation(extracted.read())[0]
    except (tarfile.TarError, OSError, EOFError, CorruptSampleError):
        return


def read_shard(path: str, counter: SkipCounter | None = None) -> Iterator[Sample]:
    """Samples of one shard, in order.

    With ``counter``, corrupt samples and a damaged tar are skipped and counted; without, the first one
    raises a CorruptSampleError.
    """
    for members in iter_shard_members(path, counter):
        if counter is None:
            yield decode_sample(members)
        else:
            sample = decode_or_skip(members, counter)
            if sample is not None:
                yield sample


def shard_decoder(counter: SkipCounter | None = None) -> Callable[[Mapping[str, Any]], Sample | None]:
    """``decode_or_skip`` bound to ``counter``, for ``WebDataset(...).map(shard_decoder(c))``."""
    def decode(members: Mapping[str, Any]) -> Sample | None:
        return decode_or_skip(members, counter)
    return decode
