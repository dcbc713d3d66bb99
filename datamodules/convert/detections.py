"""BiGraph's detected 2D joints (``bigraph_joints_2d``) from external detector output, and where they came from.

BiGraph's skeleton branch reads 2D joints from a detector at test time (the paper's HRNet). The converter's
``--detections`` option says where a sample's 12 joints come from (:func:`resolve_source`):

- ``auto`` (default): the npz's ``openpose`` column when the file has one (SPIN's matched OpenPose BODY_25
  detections), else none;
- a folder of OpenPose JSON files (``--write_json`` output, one ``<image stem>_keypoints.json`` per image:
  ``{"people": [{"pose_keypoints_2d": [x, y, c] * 25}, ...]}``, BODY_25 only), looked up as
  ``<folder>/<imgname without extension>_keypoints.json`` (the image tree mirrored), else
  ``<folder>/<image stem>_keypoints.json``;
- a COCO-format keypoint results file (a JSON list of ``{"image_id", "category_id", "keypoints": 51 numbers,
  "score"}``, what HRNet's or ViTPose's test scripts write; category 1 = person). Image ids are matched to
  the npz's ``imgname``: through ``--detections-images`` (a COCO annotation file whose ``images`` give
  ``id`` and ``file_name``) when given; else a string id is the image name (or its base name), and an
  integer id is the number in the image's base name (COCO's ``COCO_val2014_000000000139.jpg`` -> 139), if
  those numbers are unique in the npz;
- ``ground-truth``: the npz's own 2D ground truth (``part``) used as detections, on explicit request only
  (it is not a detector's output: evaluation with it overstates the model);
- ``none``: every joint missing.

Matching one row to a person of its image (:func:`match_person`): people with a detection score below the
threshold (``--detection-threshold``, default :data:`DEFAULT_THRESHOLD`; COCO results: their ``score``;
OpenPose: the mean confidence of its 12 BiGraph joints, missing ones counting 0) are dropped; each remaining
person's centre is the centre of the box around its keypoints with confidence > 0; the row takes the person
whose centre is nearest the row's box centre (``center``) among those inside the row's box (side 200 *
``scale``). No such person: the row's joints are all missing (confidence 0). The joints' scores are the
detector's per-joint confidences clipped to [0, 1]; a joint with confidence 0 is missing.

Each sample records its source in ``bigraph_joints_from``: ``openpose_npz``, ``openpose_json:<folder name>``,
``coco_results:<file name>``, ``ground_truth``, or ``none`` (no person matched, or no detection at all).
"""
from __future__ import annotations

import collections
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from body.joints import COCO17_TO_BIGRAPH12, J24_TO_BIGRAPH12, OPENPOSE25_TO_BIGRAPH12
from datamodules.convert.keypoints import clean_confidence_rows
from datamodules.convert.spin_npz import read_json_file
from runtime.errors import UserError

DEFAULT_THRESHOLD: float = 0.1
KEYWORDS: tuple[str, ...] = ("auto", "none", "ground-truth")
NONE_LABEL = "none"


@dataclass
class Person:
    """One detected person: ``joints`` (12, 3) BiGraph-12 pixel indices + confidence; ``keypoints`` (K, 3) all
    of the detector's keypoints (for the person's centre); ``score`` the detection score."""

    joints: np.ndarray
    keypoints: np.ndarray
    score: float


def _person_from(keypoints: np.ndarray, index: list[int], score: float | None) -> Person:
    kp, _ = clean_confidence_rows(keypoints)
    joints = kp[index]
    return Person(joints, kp, float(joints[:, 2].mean()) if score is None else float(score))


def match_person(people: list[Person], center: np.ndarray, scale: float, threshold: float) -> int | None:
    """Index of the row's person (module docstring) or None. center (2,) px, scale: SPIN box side / 200."""
    half = 100.0 * float(scale)
    best, best_d = None, np.inf
    for k, p in enumerate(people):
        seen = p.keypoints[p.keypoints[:, 2] > 0, :2]
        if p.score < threshold or not len(seen):
            continue
        centre = 0.5 * (seen.min(0) + seen.max(0))
        off = np.abs(centre - np.asarray(center, dtype=np.float64))
        d = float(np.hypot(*off))
        if (off <= half).all() and d < best_d:
            best, best_d = k, d
    return best


def _read_openpose_file(path: str) -> list[Person]:
    data = read_json_file(path, "--detections")
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise UserError(f"--detections: {path}: not an OpenPose JSON file (an object with a 'people' list)")
    out = []
    for p in people:
        flat = np.asarray(p.get("pose_keypoints_2d", []) if isinstance(p, dict) else [], dtype=np.float64)
        if flat.size != 75:
            raise UserError(f"--detections: {path}: pose_keypoints_2d has {flat.size} numbers; only BODY_25 "
                            "(75 numbers) is read: run OpenPose with --model_pose BODY_25")
        out.append(_person_from(flat.reshape(25, 3), OPENPOSE25_TO_BIGRAPH12, None))
    return out


