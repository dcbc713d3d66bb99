"""Tiny SPIN-format npz files and images for the converter tests (no real data, no downloads).

Each row's image is black with one grey Gaussian blob centred on a chosen keypoint, so the crop's
brightness centroid shows where that keypoint's pixel content landed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_W, IMAGE_H = 240, 180
CROP = 96  # crop side of the converter tests
BLOB_SIGMA = 1.6  # original pixels

# Expected index maps written out by hand (names in body.joints), independent of the code under test.
# BiGraph-12: l/r shoulder, l/r elbow, l/r wrist, l/r hip, l/r knee, l/r ankle.
OPENPOSE25_TO_BIGRAPH12_BY_HAND = [5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11]
J24_TO_BIGRAPH12_BY_HAND = [9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0]
# SPIN preprocess/h36m.py global_idx.
H36M17_TO_J24_BY_HAND = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]

# Per dataset: which optional keys the synthetic file carries (on top of the dataset's required ones).
EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "h36m": ("pose", "shape"),
    "mpi_inf_3dhp": ("openpose", "pose", "shape", "has_smpl"),
    "lsp": ("openpose",),
    "lspet": ("openpose",),
    "mpii": ("openpose",),
    "coco": ("openpose",),
    "up3d": ("partname",),
    "3dpw": ("gender", "part"),
}
PNG_DATASETS = ("lspet", "up3d")


def blob_image(x: float, y: float, w: int = IMAGE_W, h: int = IMAGE_H, peak: float = 250.0) -> np.ndarray:
    """(h, w, 3) uint8 black image with a grey Gaussian blob at pixel-index position (x, y)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    g = peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * BLOB_SIGMA ** 2))
    return np.repeat(np.clip(np.round(g), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def save_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=97) if path.suffix == ".jpg" else Image.fromarray(image).save(path)


def part_label_image(w: int = IMAGE_W, h: int = IMAGE_H) -> np.ndarray:
    """(h, w) UP-3D labels: vertical bands 0..6, a 255 band and an unknown label 9."""
    bands = np.array([0, 1, 2, 3, 4, 5, 6, 255, 9], dtype=np.uint8)
    cols = (np.arange(w) * len(bands)) // w
    return np.repeat(bands[cols][None, :], h, axis=0)


def make_spin_file(root: Path, dataset: str, n: int = 4, scale: float = 0.6, seed: int = 0,
                   keys: tuple[str, ...] | None = None, s_factor: float = 1.0) -> dict[str, np.ndarray]:
    """Write ``root/<dataset>.npz`` and its images under ``root/images``; return the npz arrays.

    Row i's image has a blob at the keypoint ``blob_source(i)`` names: part joint i (rows 0, 2...) or
    OpenPose joint i (odd rows, when the file has openpose).
    """
    from datamodules.convert.datasets import DATASETS

    rng = np.random.default_rng(seed)
    spec = DATASETS[dataset]
    keys = tuple(dict.fromkeys(spec.required_keys("test" if dataset == "lsp" else "train")
                               + (keys if keys is not None else EXTRA_KEYS[dataset])))
    ext = ".png" if dataset in PNG_DATASETS else ".jpg"
    center = np.stack([rng.uniform(105, 135, n), rng.uniform(80, 100, n)], 1)
    d: dict[str, np.ndarray] = {
        "imgname": np.array([f"sub dir/{dataset}_{i:03d}{ext}" for i in range(n)]),
        "center": center, "scale": np.full(n, scale),
    }
    # Keypoints near the centre (inside the crop), sub-pixel positions, confidences in (0, 1].
    def points(k: int) -> np.ndarray:
        xy = center[:, None, :] + rng.uniform(-50, 50, (n, k, 2)) * min(scale / 0.6, 1.0)
        conf = rng.choice([0.0, 0.35, 1.0, 1.7], (n, k, 1), p=[0.15, 0.25, 0.5, 0.1])  # 1.7: clipped to 1
        return np.concatenate([xy, conf], -1)

    if "part" in keys:
        d["part"] = points(24)
    if "openpose" in keys:
        d["openpose"] = points(25)
    if "S" in keys:
        S = np.zeros((n, 24, 4))
        S[:, H36M17_TO_J24_BY_HAND, :3] = rng.normal(0, 0.4, (n, 17, 3))
        S[:, H36M17_TO_J24_BY_HAND, 3] = 1.0
        S[:, 14, :3] = 0.0
        S[..., :3] *= s_factor
        d["S"] = S
    if "pose" in keys:
        d["pose"] = rng.normal(0, 0.3, (n, 72))
        d["shape"] = rng.normal(0, 1, (n, 10))
    if "has_smpl" in keys:
        d["has_smpl"] = (np.arange(n) % 2 == 0).astype(np.float64)
    if "gender" in keys:
        d["gender"] = np.array(["m", "f", "x", "m"] * n)[:n]
    for name, folder in (("maskname", "seg"), ("partname", "parts")):
        if name in keys:
            d[name] = np.array([f"{folder}/{dataset}_{i:03d}.png" for i in range(n)])
    for i in range(n):
        src, j = blob_source(d, i)
        if src is None:
            image = blob_image(-99.0, -99.0)  # nothing to mark: a black image
        else:
            d[src][i, j, 2] = max(d[src][i, j, 2], 1.0)  # the blob's keypoint is visible
            image = blob_image(*d[src][i, j, :2])
        save_image(root / "images" / str(d["imgname"][i]), image)
        if "partname" in d:
            save_image(root / "images" / str(d["partname"][i]), part_label_image())
        if "maskname" in d:
            sil = np.zeros((IMAGE_H, IMAGE_W), np.uint8)
            sil[40:140, 60:180] = 255
            save_image(root / "images" / str(d["maskname"][i]), sil)
    np.savez(root / f"{dataset}.npz", **d)
    return d


def blob_source(d: dict, i: int) -> tuple[str | None, int]:
    """Which keypoint row ``i``'s blob marks: ("part" | "openpose" | None, joint index)."""
    if "openpose" in d and i % 2 == 1:
        return "openpose", i % 25
    if "part" in d:
        return "part", (3 * i) % 24
    if "openpose" in d:
        return "openpose", i % 25
    return None, 0


def expected_crop_xy(xy: np.ndarray, center: np.ndarray, scale: float, crop: int) -> np.ndarray:
    """SPIN pixel-index (x, y) -> continuous crop pixels, written out independently of the code."""
    k = 1.5 * 200.0 * scale / crop
    return (np.asarray(xy, dtype=np.float64) + 0.5 - (np.asarray(center) - k * crop / 2.0)) / k


def brightness_centroid(image: np.ndarray, threshold: float = 40.0) -> np.ndarray:
    """(x, y) continuous-coordinate centroid of the pixels brighter than ``threshold``."""
    g = image.astype(np.float64).mean(-1)
    w = np.where(g > threshold, g, 0.0)
    assert w.sum() > 0, "no bright pixels in the crop"
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]] + 0.5
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


