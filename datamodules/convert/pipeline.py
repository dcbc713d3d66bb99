"""SPIN-format npz + image root -> WebDataset shards of :class:`datamodules.sample.Sample`.

:func:`convert` is the whole job: load and validate the npz (:mod:`.spin_npz`), turn each row into a
sample (:func:`build_sample`), write ``<out>/<dataset>-%06d.tar`` (:func:`datamodules.shards.write_shards`)
and ``<out>/convert_report.json``. A row whose image (or mask) is missing or unreadable, or whose
box is invalid, is skipped and counted by reason; it never stops the run.

What a converted sample holds (the field docs of ``Sample`` are the reference):

- image: the person crop, ``crop_to_image = person_crop_affine(center, scale, crop_size, 1.5)``;
- keypoints_2d (49, 3): ``openpose`` then ``part``, in crop pixels, confidences kept (clipped to [0, 1]);
- joints_3d (24, 4): ``S`` in metres (3DPW: from the body model, :mod:`.body_gt`); ``has_3d`` when any
  joint is visible;
- pose / betas / has_smpl: as the file says (has_smpl defaults to 1 where pose exists);
- bigraph_joints_2d (12, 3): from ``openpose`` when the file has OpenPose detections (score = OpenPose
  confidence), else from ``part`` (ground truth used as detections), else zeros;
- gender, source (= dataset name), image_size (after EXIF orientation), center, scale;
- mask: 6-part labels (from ``partname``) or a silhouette (from ``maskname``), cropped, see :mod:`.masks`;
- mask_original: the same labels uncropped, at the original resolution, for a test split with masks only
  (``--split test``: the LSP segmentation protocol scores there); training splits leave it None;
- vertices: 3DPW only;
- image_id: ``imgname`` (the people of one image share it);
- area: None (SPIN's files do not have it; the COCO protocol reads the official annotation json);
- key: ``safe_key(f"{dataset}_{index:08d}_{imgname}")`` with the npz row index.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from datamodules.convert.body_gt import OPEN_BODY_NOTE, BodyGroundTruth
from datamodules.convert.crop import ImageReadError, crop_image, crop_labels, load_rgb
from datamodules.convert.datasets import DATASET_NAMES, DATASETS, SPLITS, DatasetSpec
from datamodules.convert.keypoints import (bigraph12_from_openpose, bigraph12_from_part, keypoints49,
                                           keypoints_to_crop)
from datamodules.convert.masks import (IGNORE, MaskDecodeError, map_part_labels, read_label_png,
                                       read_silhouette_png)
from datamodules.convert.spin_npz import SpinNpz, SpinRecord
from datamodules.sample import CROP_CONTEXT, CorruptSampleError, Sample, person_crop_affine, safe_key, validate
from datamodules.shards import SkipCounter, write_shards
from runtime.errors import UserError

REPORT_NAME = "convert_report.json"
MASK_MODES = ("auto", "parts", "silhouette", "none")


@dataclass(frozen=True)
class ConvertSettings:
    """Everything one conversion needs (the CLI's arguments)."""

    dataset: str
    npz: str
    images: str
    out: str
    split: str = "train"
    shard_size: int = 1000
    crop_size: int = 320
    body: str = "open"
    smpl_dir: str | None = None
    limit: int | None = None
    masks: str | None = None       # root of maskname/partname paths (default: images)
    mask: str = "auto"             # auto: parts if partname, else silhouette if maskname
    s_units: str = "m"
    allow_pickle: bool = False
    overwrite: bool = False

    def check(self) -> None:
        """One-line UserErrors for bad settings."""
        if self.dataset not in DATASET_NAMES:
            raise UserError(f"unknown dataset {self.dataset!r}: choose one of {', '.join(DATASET_NAMES)}")
        if self.split not in SPLITS:
            raise UserError(f"unknown split {self.split!r}: choose train or test")
        if self.body not in ("open", "smpl"):
            raise UserError(f"unknown body {self.body!r}: choose open or smpl")
        if self.mask not in MASK_MODES:
            raise UserError(f"unknown mask mode {self.mask!r}: choose one of {', '.join(MASK_MODES)}")
        if self.s_units not in ("m", "mm"):
            raise UserError(f"unknown --s-units {self.s_units!r}: choose m or mm")
        if self.shard_size < 1 or self.crop_size < 16 or (self.limit is not None and self.limit < 0):
            raise UserError("--shard-size must be >= 1, --crop-size >= 16 and --limit >= 0")
        if not os.path.isfile(self.npz):
            raise UserError(f"--npz {self.npz}: no such file")
        if not os.path.isdir(self.images):
            raise UserError(f"--images {self.images}: no such folder")
        if self.masks is not None and not os.path.isdir(self.masks):
            raise UserError(f"--masks {self.masks}: no such folder")


def mask_source(settings: ConvertSettings, npz: SpinNpz) -> str | None:
    """Which npz key the masks come from ("partname" | "maskname") or None."""
    has = {k: k in npz.keys for k in ("partname", "maskname")}
    if settings.mask == "none":
        return None
    if settings.mask == "parts" or (settings.mask == "auto" and has["partname"]):
        if not has["partname"]:
            raise UserError(f"--mask parts: {settings.npz} has no partname key")
        return "partname"
    if settings.mask == "silhouette" or (settings.mask == "auto" and has["maskname"]):
        if not has["maskname"]:
            raise UserError(f"--mask silhouette: {settings.npz} has no maskname key")
        return "maskname"
    return None


def bigraph_source(npz: SpinNpz) -> str:
    """Where ``bigraph_joints_2d`` comes from for this file: "openpose" | "part" | "none"."""
    return "openpose" if "openpose" in npz.keys else "part" if "part" in npz.keys else "none"


def build_sample(record: SpinRecord, image: np.ndarray, spec: DatasetSpec, crop_size: int,
                 bigraph_from: str, mask: np.ndarray | None = None,
                 body_gt: BodyGroundTruth | None = None, keep_original_mask: bool = False) -> Sample:
    """One sample from a cleaned record and its decoded image (and mask, in our labels).

    Args:
        record: the person; image: (H, W, 3) uint8 original image; mask: (H, W) uint8 labels or None.
        bigraph_from: "openpose" | "part" | "none" (see :func:`bigraph_source`).
        body_gt: required when ``spec.vertices_from_body_model`` and the record has pose/betas.
        keep_original_mask: also store ``mask`` uncropped as ``mask_original`` (test splits).
    """
    affine = person_crop_affine(record.center, record.scale, crop_size, CROP_CONTEXT)
    kp49 = keypoints_to_crop(keypoints49(record.openpose, record.part), affine)
    if bigraph_from == "openpose":
        bigraph = bigraph12_from_openpose(kp49[:25])
    elif bigraph_from == "part":
        bigraph = bigraph12_from_part(kp49[25:])
    else:
        bigraph = np.zeros((12, 3))
    fields: dict = dict(keypoints_2d=kp49, bigraph_joints_2d=bigraph, gender=record.gender,
                        center=record.center, scale=record.scale, image_id=record.imgname, key=safe_key(
                            f"{spec.name}_{record.index:08d}_{record.imgname}"))
    if record.pose is not None:
        fields.update(pose=record.pose, betas=record.betas, has_smpl=record.has_smpl)
    if record.S is not None:
        fields.update(joints_3d=record.S, has_3d=bool((record.S[:, 3] > 0).any()))
    if spec.vertices_from_body_model and record.pose is not None:
        if body_gt is None:
            raise ValueError(f"{spec.name} needs a BodyGroundTruth for its vertices")
        vertices, joints_3d = body_gt(record.pose, record.betas, record.gender)
        fields.update(vertices=vertices, joints_3d=joints_3d, has_3d=True)
    if mask is not None:
        fields.update(mask=crop_labels(mask, affine, crop_size, fill=IGNORE), has_mask=True)
        if keep_original_mask:
            fields["mask_original"] = mask
    return Sample.build(image=crop_image(image, affine, crop_size), source=spec.name,
                        image_size=(image.shape[1], image.shape[0]), crop_to_image=affine, **fields)


def _skip(counter: SkipCounter, field: str, problem: str, detail: str, key: str) -> None:
    counter.add(CorruptSampleError(field, problem, detail, key=key))


def _read_mask(record: SpinRecord, source: str, root: str, image_hw: tuple[int, int],
               notes: collections.Counter) -> np.ndarray:
    rel = record.partname if source == "partname" else record.maskname
    path = os.path.join(root, rel or "")
    if not rel or not os.path.isfile(path):
        raise ImageReadError("missing file", f"{path}: no such file")
    try:
        if source == "partname":
            labels, unknown = map_part_labels(read_label_png(path))
            if unknown:
                notes["mask: samples with unknown part labels set to 255"] += 1
        else:
            labels = read_silhouette_png(path)
    except MaskDecodeError as exn:
        raise ImageReadError("unknown encoding", f"{path}: {exn}") from None
    except Exception as exn:
        raise ImageReadError("unreadable", f"{path}: cannot decode ({type(exn).__name__}: {exn})") from None
    if labels.shape != image_hw:
        raise ImageReadError("size differs from image", f"{path}: {labels.shape[1]} x {labels.shape[0]}, "
                             f"image {image_hw[1]} x {image_hw[0]}")
    return labels


def iter_samples(settings: ConvertSettings, npz: SpinNpz, counter: SkipCounter, notes: collections.Counter,
                 body_gt: BodyGroundTruth | None, masks_from: str | None, bigraph_from: str) -> Iterator[Sample]:
    """Validated samples of the file's rows (up to ``settings.limit``); skips are counted in ``counter``.

    ``masks_from`` / ``bigraph_from``: see :func:`mask_source` / :func:`bigraph_source`.
    """
    spec = DATASETS[settings.dataset]
    mask_root = settings.masks or settings.images
    rows = len(npz) if settings.limit is None else min(settings.limit, len(npz))
    cache: tuple[str, np.ndarray] | None = None  # consecutive rows often share an image
    progress = sys.stderr.isatty()
    for i in range(rows):
        if progress and i and i % 5000 == 0:
            print(f"{spec.name}: {i}/{rows} rows", file=sys.stderr)
        record = npz.record(i)
        key = safe_key(f"{spec.name}_{record.index:08d}_{record.imgname}")
        if not (np.isfinite(record.center).all() and np.isfinite(record.scale) and record.scale > 0):
            _skip(counter, "box", "invalid center/scale", f"center {record.center.tolist()}, scale {record.scale}", key)
            continue
        path = os.path.join(settings.images, record.imgname)
        try:
            if cache is None or cache[0] != path:
                cache = None
                image, rotated = load_rgb(path)
                cache = (path, image)
                if rotated:
                    notes["images with EXIF orientation applied"] += 1
            image = cache[1]
        except ImageReadError as exn:
            _skip(counter, "image", exn.problem, str(exn), key)
            continue
        try:
            mask = None if masks_from is None else _read_mask(record, masks_from, mask_root, image.shape[:2], notes)
        except ImageReadError as exn:
            _skip(counter, "mask", exn.problem, str(exn), key)
            continue
        if record.openpose is not None and bigraph_from == "openpose" and not record.openpose[:, 2].any():
            notes["bigraph: no OpenPose detection (scores 0)"] += 1
        try:
            sample = build_sample(record, image, spec, settings.crop_size, bigraph_from, mask, body_gt,
                                  keep_original_mask=settings.split == "test")
            validate(sample)
        except CorruptSampleError as err:
            counter.add(err.at(key, None))
            continue
        yield sample


def _existing_shards(settings: ConvertSettings) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(settings.out), f"{settings.dataset}-*.tar")))


