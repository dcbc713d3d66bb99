"""What one sample is: the field schema, the :class:`Sample` dataclass and its validation.

The single definition of a sample's content (shapes, dtypes, units, frames; see :data:`SCHEMA` and
:class:`Sample`); :mod:`datamodules.shards` writes and reads it. Validation policy (:func:`validate`; a
:class:`CorruptSampleError` names the field and the problem):

- every required field present; arrays are numpy arrays of exactly the schema dtype and shape
  (use :meth:`Sample.build` to cast); no NaN or inf anywhere (missing joints are zeros with
  confidence 0, never NaN); confidence columns in [0, 1];
- 3D data in metres: a coordinate beyond 100 m is rejected as "looks like millimetres";
- flags: ``has_3d`` needs at least one joint of ``joints_3d`` with confidence > 0; ``has_smpl`` rejects
  an all-zero ``pose`` (an all-zero axis-angle pose is an upside-down T-pose in the camera frame: in
  practice it is always a placeholder written by mistake, not a fit; ``betas`` all zero is the mean shape
  and allowed); ``has_mask`` is true exactly when ``mask`` is present. A false flag only means "do not
  supervise": the data behind it may hold anything finite (SPIN's files keep rejected fits, for instance);
- ``center`` and ``scale`` come together or not at all; ``crop_to_image`` is invertible;
- the JPEG decodes completely, as JPEG, to the recorded ``crop_size``; the mask has the crop's size;
- the evaluation fields are optional and independent of the flags: ``image_id`` a non-empty str,
  ``area`` finite and > 0, ``mask_original`` and ``silhouette_original`` uint8 of the original image's
  size (``image_size``), the silhouette holding only 0 and 1.

The field schema itself (:data:`SCHEMA`, :class:`FieldSpec`, :class:`CorruptSampleError`) lives in
:mod:`datamodules.schema` and is re-exported here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from datamodules.schema import (_KEY_RE, CAMERA_SCHEMA, CROP_CONTEXT, CROP_SIZE, GENDERS, MAX_ABS_METRES,
                                MEMBER_FIELDS, SCHEMA, CorruptSampleError, FieldSpec)
from runtime.errors import UserError

# The schema's names are re-exported: `datamodules.sample` stays the one import for a sample's content.
__all__ = [
    "CAMERA_SCHEMA", "CROP_CONTEXT", "CROP_SIZE", "GENDERS", "MAX_ABS_METRES", "MEMBER_FIELDS", "SCHEMA",
    "CorruptSampleError", "FieldSpec", "Sample", "person_crop_affine", "safe_key", "validate",
]


@dataclass(eq=False)
class Sample:
    """One person: a crop around them and everything known about them.

    Coordinates: "crop pixels" are continuous pixel coordinates of the stored crop (pixel i covers
    [i, i+1), see ``body.camera``); "original" are those of the source image; "camera" is the camera
    frame (x right, y down, z forward), metres. A missing keypoint/joint is all zeros with confidence 0.

    ==================  ==========  =======  ======================  ==================================
    key                 shape       dtype    unit                    frame / meaning
    ==================  ==========  =======  ======================  ==================================
    image               (H, W, 3)   uint8    RGB levels              crop (default 320 x 320) covering
                                                                     crop_context x the person box
    keypoints_2d        (49, 3)     float32  px + confidence         crop pixels; SPIN-49 order
                                                                     (``body.joints.SPIN49_JOINT_NAMES``)
    joints_3d           (24, 4)     float32  m + confidence          camera; SPIN's 24 ground-truth
                                                                     joints (``SPIN24_GT_JOINT_NAMES``)
    pose                (72,)       float32  rad, axis-angle         SMPL pose, global orientation first,
                                                                     in the camera frame
    betas               (10,)       float32  shape coefficients      SMPL shape
    has_smpl            -           bool     -                       pose/betas are supervision
    has_3d              -           bool     -                       joints_3d is supervision
    has_mask            -           bool     -                       mask is present
    bigraph_joints_2d   (12, 3)     float32  px + detector score     crop pixels; BiGraph-12 order
                                                                     (``BIGRAPH12_JOINT_NAMES``)
    gender              -           str      -                       "neutral" | "male" | "female"
    source              -           str      -                       data-set name ("h36m", "coco"...)
    image_size          (2,)        int32    px (width, height)      original image
    crop_to_image       (2, 3)      float32  affine                  crop px -> original px:
                                                                     x_orig = A[:, :2] @ x_crop + A[:, 2]
    crop_context        -           float    ratio (default 1.5)     person box = centred square of side
                                                                     min(H, W) / crop_context in the crop
    vertices (opt.)     (V, 3)      float32  m                       camera; ground-truth mesh: the body
                                                                     model's output (no translation) +
                                                                     ``transl``
    transl (opt.)       (3,)        float32  m                       camera; the translation in
                                                                     ``vertices``; absent = 0 (3DPW:
                                                                     SPIN's files have no translation,
                                                                     the mesh is the body model's output)
    mask (opt.)         (H, W)      uint8    label                   crop pixels; 0 background, 1..K
                                                                     parts (1 = foreground in a
                                                                     silhouette), 255 ignore
    camera (opt.)       dict        float32  px                      original image intrinsics:
                                                                     focal_length (2,), principal_point (2,)
    center (opt.)       (2,)        float32  px (x, y)               original image; SPIN box centre
    scale (opt.)        -           float    box side / 200 px       original image; SPIN box scale
    image_id (opt.)     -           str      -                       name of the original image; the
                                                                     people of one image share it (COCO
                                                                     AP groups detections by image)
    area (opt.)         -           float    px^2                    original image; the person's
                                                                     segmentation area (COCO's ``area``,
                                                                     the OKS scale)
    mask_original       (H0, W0)    uint8    label                   original image (H0, W0 = image_size
    (opt.)                                                           height, width); labels as ``mask``;
                                                                     independent of has_mask (eval
                                                                     protocols at original resolution)
    silhouette_original (H0, W0)    uint8    0 / 1                   original image; the person's
    (opt.)                                                           silhouette annotation, kept apart
                                                                     from the part labels (LSP's
                                                                     foreground protocol; no ignore label)
    bigraph_joints_from -           str      -                       where ``bigraph_joints_2d`` came
    (opt.)                                                           from: ``openpose_npz``,
                                                                     ``openpose_json:<dir>``,
                                                                     ``coco_results:<file>``,
                                                                     ``ground_truth``, ``none``,
                                                                     ``synthetic`` (None: not recorded)
    ==================  ==========  =======  ======================  ==================================

    ``key`` is the sample's WebDataset key: set by :func:`decode_sample`, used by :func:`write_shards`
    when present; it is not part of the annotation.
    """

    image: np.ndarray
    keypoints_2d: np.ndarray
    joints_3d: np.ndarray
    pose: np.ndarray
    betas: np.ndarray
    has_smpl: bool
    has_3d: bool
    has_mask: bool
    bigraph_joints_2d: np.ndarray
    gender: str
    source: str
    image_size: np.ndarray
    crop_to_image: np.ndarray
    crop_context: float = CROP_CONTEXT
    vertices: np.ndarray | None = None
    transl: np.ndarray | None = None
    mask: np.ndarray | None = None
    camera: dict[str, np.ndarray] | None = None
    center: np.ndarray | None = None
    scale: float | None = None
    image_id: str | None = None
    area: float | None = None
    mask_original: np.ndarray | None = None
    silhouette_original: np.ndarray | None = None
    bigraph_joints_from: str | None = None
    key: str | None = None

    @classmethod
    def build(cls, *, image: Any, source: str, image_size: Any, crop_to_image: Any, **fields: Any) -> "Sample":
        """A sample from loosely typed inputs: arrays cast to the schema dtypes, absent supervision zeroed.

        Absent ``keypoints_2d``, ``joints_3d``, ``pose``, ``betas``, ``bigraph_joints_2d`` become zeros
        (confidence 0); absent flags become ``has_smpl = has_3d = False`` and ``has_mask = mask is not
        None``; ``gender`` defaults to ``"neutral"``; other optional fields (``image_id``, ``area``,
        ``mask_original``...) stay None when absent. Nothing is validated here (see :func:`validate`).
        """
        unknown = set(fields) - set(SCHEMA) - {"key"}
        if unknown:
            raise TypeError(f"Sample.build got unknown fields {sorted(unknown)}")
        out: dict[str, Any] = {"image": image, "source": source, "image_size": image_size,
                               "crop_to_image": crop_to_image, **fields}
        for name in ("keypoints_2d", "joints_3d", "pose", "betas", "bigraph_joints_2d"):
            if out.get(name) is None:
                spec = SCHEMA[name]
                out[name] = np.zeros(spec.shape, spec.dtype)
        out.setdefault("has_smpl", False)
        out.setdefault("has_3d", False)
        out.setdefault("has_mask", out.get("mask") is not None)
        out.setdefault("gender", "neutral")
        for name, value in list(out.items()):
            spec = SCHEMA.get(name)
            if spec is None or value is None:
                continue
            if spec.kind in ("array", "image"):
                out[name] = np.ascontiguousarray(value, dtype=spec.dtype)
            elif spec.kind == "bool":
                out[name] = bool(value)
            elif spec.kind == "float":
                out[name] = float(value)
            elif spec.kind == "camera":
                out[name] = {k: np.ascontiguousarray(v, dtype=CAMERA_SCHEMA[k].dtype)
                             if k in CAMERA_SCHEMA else v for k, v in value.items()}
        return cls(**out)

    @property
    def crop_size(self) -> tuple[int, int]:
        """(width, height) of the stored crop."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def person_box(self) -> tuple[float, float, float]:
        """The person box in crop pixels: (centre x, centre y, side)."""
        w, h = self.crop_size
        return w / 2.0, h / 2.0, min(w, h) / self.crop_context


def person_crop_affine(center: Any, scale: float, crop_size: int = CROP_SIZE,
                       context: float = CROP_CONTEXT) -> np.ndarray:
    """``crop_to_image`` of a square crop of ``crop_size`` px covering ``context`` x the SPIN box.

    The SPIN box is centred at ``center`` (x, y) with side 200 * ``scale`` original pixels; the crop spans
    context * 200 * scale original pixels, so x_orig = k x_crop + center - k crop_size / 2 with
    k = context * 200 * scale / crop_size (continuous pixel coordinates, no rotation).
    Returns (2, 3) float32.
    """
    cx, cy = (float(v) for v in np.asarray(center, dtype=np.float64).reshape(2))
    k = context * 200.0 * float(scale) / crop_size
    half = crop_size / 2.0
    return np.array([[k, 0.0, cx - k * half], [0.0, k, cy - k * half]], dtype=np.float32)


def safe_key(text: str) -> str:
    """A valid sample key from any text: characters outside [A-Za-z0-9_-] become '_' (max 80 chars).

    Converters make keys like ``safe_key(f"{source}_{index:08d}_{imgname}")``; truncation keeps the tail
    unique only if the caller puts a unique index first.
    """
    key = re.sub(r"[^A-Za-z0-9_-]", "_", text)[:80]
    if not key:
        raise UserError("safe_key: empty sample key; build keys from the data-set name and an index")
    return key


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def _check_array(name: str, value: Any, spec: FieldSpec, dims: dict[str, int]) -> None:
    if not isinstance(value, np.ndarray):
        raise CorruptSampleError(name, "wrong type", f"expected a numpy {spec.dtype} array, got {type(value).__name__}")
    if value.dtype != np.dtype(spec.dtype):
        raise CorruptSampleError(name, "wrong dtype", f"dtype must be {spec.dtype}, got {value.dtype} "
                                 "(Sample.build casts)")
    assert spec.shape is not None
    expected = tuple(dims.get(d, -1) if isinstance(d, str) else d for d in spec.shape)
    ok = value.ndim == len(expected) and all(e in (-1, s) for e, s in zip(expected, value.shape))
    if not ok:
        shown = str(tuple(dims.get(d, d) if isinstance(d, str) else d for d in spec.shape)).replace("'", "")
        raise CorruptSampleError(name, "wrong shape", f"shape must be {shown}, got {tuple(value.shape)}")
    if value.dtype.kind == "f":
        if not np.isfinite(value).all():
            raise CorruptSampleError(name, "NaN/inf", "contains NaN or inf (store missing values as 0 "
                                     "with confidence 0)")
        if spec.confidence:
            conf = value[..., -1]
            if conf.size and (conf.min() < 0.0 or conf.max() > 1.0):
                raise CorruptSampleError(name, "confidence outside [0, 1]",
                                         f"confidence column outside [0, 1] (min {conf.min():g}, max {conf.max():g})")
        if spec.metres:
            xyz = value[..., :3]
            if xyz.size and np.abs(xyz).max() > MAX_ABS_METRES:
                raise CorruptSampleError(name, "not metres", f"coordinate {np.abs(xyz).max():g} beyond "
                                         f"{MAX_ABS_METRES:g} m: looks like millimetres; store metres")


def _check_float(name: str, value: Any, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise CorruptSampleError(name, "wrong type", f"expected a float, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise CorruptSampleError(name, "NaN/inf", "is NaN or inf")
    if positive and float(value) <= 0.0:
        raise CorruptSampleError(name, "not positive", f"must be > 0, got {float(value):g}")


def validate(sample: Sample) -> None:
    """Check a sample against :data:`SCHEMA` and the policy in the module docstring.

    Raises:
        CorruptSampleError: one line naming the field and what is wrong.
    """
    if not isinstance(sample, Sample):
        raise CorruptSampleError("sample", "wrong type", f"expected a Sample, got {type(sample).__name__}")
    dims: dict[str, int] = {}
    for name, spec in SCHEMA.items():
        value = getattr(sample, name)
        if value is None:
            if spec.required:
                raise CorruptSampleError(name, "missing", "missing required field")
            continue
        if spec.kind == "image":
            _check_array(name, value, spec, dims)
            h, w = value.shape[:2]
            if not (0 < h <= 65500 and 0 < w <= 65500):
                raise CorruptSampleError(name, "wrong shape", f"crop size {w} x {h} is not a valid JPEG size")
            dims.update(H=int(h), W=int(w))
        elif spec.kind == "array":
            _check_array(name, value, spec, dims)
            if name == "image_size" and (value > 0).all():  # sizes "H0"/"W0" (mask_original)
                dims.update(W0=int(value[0]), H0=int(value[1]))
        elif spec.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise CorruptSampleError(name, "wrong type", f"expected a bool, got {type(value).__name__}")
        elif spec.kind == "str":
            if not isinstance(value, str) or not value:
                raise CorruptSampleError(name, "wrong type", f"expected a non-empty str, got {value!r}")
        elif spec.kind == "float":
            _check_float(name, value, positive=True)
        elif spec.kind == "camera":
            if not isinstance(value, Mapping) or set(value) != set(CAMERA_SCHEMA):
                got = sorted(value) if isinstance(value, Mapping) else type(value).__name__
                raise CorruptSampleError(name, "wrong keys", f"must be a dict with keys {sorted(CAMERA_SCHEMA)}, "
                                         f"got {got}")
            for sub, sub_spec in CAMERA_SCHEMA.items():
                _check_array(f"{name}.{sub}", value[sub], sub_spec, dims)
            if (value["focal_length"] <= 0).any():
                raise CorruptSampleError(f"{name}.focal_length", "not positive", "focal lengths must be > 0")
    # Values and consistency between fields.
    if sample.gender not in GENDERS:
        raise CorruptSampleError("gender", "bad value", f"must be one of {'/'.join(GENDERS)}, got {sample.gender!r}")
    if (sample.image_size <= 0).any():
        raise CorruptSampleError("image_size", "not positive", f"must be > 0, got {sample.image_size.tolist()}")
    if sample.crop_context < 1.0:
        raise CorruptSampleError("crop_context", "bad value", f"must be >= 1, got {sample.crop_context:g}")
    det = float(np.linalg.det(sample.crop_to_image[:, :2].astype(np.float64)))
    if not abs(det) > 1e-12:
        raise CorruptSampleError("crop_to_image", "not invertible", f"linear part is singular (det {det:g})")
    if (sample.center is None) != (sample.scale is None):
        missing = "scale" if sample.scale is None else "center"
        raise CorruptSampleError(missing, "missing", "center and scale come together: give both or neither")
    if sample.has_3d and not (sample.joints_3d[:, 3] > 0).any():
        raise CorruptSampleError("has_3d", "inconsistent flag", "has_3d is True but every joints_3d confidence is 0")
    if sample.has_smpl and not sample.pose.any():
        raise CorruptSampleError("has_smpl", "inconsistent flag", "has_smpl is True but pose is all zeros "
                                 "(a placeholder, not a fit)")
    if bool(sample.has_mask) != (sample.mask is not None):
        raise CorruptSampleError("has_mask", "inconsistent flag",
                                 f"has_mask is {bool(sample.has_mask)} but mask is "
                                 f"{'absent' if sample.mask is None else 'present'}")
    if sample.silhouette_original is not None and int(sample.silhouette_original.max(initial=0)) > 1:
        raise CorruptSampleError("silhouette_original", "bad value", "a silhouette holds 0 (background) and 1 "
                                 f"(person) only, got {int(sample.silhouette_original.max())}")
    if sample.key is not None and not _KEY_RE.match(sample.key):
        raise CorruptSampleError("key", "bad value", f"key {sample.key!r} must match [A-Za-z0-9_-]{{1,80}} "
                                 "(use safe_key)")


# ----------------------------------------------------------------------------------------------
# Array and annotation encoding (msgpack, no pickle)
# ----------------------------------------------------------------------------------------------