def shard_paths(out: Path, dataset: str) -> list[str]:
    return sorted(str(out / f) for f in os.listdir(out) if f.startswith(f"{dataset}-") and f.endswith(".tar"))


def run(tmp_path: Path, dataset: str, **kw) -> tuple[dict, list]:
    """Convert ``tmp_path/<dataset>.npz`` (images under ``tmp_path/images``) into ``tmp_path/out``; return
    the report and the decoded samples in shard order."""
    from datamodules.convert import ConvertSettings, convert
    from datamodules.shards import read_shard

    split = kw.pop("split", "test" if dataset == "lsp" else "train")
    settings = ConvertSettings(dataset=dataset, npz=str(tmp_path / f"{dataset}.npz"), images=str(tmp_path / "images"),
                               out=str(tmp_path / "out"), split=split, crop_size=kw.pop("crop_size", CROP), **kw)
    report = convert(settings)
    samples = [s for p in shard_paths(tmp_path / "out", dataset) for s in read_shard(p)]
    return report, samples


# ----------------------------------------------------------------------------------------------
# Companion files in their real formats: SPIN's final fits, EFT fits, OpenPose JSON, COCO results
# ----------------------------------------------------------------------------------------------
def write_final_fits(path: Path, n: int, valid: np.ndarray, seed: int = 1, betas: np.ndarray | None = None) -> dict:
    """SPIN's ``data/final_fits/<set>.npz``: pose (N, 72), betas (N, 10), valid_fit (N,); returns the arrays."""
    rng = np.random.default_rng(seed)
    fits = {"pose": rng.normal(0, 0.3, (n, 72)), "betas": rng.normal(0, 1, (n, 10)) if betas is None else betas,
            "valid_fit": np.asarray(valid, dtype=np.uint8)}
    np.savez(path, **fits)
    return fits


def write_eft_json(path: Path, entries: list[dict]) -> None:
    """EFT's fitting file: ``{"ver", "data": [{imageName, parm_pose (24x3x3), parm_shape, bbox_center,
    bbox_scale}]}``."""
    path.write_text(json.dumps({"ver": 1, "data": entries}))


def write_openpose_json(path: Path, people: list[np.ndarray]) -> None:
    """OpenPose ``--write_json`` output of one image: each person (25, 3) BODY_25 x, y, confidence."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": np.asarray(p, dtype=np.float64).reshape(-1).tolist(),
         "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": []} for p in people]}))


def person_at(center: np.ndarray, k: int, spread: float = 20.0, conf: float = 0.9, seed: int = 0) -> np.ndarray:
    """(k, 3) keypoints scattered around ``center`` (their box centre is ``center`` exactly), confidence ``conf``."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-spread, spread, (k, 2))
    xy -= 0.5 * (xy.min(0) + xy.max(0))
    return np.concatenate([xy + np.asarray(center, dtype=np.float64), np.full((k, 1), conf)], 1)
