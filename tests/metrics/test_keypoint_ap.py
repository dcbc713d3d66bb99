"""KeypointAP / keypoint_ap / oks against pycocotools.COCOeval(iouType="keypoints") on generated COCO-style sets."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from body.joints import COCO17_JOINT_NAMES, COCO17_SIGMAS
from metrics import KeypointAP
from metrics import functional as F

K = 17
STAT_NAMES = ["AP", "AP50", "AP75", "APM", "APL"]


def make_coco_set(seed: int, n_images: int = 30, all_scores_one: bool = False, sizes=(20, 45, 70, 140, 300)):
    """A COCO-style keypoint set: (gt dataset dict, list of result dicts).

    Varied person sizes (small / medium / large areas), unlabelled keypoints (v = 0) and people with
    none labelled, crowd regions with detections inside them, images without detections, images with
    neither, one image over maxDets = 20, noisy / duplicate / false-positive detections, tied scores.
    """
    rng = np.random.default_rng(seed)
    W, H = 640.0, 480.0
    images = [{"id": 100 + 7 * i, "width": int(W), "height": int(H), "file_name": f"{i}.jpg"} for i in range(n_images)]
    anns, dets = [], []

    def score() -> float:
        return 1.0 if all_scores_one else float(rng.choice([round(rng.uniform(0.05, 1.0), 1), rng.uniform(0.05, 1.0)]))

    def noisy(xy: np.ndarray, scale: float) -> list[float]:
        kp = xy + rng.normal(0.0, scale, xy.shape)
        return np.concatenate([kp, np.ones((K, 1))], axis=1).reshape(-1).tolist()

    for idx, img in enumerate(images):
        iid = img["id"]
        no_dets = idx % 10 == 9                        # images with ground truth but no detections
        n_people = 0 if idx % 13 == 12 else int(rng.integers(1, 6))
        for _ in range(n_people):
            side = float(rng.choice(sizes)) * rng.uniform(0.8, 1.25)
            w, h = side * rng.uniform(0.4, 0.9), min(side * rng.uniform(0.9, 1.6), H - 1)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            xy = np.stack([x + rng.uniform(0, w, K), y + rng.uniform(0, h, K)], axis=1)
            v = rng.choice([0, 1, 2], size=K, p=[0.25, 0.25, 0.5])
            if rng.uniform() < 0.12:
                v[:] = 0                               # a person with no labelled keypoint
            gxy = np.where(v[:, None] > 0, xy, 0.0)
            area = float(w * h * rng.uniform(0.4, 0.9))
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "iscrowd": 0, "area": area,
                         "bbox": [float(x), float(y), float(w), float(h)], "num_keypoints": int((v > 0).sum()),
                         "keypoints": np.concatenate([gxy, v[:, None]], axis=1).reshape(-1).tolist()})
            if no_dets:
                continue
            n_det = int(rng.choice([0, 1, 1, 1, 2, 3]))
            first = None
            for j in range(n_det):
                if j > 0 and rng.uniform() < 0.5:      # exact duplicate (same keypoints and score)
                    dets.append(copy.deepcopy(first))
                    continue
                d = {"image_id": iid, "category_id": 1, "score": score(),
                     "keypoints": noisy(xy, np.sqrt(area) * rng.choice([0.01, 0.04, 0.08, 0.15, 0.4]))}
                dets.append(d)
                first = first or d
        if not no_dets and n_people and rng.uniform() < 0.35:   # crowd region, detections inside it
            w, h = rng.uniform(60, 250), rng.uniform(60, 200)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "iscrowd": 1,
                         "area": float(w * h * 0.7), "bbox": [float(x), float(y), float(w), float(h)],
                         "num_keypoints": 0, "keypoints": [0.0] * (3 * K)})
            for _ in range(int(rng.integers(1, 4))):
                xy = np.stack([x + rng.uniform(-0.3, 1.3, K) * w, y + rng.uniform(-0.3, 1.3, K) * h], axis=1)
                dets.append({"image_id": iid, "category_id": 1, "score": score(), "keypoints": noisy(xy, 1.0)})
        if not no_dets:                                # false positives anywhere
            for _ in range(int(rng.integers(0, 3))):
                s = rng.uniform(10, 200)
                x0, y0 = rng.uniform(0, W - s), rng.uniform(0, H - s)
                xy = np.stack([x0 + rng.uniform(0, s, K), y0 + rng.uniform(0, s, K)], axis=1)
                dets.append({"image_id": iid, "category_id": 1, "score": score(), "keypoints": noisy(xy, 0.0)})
        if idx == 3:                                   # more than maxDets = 20 detections in one image
            for _ in range(25):
                xy = np.stack([rng.uniform(0, W, K), rng.uniform(0, H, K)], axis=1)
                dets.append({"image_id": iid, "category_id": 1, "score": score(), "keypoints": noisy(xy, 0.0)})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "supercategory": "person",
                          "keypoints": COCO17_JOINT_NAMES, "skeleton": []}]}
    return gt, dets


def coco_eval(gt_dataset: dict, dets: list[dict]) -> tuple[np.ndarray, COCOeval]:
    """pycocotools' keypoint evaluation, silenced: (stats[:5], the COCOeval object)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_dataset)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:5]), ev