@dataclass
class ExternalDetections:
    """Detections from a file or folder (module docstring); ``people(imgname)`` -> the image's people."""

    kind: str                    # "openpose_json" | "coco_results"
    path: str
    label: str
    by_image: dict[str, list[Person]] = field(default_factory=dict)
    _last: tuple[str, list[Person] | None] = ("", None)   # OpenPose: the last image's file (rows of one image)

    def people(self, imgname: str) -> list[Person] | None:
        """The image's detected people ([] when the detector found nobody), None when it has no entry."""
        if self.kind == "coco_results":
            return self.by_image.get(imgname)
        if self._last[0] != imgname:
            stem = os.path.splitext(imgname)[0]
            paths = [os.path.join(self.path, rel + "_keypoints.json") for rel in (stem, os.path.basename(stem))]
            found = next((p for p in paths if os.path.isfile(p)), None)
            self._last = (imgname, None if found is None else _read_openpose_file(found))
        return self._last[1]


def _trailing_number(name: str) -> int | None:
    found = re.findall(r"\d+", os.path.splitext(os.path.basename(name))[0])
    return int(found[-1]) if found else None


def _image_names_by_id(results: list, imgnames: list[str], images_json: str | None, path: str) -> dict:
    """image_id -> imgname of the npz (module docstring)."""
    base = {os.path.basename(n): n for n in imgnames}
    full = set(imgnames)
    if images_json is not None:
        try:
            with open(images_json) as fh:
                images = json.load(fh)["images"]
            names = {im["id"]: im["file_name"] for im in images}
            return {i: n if n in full else base.get(os.path.basename(n)) for i, n in names.items()}
        except (OSError, ValueError, KeyError, TypeError) as exn:
            raise UserError(f"--detections-images {images_json}: not a COCO annotation file with images "
                            f"[{{id, file_name}}] ({type(exn).__name__}: {exn})") from None
    ids = {r.get("image_id") for r in results}
    if all(isinstance(i, str) for i in ids):
        return {i: (i if i in full else base.get(os.path.basename(i))) for i in ids}
    numbers = collections.Counter(_trailing_number(n) for n in imgnames)
    if any(c > 1 for num, c in numbers.items() if num is not None):
        raise UserError(f"--detections {path}: integer image ids, and the npz's image names do not carry unique "
                        "numbers; pass --detections-images <COCO annotation json whose images list id and file_name>")
    by_number = {_trailing_number(n): n for n in imgnames}
    return {i: by_number.get(i) for i in ids}


def _load_coco_results(path: str, imgnames: list[str], images_json: str | None) -> ExternalDetections:
    results = read_json_file(path, "--detections")
    if not isinstance(results, list) or not all(isinstance(r, dict) and "image_id" in r and "keypoints" in r
                                                for r in results):
        raise UserError(f"--detections {path}: not a COCO keypoint results file (a JSON list of "
                        "{image_id, category_id, keypoints, score})")
    names = _image_names_by_id(results, imgnames, images_json, path)
    out = ExternalDetections("coco_results", path, f"coco_results:{os.path.basename(path)}")
    for r in results:
        if int(r.get("category_id", 1)) != 1 or names.get(r["image_id"]) is None:
            continue
        kp = np.asarray(r["keypoints"], dtype=np.float64)
        if kp.size != 51:
            raise UserError(f"--detections {path}: a result has {kp.size} keypoint numbers, expected 51 (COCO-17 x, y, "
                            "score)")
        person = _person_from(kp.reshape(17, 3), COCO17_TO_BIGRAPH12, r.get("score", 1.0))
        out.by_image.setdefault(names[r["image_id"]], []).append(person)
    return out


def load_external(path: str, imgnames: list[str], images_json: str | None = None) -> ExternalDetections:
    """An OpenPose JSON folder or a COCO results file (module docstring)."""
    if os.path.isdir(path):
        label = f"openpose_json:{os.path.basename(os.path.normpath(path))}"
        return ExternalDetections("openpose_json", path, label)
    if not os.path.isfile(path):
        raise UserError(f"--detections {path}: no such file or folder (an OpenPose JSON folder, a COCO keypoint "
                        f"results .json, or one of {', '.join(KEYWORDS)})")
    return _load_coco_results(path, imgnames, images_json)


def resolve_source(detections: str, npz_keys: tuple[str, ...]) -> str:
    """What ``--detections`` means for this npz: "openpose_npz" | "ground_truth" | "none" | "external"."""
    if detections == "auto":
        return "openpose_npz" if "openpose" in npz_keys else "none"
    if detections == "ground-truth":
        if "part" not in npz_keys:
            raise UserError("--detections ground-truth: the npz has no part key (2D ground truth) to use")
        return "ground_truth"
    return "none" if detections == "none" else "external"


def row_joints(source: str, openpose: np.ndarray | None, part: np.ndarray | None,
               external: ExternalDetections | None, imgname: str, center: np.ndarray, scale: float,
               threshold: float, notes: collections.Counter) -> tuple[np.ndarray, str]:
    """A row's (12, 3) BiGraph joints in original pixel indices + score, and its ``bigraph_joints_from``."""
    joints, label = np.zeros((12, 3)), source
    if source == "openpose_npz" and openpose is not None:
        joints = np.asarray(openpose)[OPENPOSE25_TO_BIGRAPH12]
    elif source == "ground_truth" and part is not None:
        joints = np.asarray(part)[J24_TO_BIGRAPH12]
    elif source == "external" and external is not None:
        label = external.label
        people = external.people(imgname)
        if people is None:
            notes["detections: images without an entry in the detections"] += 1
        else:
            k = match_person(people, center, scale, threshold)
            if k is None:
                notes["detections: rows without a matching person (box, score threshold)"] += 1
            else:
                joints = people[k].joints
    if not (joints[:, 2] > 0).any():
        return np.zeros((12, 3)), NONE_LABEL
    return joints, label
