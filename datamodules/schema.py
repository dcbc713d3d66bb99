"""The sample schema: the field table (:data:`SCHEMA`), its constants and :class:`CorruptSampleError`.

Split out of :mod:`datamodules.sample` (which re-exports every name here): what each field of a
sample is (kind, shape, dtype, unit, frame), and the one error type that names a bad field. The
:class:`datamodules.sample.Sample` dataclass, its construction and validation live in
:mod:`datamodules.sample`; the on-disk format in :mod:`datamodules.shards`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.errors import UserError

CROP_SIZE: int = 320           # default side of the stored crop, pixels
CROP_CONTEXT: float = 1.5      # the crop covers CROP_CONTEXT x the person box (SPIN box: 200 * scale px)
MAX_ABS_METRES: float = 100.0  # 3D coordinates beyond this are taken for millimetres
GENDERS: tuple[str, ...] = ("neutral", "male", "female")


_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class CorruptSampleError(UserError):
    """A sample (or the shard holding it) is unreadable or violates the schema.

    Attributes:
        field: the offending field or member (``"pose"``, ``"jpg"``, ``"shard"``...).
        problem: a short category for counting (``"NaN/inf"``, ``"wrong shape"``...).
    The message is one line: ``[sample <key> (<url>):] <field>: <detail>``.
    """

    def __init__(self, field: str, problem: str, detail: str | None = None,
                 key: str | None = None, url: str | None = None):
        self.field, self.problem, self.key, self.url = field, problem, key, url
        self.detail = detail or problem
        where = ""
        if key is not None:
            where = f"sample {key!r}" + (f" ({url})" if url else "") + ": "
        elif url:
            where = f"{url}: "
        super().__init__(f"{where}{field}: {self.detail}".replace("\n", " "))

    def __reduce__(self):  # picklable across DataLoader worker processes despite the custom __init__
        return (CorruptSampleError, (self.field, self.problem, self.detail, self.key, self.url))

    @property
    def reason(self) -> str:
        """Counting category: ``"<field>: <problem>"``."""
        return f"{self.field}: {self.problem}"

    def at(self, key: str | None, url: str | None) -> "CorruptSampleError":
        """The same error with the sample's key and shard attached."""
        return CorruptSampleError(self.field, self.problem, self.detail, key=key, url=url)


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    """One annotation field.

    ``kind``: ``array`` | ``bool`` | ``str`` | ``float`` | ``camera`` | ``image``.
    ``shape``: for arrays; ints, or ``"H"``/``"W"`` (the crop's height/width), ``"H0"``/``"W0"`` (the
    original image's height/width, from ``image_size``) or ``"V"`` (any length).
    ``confidence``: the last column holds a confidence in [0, 1].
    ``metres``: coordinates in metres (checked against :data:`MAX_ABS_METRES`).
    """

    name: str
    kind: str
    required: bool
    shape: tuple[int | str, ...] | None = None
    dtype: str | None = None
    unit: str = ""
    frame: str = ""
    confidence: bool = False
    metres: bool = False


SCHEMA: dict[str, FieldSpec] = {f.name: f for f in [
    FieldSpec("image", "image", True, ("H", "W", 3), "uint8", "RGB levels", "crop pixels"),
    FieldSpec("keypoints_2d", "array", True, (49, 3), "float32", "px + conf", "crop pixels", confidence=True),
    FieldSpec("joints_3d", "array", True, (24, 4), "float32", "m + conf", "camera", confidence=True,
              metres=True),
    FieldSpec("pose", "array", True, (72,), "float32", "rad (axis-angle)", "camera (global orient.)"),
    FieldSpec("betas", "array", True, (10,), "float32", "shape coeff.", "-"),
    FieldSpec("has_smpl", "bool", True),
    FieldSpec("has_3d", "bool", True),
    FieldSpec("has_mask", "bool", True),
    FieldSpec("bigraph_joints_2d", "array", True, (12, 3), "float32", "px + score", "crop pixels",
              confidence=True),
    FieldSpec("gender", "str", True),
    FieldSpec("source", "str", True),
    FieldSpec("image_size", "array", True, (2,), "int32", "px (width, height)", "original image"),
    FieldSpec("crop_to_image", "array", True, (2, 3), "float32", "affine", "crop px -> original px"),
    FieldSpec("crop_context", "float", True, unit="ratio", frame="-"),
    FieldSpec("vertices", "array", False, ("V", 3), "float32", "m", "camera", metres=True),
    FieldSpec("transl", "array", False, (3,), "float32", "m", "camera", metres=True),
    FieldSpec("mask", "array", False, ("H", "W"), "uint8", "label", "crop pixels"),
    FieldSpec("camera", "camera", False, unit="px", frame="original image"),
    FieldSpec("center", "array", False, (2,), "float32", "px (x, y)", "original image"),
    FieldSpec("scale", "float", False, unit="box side / 200 px", frame="original image"),
    FieldSpec("image_id", "str", False, unit="-", frame="original image"),
    FieldSpec("area", "float", False, unit="px^2", frame="original image"),
    FieldSpec("mask_original", "array", False, ("H0", "W0"), "uint8", "label", "original image"),
    FieldSpec("silhouette_original", "array", False, ("H0", "W0"), "uint8", "0 / 1", "original image"),
    FieldSpec("bigraph_joints_from", "str", False, unit="-", frame="-"),
]}
# The arrays of the optional ``camera`` map.
CAMERA_SCHEMA: dict[str, FieldSpec] = {f.name: f for f in [
    FieldSpec("focal_length", "array", True, (2,), "float32", "px (fx, fy)", "original image"),
    FieldSpec("principal_point", "array", True, (2,), "float32", "px (cx, cy)", "original image"),
]}
# Fields stored as their own tar members (see datamodules.shards), not in the annotation.
MEMBER_FIELDS: tuple[str, ...] = ("image", "mask", "mask_original", "silhouette_original")
# Fields stored in the annotation (everything else).
_ANN_FIELDS: tuple[str, ...] = tuple(n for n in SCHEMA if n not in MEMBER_FIELDS)
