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
- pose / betas / has_smpl: as the file says (has_smpl defaults to 1 where pose exists); with ``--fits``,
  a valid fit supervises the rows without SMPL ground truth (:mod:`.fits`);
- bigraph_joints_2d (12, 3) and bigraph_joints_from: from ``--detections`` (:mod:`.detections`; default:
  the file's ``openpose`` detections when it has them, else none: all joints missing, confidence 0);
- gender, source (= dataset name), image_size (after EXIF orientation), center, scale;
- mask: 6-part labels (from ``partname``) or a silhouette (from ``maskname``), cropped, see :mod:`.masks`;
- mask_original / silhouette_original: for a test split only (``--split test``: the LSP segmentation
  protocol scores there), at the original resolution: the part labels (``partname``) and, apart from
  them, the silhouette (``maskname``); training splits leave both None;
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
from datamodules.convert.detections import (DEFAULT_THRESHOLD, KEYWORDS, ExternalDetections, load_external,
                                            resolve_source, row_joints)
from datamodules.convert.fits import EXTREME_BETAS_MODES, Fits, load_fits, supervise
from datamodules.convert.keypoints import keypoints49, keypoints_to_crop
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
    fits: str | None = None        # SPIN final fits (.npz), a (N, 82) .npy, or EFT (.json): datamodules.convert.fits
    fits_extreme_betas: str = "zero"
    detections: str = "auto"       # auto | none | ground-truth | an OpenPose JSON folder | a COCO results .json
    detections_images: str | None = None
    detection_threshold: float = DEFAULT_THRESHOLD

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
        if self.fits_extreme_betas not in EXTREME_BETAS_MODES:
            raise UserError(f"unknown --fits-extreme-betas {self.fits_extreme_betas!r}: choose zero or keep")
        if self.detections not in KEYWORDS and not os.path.exists(self.detections):
            raise UserError(f"--detections {self.detections}: no such file or folder (an OpenPose JSON folder, a "
                            f"COCO keypoint results .json, or one of {', '.join(KEYWORDS)})")
        if self.detections_images is not None and not os.path.isfile(self.detections_images):
            raise UserError(f"--detections-images {self.detections_images}: no such file")
        if not 0.0 <= self.detection_threshold <= 1.0:
            raise UserError(f"--detection-threshold must be in [0, 1], got {self.detection_threshold:g}")


def silhouette_source(settings: ConvertSettings, npz: SpinNpz) -> bool:
    """Whether a test split also stores ``silhouette_original`` (from ``maskname``, apart from the parts)."""
    return settings.split == "test" and settings.mask != "none" and "maskname" in npz.keys


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


def build_sample(record: SpinRecord, image: np.ndarray, spec: DatasetSpec, crop_size: int,
                 bigraph: tuple[np.ndarray, str] | None = None, mask: np.ndarray | None = None,
                 body_gt: BodyGroundTruth | None = None, keep_original_mask: bool = False,
                 silhouette: np.ndarray | None = None) -> Sample:
    """One sample from a cleaned record and its decoded image (and mask, in our labels).

    Args:
        record: the person; image: (H, W, 3) uint8 original image; mask: (H, W) uint8 labels or None.
        bigraph: (12, 3) BiGraph joints in original pixel indices + score, and where they came from
            (``detections.row_joints``); None: missing.
        body_gt: required when ``spec.vertices_from_body_model`` and the record has pose/betas.
        keep_original_mask: also store ``mask`` uncropped as ``mask_original`` (test splits with part labels).
        silhouette: (H, W) uint8 0 / 1 silhouette annotation, stored as ``silhouette_original``.
    """
    affine = person_crop_affine(record.center, record.scale, crop_size, CROP_CONTEXT)
    kp49 = keypoints_to_crop(keypoints49(record.openpose, record.part), affine)
    joints, joints_from = bigraph if bigraph is not None else (np.zeros((12, 3)), "none")
    fields: dict = dict(keypoints_2d=kp49, bigraph_joints_2d=keypoints_to_crop(joints, affine),
                        bigraph_joints_from=joints_from, gender=record.gender,
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
    if silhouette is not None:
        fields["silhouette_original"] = silhouette
    return Sample.build(image=crop_image(image, affine, crop_size), source=spec.name,
                        image_size=(image.shape[1], image.shape[0]), crop_to_image=affine, **fields)


def _skip(counter: SkipCounter, field: str, problem: str, detail: str, key: str) -> None:
    counter.add(CorruptSampleError(field, problem, detail, key=key))


@dataclass
class RowSources:
    """Per-file sources of a conversion: masks (:func:`mask_source`), the silhouette, BiGraph's detections
    (``detections.resolve_source`` and the loaded external file) and fits."""

    masks_from: str | None = None
    silhouette: bool = False
    bigraph: str = "none"
    external: ExternalDetections | None = None
    fits: Fits | None = None


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
                 body_gt: BodyGroundTruth | None, sources: RowSources) -> Iterator[Sample]:
    """Validated samples of the file's rows (up to ``settings.limit``); skips are counted in ``counter``."""
    spec = DATASETS[settings.dataset]
    mask_root = settings.masks or settings.images
    rows = len(npz) if settings.limit is None else min(settings.limit, len(npz))
    cache: tuple[str, np.ndarray] | None = None  # consecutive rows often share an image
    progress = sys.stderr.isatty()
    for i in range(rows):
        if progress and i and i % 5000 == 0:
            print(f"{spec.name}: {i}/{rows} rows", file=sys.stderr)
        record = npz.record(i)
        if sources.fits is not None:
            record = supervise(record, sources.fits, settings.fits_extreme_betas, notes)
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
            mask = None if sources.masks_from is None else _read_mask(record, sources.masks_from, mask_root,
                                                                      image.shape[:2], notes)
            silhouette = None
            if sources.silhouette:
                silhouette = mask if sources.masks_from == "maskname" else \
                    _read_mask(record, "maskname", mask_root, image.shape[:2], notes)
        except ImageReadError as exn:
            _skip(counter, "mask", exn.problem, str(exn), key)
            continue
        bigraph = row_joints(sources.bigraph, record.openpose, record.part, sources.external, record.imgname,
                             record.center, record.scale, settings.detection_threshold, notes)
        notes[f"bigraph_joints_from: {bigraph[1]}"] += 1
        try:
            sample = build_sample(record, image, spec, settings.crop_size, bigraph, mask, body_gt,
                                  keep_original_mask=settings.split == "test" and sources.masks_from == "partname",
                                  silhouette=silhouette)
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
    notes: collections.Counter = collections.Counter()
    sources = _row_sources(settings, npz, notes)
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
    shards = write_shards(iter_samples(settings, npz, counter, notes, body_gt, sources),
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
        "bigraph_joints_2d_from": _bigraph_description(sources),
        "fits": None if sources.fits is None else {
            "path": os.path.abspath(sources.fits.path), "kind": sources.fits.kind,
            "valid": int(sources.fits.valid.sum()), "extreme_betas": settings.fits_extreme_betas},
        "mask_from": sources.masks_from, "silhouette_original_from": "maskname" if sources.silhouette else None,
        "s_max_abs_metres": npz.s_max_abs,
        "notes": dict(notes) | ({"printed": printed} if printed else {}),
        "quirks": list(spec.quirks), "elapsed_s": round(time.time() - start, 2),
    }
    os.makedirs(settings.out, exist_ok=True)
    with open(os.path.join(settings.out, REPORT_NAME), "w") as fh:
        json.dump(report, fh, indent=2)
    return report


def _row_sources(settings: ConvertSettings, npz: SpinNpz, notes: collections.Counter) -> RowSources:
    """Load what the rows draw from (masks, detections, fits); file-level problems are one-line UserErrors."""
    sources = RowSources(masks_from=mask_source(settings, npz), silhouette=silhouette_source(settings, npz),
                         bigraph=resolve_source(settings.detections, npz.keys))
    names = [str(n) for n in npz.data["imgname"]]
    if sources.bigraph == "external":
        sources.external = load_external(settings.detections, names, settings.detections_images)
    if settings.fits is not None:
        sources.fits = load_fits(settings.fits, np.array(names), npz.data["center"], npz.data["scale"], notes)
    return sources


def _bigraph_description(sources: RowSources) -> str:
    if sources.bigraph == "external" and sources.external is not None:
        what = "OpenPose JSON folder" if sources.external.kind == "openpose_json" else "COCO keypoint results"
        return f"{what} {os.path.abspath(sources.external.path)} (bigraph_joints_from {sources.external.label})"
    return {"openpose_npz": "OpenPose detections of the npz's openpose key (score = confidence)",
            "ground_truth": "ground-truth part, used as detections on request (--detections ground-truth)",
            "none": "nothing: every joint missing (confidence 0)"}[sources.bigraph]


def summary_line(report: dict) -> str:
    """One line: what was written, what was skipped and why, where the report is."""
    sk = report["skipped"]
    why = ", ".join(f"{r} x{n}" for r, n in sorted(sk["reasons"].items(), key=lambda kv: -kv[1]))
    skipped = f"skipped {sk['count']}" + (f" ({why})" if why else "")
    out = report["settings"]["out"]
    return (f"{report['dataset']} ({report['split']}): wrote {report['written']} samples to "
            f"{len(report['shards'])} shard(s) in {out}, {skipped}; report {os.path.join(out, REPORT_NAME)}")