def convert(settings: ConvertSettings) -> dict:
    """Run one conversion; return the report (also written to ``<out>/convert_report.json``)."""
    settings.check()
    start = time.time()
    spec = DATASETS[settings.dataset]
    old = _existing_shards(settings)
    if old and not settings.overwrite:
        raise UserError(f"{settings.out} already holds {len(old)} {settings.dataset}-*.tar shard(s): pass "
                        "--overwrite to replace them, or choose another --out")
    npz = SpinNpz(settings.npz, spec, settings.split, settings.s_units, settings.allow_pickle)
    masks_from, bigraph_from = mask_source(settings, npz), bigraph_source(npz)
    notes: collections.Counter = collections.Counter()
    printed: list[str] = []
    body_gt = None
    if spec.vertices_from_body_model:
        body_gt = BodyGroundTruth(settings.body, settings.smpl_dir)
        body_gt.load(npz.genders())  # fail before writing anything when a model file is missing
        if settings.body == "open":
            printed.append(OPEN_BODY_NOTE)
    for line in printed:
        print(f"note: {line}")
    for path in old:
        os.remove(path)
    counter = SkipCounter(max_examples=20)
    shards = write_shards(iter_samples(settings, npz, counter, notes, body_gt, masks_from, bigraph_from),
                          os.path.join(settings.out, f"{settings.dataset}-%06d.tar"), max_count=settings.shard_size)
    notes.update(npz.notes)
    rows = len(npz) if settings.limit is None else min(settings.limit, len(npz))
    report = {
        "dataset": spec.name, "title": spec.title, "split": settings.split,
        "source_npz": os.path.abspath(settings.npz), "npz_rows": len(npz), "rows_considered": rows,
        "npz_keys": list(npz.keys), "npz_keys_ignored": list(npz.ignored_keys),
        "written": rows - counter.count, "skipped": {"count": counter.count, "reasons": dict(counter.reasons),
                                                     "examples": counter.examples},
        "shards": [os.path.basename(p) for p in shards],
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k not in ("dataset", "split")}
        | {"crop_context": CROP_CONTEXT},
        "bigraph_joints_2d_from": {"openpose": "OpenPose detections (score = confidence)",
                                   "part": "ground-truth part (ground truth used as detections)",
                                   "none": "nothing: all zeros"}[bigraph_from],
        "mask_from": masks_from, "s_max_abs_metres": npz.s_max_abs,
        "notes": dict(notes) | ({"printed": printed} if printed else {}),
        "quirks": list(spec.quirks), "elapsed_s": round(time.time() - start, 2),
    }
    os.makedirs(settings.out, exist_ok=True)
    with open(os.path.join(settings.out, REPORT_NAME), "w") as fh:
        json.dump(report, fh, indent=2)
    return report


def summary_line(report: dict) -> str:
    """One line: what was written, what was skipped and why, where the report is."""
    sk = report["skipped"]
    why = ", ".join(f"{r} x{n}" for r, n in sorted(sk["reasons"].items(), key=lambda kv: -kv[1]))
    skipped = f"skipped {sk['count']}" + (f" ({why})" if why else "")
    out = report["settings"]["out"]
    return (f"{report['dataset']} ({report['split']}): wrote {report['written']} samples to "
            f"{len(report['shards'])} shard(s) in {out}, {skipped}; report {os.path.join(out, REPORT_NAME)}")
