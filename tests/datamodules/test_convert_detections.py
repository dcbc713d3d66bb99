"""Converter ``--detections``: BiGraph's 2D joints from OpenPose JSON folders and COCO keypoint results files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from datamodules.convert.detections import Person, match_person
from runtime.errors import UserError
from tests.datamodules.spin_fixtures import (CROP, OPENPOSE25_TO_BIGRAPH12_BY_HAND, expected_crop_xy, make_spin_file,
                                             person_at, run, write_openpose_json)

COCO17_TO_BIGRAPH12_BY_HAND = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]   # COCO's shoulders .. ankles


def expected_joints(points: np.ndarray, center, scale) -> np.ndarray:
    out = np.zeros((12, 3))
    out[:, :2] = expected_crop_xy(points[:, :2], center, scale, CROP)
    out[:, 2] = np.clip(points[:, 2], 0, 1)
    return out


def test_match_person_takes_the_nearest_inside_the_box_above_the_threshold():
    def person(cx, cy, score=0.9):
        kp = person_at(np.array([cx, cy]), 17)
        return Person(kp[COCO17_TO_BIGRAPH12_BY_HAND], kp, score)

    center, scale = np.array([100.0, 100.0]), 0.5          # box: 100 px, [50, 150] x [50, 150]
    people = [person(160, 100), person(130, 100), person(110, 95), person(101, 100, score=0.05)]
    assert match_person(people, center, scale, threshold=0.1) == 2   # 3 is nearer but scores below 0.1
    assert match_person(people, center, scale, threshold=0.0) == 3
    assert match_person(people[:1], center, scale, threshold=0.0) is None   # its centre lies outside the box
    assert match_person([], center, scale, 0.1) is None


def test_openpose_json_folder_mirrors_the_image_tree(tmp_path):
    d = make_spin_file(tmp_path, "coco", n=3)
    folder = tmp_path / "openpose"
    people = {}
    for i in (0, 2):
        near = person_at(d["center"][i] + [4.0, -3.0], 25, seed=i)
        near[OPENPOSE25_TO_BIGRAPH12_BY_HAND[3], 2] = 0.0          # one undetected joint: missing (score 0)
        far = person_at(d["center"][i] + [200.0, 0.0], 25, conf=1.0, seed=10 + i)   # outside the row's box
        people[i] = near
        stem = str(d["imgname"][i])[:-4]
        write_openpose_json(folder / f"{stem}_keypoints.json", [far, near])
    report, samples = run(tmp_path, "coco", detections=str(folder))
    for i in (0, 2):
        want = expected_joints(people[i][OPENPOSE25_TO_BIGRAPH12_BY_HAND], d["center"][i], d["scale"][i])
        want[3] = 0.0
        np.testing.assert_allclose(samples[i].bigraph_joints_2d, want, atol=2e-3)
        assert samples[i].bigraph_joints_from == "openpose_json:openpose"
    assert not samples[1].bigraph_joints_2d.any() and samples[1].bigraph_joints_from == "none"   # no file
    assert report["notes"]["detections: images without an entry in the detections"] == 1
    assert report["notes"]["bigraph_joints_from: openpose_json:openpose"] == 2
    assert "OpenPose JSON folder" in report["bigraph_joints_2d_from"]
    # The npz's own openpose column is not used when a folder is given.
    assert not np.allclose(samples[0].bigraph_joints_2d, samples[0].keypoints_2d[OPENPOSE25_TO_BIGRAPH12_BY_HAND])


def test_openpose_json_with_another_body_model_is_one_line(tmp_path):
    d = make_spin_file(tmp_path, "coco", n=1)
    (tmp_path / "op").mkdir()
    path = tmp_path / "op" / "coco_000_keypoints.json"   # the base-name fallback
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 54}]}))
    with pytest.raises(UserError) as err:
        run(tmp_path, "coco", detections=str(tmp_path / "op"))
    assert "only BODY_25 (75 numbers)" in str(err.value) and "\n" not in str(err.value)
    assert str(d["imgname"][0]).endswith("coco_000.jpg")


def coco_result(image_id, center, score=0.8, seed=0):
    kp = person_at(center, 17, seed=seed)
    return {"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score}, kp


@pytest.mark.parametrize("ids", ["names", "numbers", "annotation_file"])
def test_coco_results_by_image_name_number_or_annotation_file(tmp_path, ids):
    d = make_spin_file(tmp_path, "coco", n=3)
    image_id = {"names": lambda i: str(d["imgname"][i]), "numbers": lambda i: i,
                "annotation_file": lambda i: 1000 + i}[ids]
    results, kept = [], {}
    for i in range(3):
        r, kp = coco_result(image_id(i), d["center"][i], score=0.05 if i == 1 else 0.8, seed=i)   # row 1: too low
        results.append(r)
        kept[i] = kp
    results.append({**coco_result(image_id(0), d["center"][0])[0], "category_id": 2})         # not a person
    (tmp_path / "results.json").write_text(json.dumps(results))
    extra = {}
    if ids == "annotation_file":
        images = [{"id": 1000 + i, "file_name": f"val2014/{str(d['imgname'][i]).split('/')[-1]}"} for i in range(3)]
        (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": []}))
        extra["detections_images"] = str(tmp_path / "ann.json")
    report, samples = run(tmp_path, "coco", detections=str(tmp_path / "results.json"), **extra)
    for i in (0, 2):
        want = expected_joints(kept[i][COCO17_TO_BIGRAPH12_BY_HAND], d["center"][i], d["scale"][i])
        np.testing.assert_allclose(samples[i].bigraph_joints_2d, want, atol=2e-3)
        assert samples[i].bigraph_joints_from == "coco_results:results.json"
    assert samples[1].bigraph_joints_from == "none" and not samples[1].bigraph_joints_2d.any()
    assert report["notes"]["detections: rows without a matching person (box, score threshold)"] == 1
    _, low = run(tmp_path, "coco", detections=str(tmp_path / "results.json"), detection_threshold=0.01,
                 overwrite=True, **extra)
    assert low[1].bigraph_joints_from == "coco_results:results.json"


def test_detection_errors_are_one_line(tmp_path):
    d = make_spin_file(tmp_path, "h36m", n=2)
    d["imgname"] = np.array(["S9/a_000001.jpg", "S11/b_000001.jpg"])   # numbers repeat across sequences
    np.savez(tmp_path / "h36m.npz", **d)
    for i in range(2):
        (tmp_path / "images" / d["imgname"][i]).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "int_ids.json").write_text(json.dumps([coco_result(1, d["center"][0])[0]]))
    (tmp_path / "not_results.json").write_text(json.dumps({"people": []}))
    cases = [({"detections": str(tmp_path / "int_ids.json")}, "pass --detections-images"),
             ({"detections": str(tmp_path / "not_results.json")}, "not a COCO keypoint results file"),
             ({"detections": str(tmp_path / "nothing")}, "no such file or folder"),
             ({"detection_threshold": 2.0}, "must be in [0, 1]")]
    for kwargs, message in cases:
        with pytest.raises(UserError) as err:
            run(tmp_path, "h36m", overwrite=True, **kwargs)
        assert message in str(err.value) and "\n" not in str(err.value), kwargs
    np.savez(tmp_path / "h36m.npz", **{k: v for k, v in d.items() if k != "part"})   # a test file: no 2D
    with pytest.raises(UserError, match="--detections ground-truth: the npz has no part key"):
        run(tmp_path, "h36m", split="test", detections="ground-truth", overwrite=True)


def test_h36m_test_files_without_detections_record_none(tmp_path):
    d = make_spin_file(tmp_path, "h36m", n=2)
    np.savez(tmp_path / "h36m.npz", **{k: v for k, v in d.items() if k not in ("part", "openpose")})
    report, samples = run(tmp_path, "h36m", split="test")
    assert all(s.bigraph_joints_from == "none" and not s.bigraph_joints_2d.any() for s in samples)
    assert report["bigraph_joints_2d_from"].startswith("nothing")
