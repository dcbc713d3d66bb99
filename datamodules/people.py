"""Who is in a photo and where: the boxes (and 2D keypoints) of ``make demo``, from the files the field keeps
next to each image ``<stem>.jpg|png``.

=========================  ===============================================================================
file                       what it gives
=========================  ===============================================================================
``<stem>_bbox.json``       ``{"bbox": [x, y, w, h]}`` (GraphCMR's and SPIN's demo format) or a list of such
                           boxes under ``"bbox"``/``"bboxes"``: one person per box, no keypoints
``<stem>_openpose.json``   OpenPose's ``--write_json`` output (``people[i].pose_keypoints_2d``, BODY_25)
``<stem>_keypoints.json``  COCO-format keypoint results (a list of ``{"keypoints": 51 numbers, "score"}``,
                           what HRNet's or ViTPose's test scripts write); an OpenPose file under this name
                           (OpenPose's own default) is read as one
=========================  ===============================================================================

Boxes follow SPIN's and GraphCMR's demos: a box file's square has the side of the box's longer edge, centred on
it; keypoints give the square around the keypoints with confidence above 0.2, centred at their mean, 1.2 x the
longer side of their extent; with no file, the whole image as a centred square. A box is ``center`` (x, y) and
``scale`` (side / 200), the convention of SPIN's files (``datamodules.sample.person_crop_affine``).
Differences from SPIN's ``demo.py``: it reads only ``people[0]`` (here every person: several per photo); its
whole-image centre is ``width // 2`` (here ``width / 2``, continuous pixels as the suite's convention); a person
here needs two confident keypoints to make a box.

Keypoint files also give BiGraph's 12 detected joints (``body.joints``' BiGraph-12 order, the converters'
mapping of ``datamodules.convert.detections``), in image pixels with the detector's confidence.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from body.joints import COCO17_TO_BIGRAPH12, OPENPOSE25_TO_BIGRAPH12
from datamodules.convert.keypoints import clean_confidence_rows
from runtime.errors import UserError

KEYPOINT_THRESHOLD: float = 0.2     # SPIN's demo: keypoints above this confidence make the box
KEYPOINT_RESCALE: float = 1.2       # SPIN's demo: the box is this much larger than the keypoints' extent
SUFFIXES: tuple[str, ...] = ("_bbox.json", "_openpose.json", "_keypoints.json")


@dataclass
class Person:
    """One person to reconstruct: ``center`` (2,) px and ``scale`` (box side / 200 px) in the image;
    ``joints`` (12, 3) BiGraph-12 joints in image px + confidence, or None without keypoints; ``source``: the
    file the box came from ("" for the whole image)."""

    center: np.ndarray
    scale: float
    joints: np.ndarray | None = None
    source: str = ""


def whole_image(width: int, height: int) -> Person:
    """The whole image as a centred square (SPIN's demo without a box)."""
    return Person(np.array([width / 2.0, height / 2.0]), max(width, height) / 200.0)


def box_person(box, source: str) -> Person:
    """A person from a box [x, y, w, h] (GraphCMR's ``bbox_from_json``)."""
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise UserError(f"{source}: box {list(box)} has no area; expected [x, y, width, height] in pixels")
    return Person(np.array([x + w / 2.0, y + h / 2.0]), max(w, h) / 200.0, None, source)


def keypoint_person(keypoints: np.ndarray, to_bigraph: list[int], source: str) -> Person | None:
    """A person from (K, 3) keypoints (SPIN's ``bbox_from_openpose``), or None when fewer than two are
    confident enough to make a box."""
    kp, _ = clean_confidence_rows(np.asarray(keypoints, dtype=np.float64))
    seen = kp[kp[:, 2] > KEYPOINT_THRESHOLD, :2]
    if len(seen) < 2:
        return None
    side = float((seen.max(0) - seen.min(0)).max())
    if side <= 0:
        return None
    return Person(seen.mean(0), side * KEYPOINT_RESCALE / 200.0, kp[to_bigraph].astype(np.float32), source)


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read it as JSON ({type(err).__name__}: {err})") from None


def _keypoint_people(entries, field: str, count: int, to_bigraph: list[int], path: Path, fix: str) -> list[Person]:
    """The people of a keypoint file's entries: each entry's ``field`` holds ``count`` (x, y, confidence) rows."""
    people = []
    for entry in entries:
        flat = np.asarray(entry.get(field, []) if isinstance(entry, dict) else [], dtype=np.float64)
        if flat.size != 3 * count:
            raise UserError(f"{path}: {field} has {flat.size} numbers, not {3 * count}; {fix}")
        person = keypoint_person(flat.reshape(count, 3), to_bigraph, str(path))
        if person is not None:
            people.append(person)
    return people


def read_people_file(path: str | Path) -> list[Person]:
    """The people of one box or keypoint file (module docstring), whatever its name; [] when it lists nobody."""
    path = Path(path)
    data = _read(path)
    if isinstance(data, dict) and "people" in data:
        return _keypoint_people(data["people"], "pose_keypoints_2d", 25, OPENPOSE25_TO_BIGRAPH12, path,
                                "only BODY_25 is read: run OpenPose with --model_pose BODY_25")
    if isinstance(data, list) and all(isinstance(d, dict) and "keypoints" in d for d in data):
        return _keypoint_people(data, "keypoints", 17, COCO17_TO_BIGRAPH12, path,
                                "COCO-format results hold 17 keypoints x (x, y, score)")
    if isinstance(data, dict) and ("bbox" in data or "bboxes" in data):
        boxes = data.get("bboxes", data.get("bbox"))
        boxes = [boxes] if boxes and not isinstance(boxes[0], (list, tuple)) else boxes
        return [box_person(box, str(path)) for box in boxes]
    raise UserError(f"{path}: neither a box file ({{\"bbox\": [x, y, w, h]}}), an OpenPose JSON file (\"people\") nor "
                    "COCO-format keypoint results (a list of {\"keypoints\": [...]})")


def people_files(image: str | Path) -> list[Path]:
    """The box and keypoint files next to ``image`` (``<stem>_bbox.json``, ``_openpose.json``, ``_keypoints.json``)."""
    image = Path(image)
    return [image.with_name(image.stem + suffix) for suffix in SUFFIXES
            if image.with_name(image.stem + suffix).is_file()]


def people_in(image: str | Path, width: int, height: int, need_joints: bool = False) -> list[Person]:
    """The people of an image from the first of its files that has any (:data:`SUFFIXES` order; a keypoint file
    first when ``need_joints``), else the whole image. With ``need_joints`` (BiGraph), an image without a
    keypoint file is a one-line error naming the files it expected."""
    files = people_files(image)
    if need_joints:
        files = [f for f in files if not f.name.endswith("_bbox.json")]
        if not files:
            stem = os.path.join(os.path.dirname(str(image)), Path(image).stem)
            raise UserError(f"{image}: BiGraph reads 2D joints and found no keypoint file: expected {stem}_openpose.json "
                            f"(OpenPose, BODY_25) or {stem}_keypoints.json (COCO-format keypoint results)")
    for path in files:
        people = read_people_file(path)
        if people:
            return people
    if need_joints:
        raise UserError(f"{image}: its keypoint files ({', '.join(str(f) for f in files)}) list nobody with two "
                        f"keypoints above confidence {KEYPOINT_THRESHOLD}")
    return [whole_image(width, height)]