def to_tensors(gt_dataset: dict, dets: list[dict]) -> dict[str, torch.Tensor]:
    """The flat-tensor form ``keypoint_ap`` / ``KeypointAP.update`` take."""
    anns = gt_dataset["annotations"]
    return {
        "det_image_ids": torch.tensor([d["image_id"] for d in dets], dtype=torch.long),
        "det_keypoints": torch.tensor([d["keypoints"] for d in dets], dtype=torch.float64).reshape(-1, K, 3),
        "det_scores": torch.tensor([d["score"] for d in dets], dtype=torch.float64),
        "gt_image_ids": torch.tensor([a["image_id"] for a in anns], dtype=torch.long),
        "gt_keypoints": torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).reshape(-1, K, 3),
        "gt_areas": torch.tensor([a["area"] for a in anns], dtype=torch.float64),
        "gt_boxes": torch.tensor([a["bbox"] for a in anns], dtype=torch.float64),
        "gt_iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.long),
        "gt_num_keypoints": torch.tensor([a["num_keypoints"] for a in anns], dtype=torch.long),
    }


def as_array(result: dict[str, torch.Tensor]) -> np.ndarray:
    return np.array([float(result[k]) for k in STAT_NAMES])


def test_generated_set_covers_the_cases():
    gt, dets = make_coco_set(0)
    anns = gt["annotations"]
    assert len(gt["images"]) == 30
    areas = np.array([a["area"] for a in anns if not a["iscrowd"]])
    assert (areas < 32 ** 2).any() and ((areas > 32 ** 2) & (areas < 96 ** 2)).any() and (areas > 96 ** 2).any()
    assert any(a["iscrowd"] for a in anns)
    assert any(a["num_keypoints"] == 0 and not a["iscrowd"] for a in anns)
    assert any(0 < a["num_keypoints"] < K for a in anns)
    det_imgs = {d["image_id"] for d in dets}
    gt_imgs = {a["image_id"] for a in anns}
    assert gt_imgs - det_imgs, "some images with ground truth have no detection"
    assert max(sum(d["image_id"] == i for d in dets) for i in det_imgs) > 20
    assert len({d["score"] for d in dets}) < len(dets), "tied scores"


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_keypoint_ap_equals_cocoeval(seed):
    gt, dets = make_coco_set(seed)
    expected, _ = coco_eval(gt, dets)
    got = as_array(F.keypoint_ap(**to_tensors(gt, dets)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert (expected > 0).all() and (expected < 1).all()


def test_keypoint_ap_scores_all_one_protocol():
    """The COCO protocol (README, "Evaluation"): one detection per person, score 1, so every ranking tie is broken by order."""
    gt, dets = make_coco_set(11, all_scores_one=True)
    expected, _ = coco_eval(gt, dets)
    np.testing.assert_allclose(as_array(F.keypoint_ap(**to_tensors(gt, dets))), expected, rtol=0, atol=1e-6)


def test_keypoint_ap_missing_area_range_is_minus_one():
    gt, dets = make_coco_set(5, n_images=12, sizes=(20, 45, 70))      # no large person
    expected, _ = coco_eval(gt, dets)
    got = as_array(F.keypoint_ap(**to_tensors(gt, dets)))
    assert expected[4] == -1 and got[4] == -1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_keypoint_ap_default_num_keypoints_and_det_areas():
    """Without gt_num_keypoints (counted from v) and with 3-channel detections, the result is the same."""
    gt, dets = make_coco_set(6)
    t = to_tensors(gt, dets)
    del t["gt_num_keypoints"]
    expected, _ = coco_eval(gt, dets)
    np.testing.assert_allclose(as_array(F.keypoint_ap(**t)), expected, rtol=0, atol=1e-6)


def test_oks_equals_cocoeval_ious():
    gt, dets = make_coco_set(7)
    _, ev = coco_eval(gt, dets)
    t = to_tensors(gt, dets)
    checked = 0
    for (img, _cat), ious in ev.ious.items():
        if len(ious) == 0:
            continue
        dsel = torch.nonzero(t["det_image_ids"] == img).flatten()
        # COCOeval's row order: detections by descending score (stable), the first 20.
        dsel = dsel[torch.sort(-t["det_scores"][dsel], stable=True).indices][:20]
        gsel = torch.nonzero(t["gt_image_ids"] == img).flatten()
        got = F.oks(t["det_keypoints"][dsel], t["gt_keypoints"][gsel], t["gt_areas"][gsel],
                    COCO17_SIGMAS, t["gt_boxes"][gsel])
        np.testing.assert_allclose(got.numpy(), ious, rtol=0, atol=1e-12)
        checked += 1
    assert checked > 10


def test_thresholds_match_numpy_linspace_bitwise():
    p_iou = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
    p_rec = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
    assert np.array_equal(F.oks_thresholds().numpy(), p_iou)
    assert np.array_equal(F.recall_thresholds().numpy(), p_rec)


def test_perfect_detections_give_ap_one():
    gt, _ = make_coco_set(8, n_images=10)
    dets = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0, "keypoints": a["keypoints"]}
            for a in gt["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    expected, _ = coco_eval(gt, dets)
    got = as_array(F.keypoint_ap(**to_tensors(gt, dets)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got[0] == pytest.approx(1.0)


def test_keypoint_ap_metric_in_batches_equals_cocoeval():
    gt, dets = make_coco_set(9)
    expected, _ = coco_eval(gt, dets)
    t = to_tensors(gt, dets)
    metric = KeypointAP()
    image_ids = sorted({im["id"] for im in gt["images"]})
    for chunk in np.array_split(np.array(image_ids), 4):     # per-batch images, as a dataloader gives them
        ids = torch.as_tensor(chunk)
        d = torch.isin(t["det_image_ids"], ids)
        g = torch.isin(t["gt_image_ids"], ids)
        metric.update(t["det_image_ids"][d], t["det_keypoints"][d].float(), t["det_scores"][d],
                      t["gt_image_ids"][g], t["gt_keypoints"][g], t["gt_areas"][g], t["gt_boxes"][g],
                      t["gt_iscrowd"][g])
    got = metric.compute()
    # float32 keypoints in the update change OKS by ~1e-7 relative: still equal to 1e-6 unless a pair
    # sits on a threshold, which these seeds do not.
    np.testing.assert_allclose(as_array(got), expected, rtol=0, atol=1e-6)
    assert set(got) == set(STAT_NAMES)


def test_keypoint_ap_metric_validates():
    metric = KeypointAP()
    z = torch.zeros
    with pytest.raises(ValueError, match="det_keypoints"):
        metric.update(z(2, dtype=torch.long), z(2, 16, 2), z(2), z(0, dtype=torch.long), z(0, K, 3), z(0), z(0, 4))
    with pytest.raises(ValueError, match="NaN"):
        metric.update(z(1, dtype=torch.long), torch.full((1, K, 2), float("nan")), z(1),
                      z(0, dtype=torch.long), z(0, K, 3), z(0), z(0, 4))


def test_metric_does_not_depend_on_the_order_ranks_deliver_detections_in():
    """Several ranks concatenate their detections in rank order, and COCOeval breaks score ties by input
    order: with the COCO protocol's scores (all 1) the functional's AP changes when one image's detections
    come in another order; the metric orders them by their own values first, so any delivery order (a
    stand-in for any split over ranks) gives one result."""
    gt, dets = make_coco_set(11, all_scores_one=True)
    t = to_tensors(gt, dets)
    reversed_dets = {k: v.flip(0) if k.startswith("det_") else v for k, v in t.items()}
    assert not np.allclose(as_array(F.keypoint_ap(**t)), as_array(F.keypoint_ap(**reversed_dets)), rtol=0, atol=1e-6)
    results = []
    for seed in range(4):
        perm_d = torch.randperm(len(t["det_scores"]), generator=torch.Generator().manual_seed(seed))
        perm_g = torch.randperm(len(t["gt_areas"]), generator=torch.Generator().manual_seed(100 + seed))
        metric = KeypointAP()
        for half, g in zip(perm_d.chunk(2), perm_g.chunk(2)):   # two "ranks", each with half of each
            metric.update(t["det_image_ids"][half], t["det_keypoints"][half], t["det_scores"][half],
                          t["gt_image_ids"][g], t["gt_keypoints"][g], t["gt_areas"][g], t["gt_boxes"][g],
                          t["gt_iscrowd"][g], t["gt_num_keypoints"][g])
        results.append(as_array(metric.compute()))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
