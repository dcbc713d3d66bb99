"""From a stored sample to a network input, with SPIN/PyMAF's augmentation (README, "Data").

A stored sample is a crop (default 320 px) covering 1.5x the person box; the network input is the
person box itself (times the augmentation scale), rotated and resampled to ``out_res`` (224) pixels.

Augmentation (SPIN's ``augm_params``, the papers' setting):
- rotation r ~ N(0, 30 deg) clipped to +-60 deg, and r = 0 with probability 0.6;
- scale s ~ N(1, 0.25) clipped to [0.75, 1.25] (the input covers s x the person box);
- per-channel pixel gain ~ U(0.6, 1.4) (``noise`` 0.4), levels clipped to [0, 255];
- horizontal flip with probability 0.5: the image is mirrored, left/right keypoints and joints swap
  (``body.joints`` flip permutations), 3D points mirror x -> -x, the SMPL pose is mirrored
  (``flip_smpl_pose``) and the LSP part labels swap left/right.

Geometry is exact, not approximate: an in-plane rotation and scaling of a pinhole image about any
point equals rotating the camera-frame points about the optical axis (``crop_rotation_3d``) and
changing the focal length and principal point; a horizontal flip equals mirroring x -> -x and moving
the principal point to W - cx. So a sample with a ``camera`` keeps one after augmentation, and
projecting its augmented 3D joints with it lands on its augmented 2D keypoints (a test checks this).

The output is a dict of torch tensors per sample (:func:`prepare_sample`); the DataModule stacks them
(except ``mask_original`` and ``silhouette_original``, whose size is the original image's: lists, see
``streams.collate``). The evaluation fields in original-image coordinates (``image_id``, ``area``,
``mask_original``, ``silhouette_original``) pass
through unchanged by any augmentation: ``input_to_image`` maps the input onto them.
The image stays uint8 (B, 3, H, W): the LightningModule normalises with ImageNet's mean and std on its
device, which moves a quarter of the bytes through the loader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import roma
import torch

from body.camera import crop_rotation_3d
from body.joints import (BIGRAPH12_FLIP_PERM, J24_FLIP_PERM, SPIN49_FLIP_PERM, flip_joints_3d,
                         flip_keypoints_2d, flip_smpl_pose)
from datamodules.sample import Sample
from datamodules.warp import compose_affine, invert_affine_np, warp_image

IGNORE_LABEL: int = 255
# LSP 6-part labels under a horizontal flip (0 background, 1 head, 2 torso, 3/4 left/right arm,
# 5/6 left/right leg; ``body.parts``); a silhouette (0/1) and 255 (ignore) are unchanged.
LSP6_FLIP_LABELS: np.ndarray = np.array([0, 1, 2, 4, 3, 6, 5] + list(range(7, 256)), dtype=np.uint8)


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation's strengths (SPIN's defaults); ``enabled=False`` gives the plain crop."""

    enabled: bool = True
    rotation_deg: float = 30.0      # std of the rotation; clipped to 2x; zero with ``rotation_zero_prob``
    rotation_zero_prob: float = 0.6
    scale: float = 0.25             # std of the scale factor; clipped to 1 +- scale
    noise: float = 0.4              # per-channel gain in [1 - noise, 1 + noise]
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "scale", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")
        for name in ("rotation_zero_prob", "flip_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augmentation {name} must be in [0, 1], got {getattr(self, name)}")
        if self.scale >= 1.0 or self.noise >= 1.0:
            raise ValueError("augmentation scale and noise must be < 1")


@dataclass(frozen=True)
class AugmentParams:
    """One draw: rotation (deg, counter-clockwise on screen), scale, flip, per-channel gain (3,)."""

    rotation_deg: float = 0.0
    scale: float = 1.0
    flip: bool = False
    gain: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0))


def sample_augment_params(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentParams:
    """Draw SPIN's augmentation parameters; identity when ``cfg.enabled`` is False."""
    if not cfg.enabled:
        return AugmentParams()
    flip = bool(rng.uniform() < cfg.flip_prob)
    gain = tuple(float(g) for g in rng.uniform(1.0 - cfg.noise, 1.0 + cfg.noise, size=3))
    rot = float(np.clip(rng.normal() * cfg.rotation_deg, -2 * cfg.rotation_deg, 2 * cfg.rotation_deg))
    if rng.uniform() <= cfg.rotation_zero_prob:
        rot = 0.0
    scale = float(np.clip(rng.normal() * cfg.scale + 1.0, 1.0 - cfg.scale, 1.0 + cfg.scale))
    return AugmentParams(rotation_deg=rot, scale=scale, flip=flip, gain=gain)  # type: ignore[arg-type]


def crop_to_input_affine(crop_size: tuple[int, int], crop_context: float, rotation_deg: float, scale: float,
                         out_res: int) -> np.ndarray:
    """(2, 3) map from stored-crop pixels to input pixels (no flip).

    The person box is the centred square of side min(W, H) / crop_context in the crop; the input shows
    ``scale`` x that box, rotated counter-clockwise by ``rotation_deg`` about its centre:
    x_in = (out_res / (box scale)) R(-rot) (x_crop - c) + out_res / 2 (``body.camera.crop_affine``).
    """
    w, h = crop_size
    box = min(w, h) / crop_context
    k = out_res / (box * scale)
    a = math.radians(-rotation_deg)
    lin = k * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = np.array([w / 2.0, h / 2.0])
    return np.concatenate([lin, (out_res / 2.0 - lin @ centre)[:, None]], axis=1)


def _intrinsics(focal: np.ndarray, principal: np.ndarray) -> np.ndarray:
    return np.array([[focal[0], 0.0, principal[0]], [0.0, focal[1], principal[1]], [0.0, 0.0, 1.0]])


def _homogeneous(affine: np.ndarray) -> np.ndarray:
    return np.vstack([affine, [0.0, 0.0, 1.0]])


def _rotated_camera(camera: dict, image_to_input: np.ndarray, rot3: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Intrinsics K' with A K = K' R: the camera of the input after rotating points by R. None if skewed.

    ``camera`` holds original-image intrinsics; ``image_to_input`` (2, 3) maps original to input pixels.
    """
    proj = _homogeneous(image_to_input) @ _intrinsics(camera["focal_length"], camera["principal_point"])
    k_new = proj @ rot3.T
    f = 0.5 * (abs(k_new[0, 0]) + abs(k_new[1, 1]))
    if abs(k_new[0, 1]) > 1e-4 * f or abs(k_new[1, 0]) > 1e-4 * f or min(k_new[0, 0], k_new[1, 1]) <= 0:
        return None  # fx != fy under a rotation: no pinhole camera without skew describes the input
    return (np.array([k_new[0, 0], k_new[1, 1]], np.float32), k_new[:2, 2].astype(np.float32))


def crop_to_input(sample: Sample, rotation_deg: float = 0.0, scale: float = 1.0,
                  out_res: int = 224, gain: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """Resample a stored sample into the network input frame, rotating and scaling about the box centre.

    Returns the per-sample dict (see :func:`prepare_sample`) without flip; ``gain`` (per-channel pixel
    gain) is applied in the same pass as the resampling.
    """
    to_input = crop_to_input_affine(sample.crop_size, sample.crop_context, rotation_deg, scale, out_res)
    to_crop = invert_affine_np(to_input)
    levels = None if gain is None or tuple(gain) == (1.0, 1.0, 1.0) else gain_levels(gain)
    image = warp_image(sample.image, to_crop, (out_res, out_res), "bilinear", levels=levels)
    out: dict[str, Any] = {"img": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))}

    def keypoints(kp: np.ndarray) -> torch.Tensor:
        xy = kp[:, :2].astype(np.float64) @ to_input[:, :2].T + to_input[:, 2]
        xy = 2.0 * xy / out_res - 1.0  # normalised input coordinates (body.camera.pixels_to_normalized)
        return torch.from_numpy(np.concatenate([xy, kp[:, 2:]], axis=1).astype(np.float32))

    out["keypoints_2d"] = keypoints(sample.keypoints_2d)
    out["bigraph_joints_2d"] = keypoints(sample.bigraph_joints_2d)

    rot3 = crop_rotation_3d(torch.tensor([float(rotation_deg)], dtype=torch.float64))[0]
    joints = torch.from_numpy(sample.joints_3d.astype(np.float64))
    out["joints_3d"] = torch.cat([joints[:, :3] @ rot3.T, joints[:, 3:]], dim=1).float()
    pose = torch.from_numpy(sample.pose.astype(np.float64)).reshape(24, 3).clone()
    if rotation_deg != 0.0 and sample.has_smpl:
        pose[0] = roma.rotmat_to_rotvec(rot3 @ roma.rotvec_to_rotmat(pose[0]))
    out["pose"] = pose.reshape(72).float()
    out["betas"] = torch.from_numpy(sample.betas.copy())
    if sample.vertices is not None:   # in the body model's frame (no translation), as networks predict meshes
        transl = np.zeros(3) if sample.transl is None else sample.transl.astype(np.float64)
        out["vertices"] = (torch.from_numpy(sample.vertices.astype(np.float64) - transl) @ rot3.T).float()
        out["transl"] = (torch.from_numpy(transl) @ rot3.T).float()

    if sample.mask is not None:
        mask = warp_image(sample.mask, to_crop, (out_res, out_res), "nearest", fill=IGNORE_LABEL)
        out["mask"] = torch.from_numpy(np.array(mask))
    else:
        out["mask"] = torch.full((out_res, out_res), IGNORE_LABEL, dtype=torch.uint8)

    image_to_input = compose_affine(to_input, invert_affine_np(sample.crop_to_image))
    camera = None if sample.camera is None else _rotated_camera(sample.camera, image_to_input, rot3.numpy())
    out["has_camera"] = torch.tensor(camera is not None)
    out["focal_length"] = torch.from_numpy(camera[0]) if camera else torch.zeros(2)
    out["principal_point"] = torch.from_numpy(camera[1]) if camera else torch.zeros(2)
    out["input_to_image"] = torch.from_numpy(invert_affine_np(image_to_input).astype(np.float32))
    out["image_size"] = torch.from_numpy(sample.image_size.astype(np.int64))
    out["has_smpl"] = torch.tensor(bool(sample.has_smpl))
    out["has_3d"] = torch.tensor(bool(sample.has_3d))
    out["has_mask"] = torch.tensor(bool(sample.has_mask))
    # Evaluation fields, in original-image coordinates: passed through as they are.
    out["image_id"] = sample.image_id or ""
    out["area"] = torch.tensor(0.0 if sample.area is None else float(sample.area), dtype=torch.float32)
    out["has_area"] = torch.tensor(sample.area is not None)
    for name in ("mask_original", "silhouette_original"):
        value = getattr(sample, name)
        out[name] = None if value is None else torch.from_numpy(np.array(value))
    out["bigraph_joints_from"] = sample.bigraph_joints_from or ""
    out["gender"] = sample.gender
    return out


def flip_input(item: dict[str, Any], out_res: int = 224) -> dict[str, Any]:
    """Mirror a per-sample input dict horizontally; applying it twice gives back the same values.

    ``image_id``, ``area``/``has_area`` and ``mask_original`` are in original-image coordinates and stay
    as they are: the flip is folded into ``input_to_image``.
    """
    out = dict(item)
    out["img"] = item["img"].flip(-1)
    out["mask"] = torch.from_numpy(LSP6_FLIP_LABELS[item["mask"].flip(-1).numpy()])
    out["keypoints_2d"] = flip_keypoints_2d(item["keypoints_2d"][None], SPIN49_FLIP_PERM)[0]
    out["bigraph_joints_2d"] = flip_keypoints_2d(item["bigraph_joints_2d"][None], BIGRAPH12_FLIP_PERM)[0]
    out["joints_3d"] = flip_joints_3d(item["joints_3d"][None], J24_FLIP_PERM)[0]
    out["pose"] = flip_smpl_pose(item["pose"][None])[0] if item["has_smpl"] else item["pose"]
    if "vertices" in item:
        raise ValueError("flip_input cannot mirror ground-truth vertices (needs the mesh's mirror map); "
                         "evaluation samples are not augmented")
    if item["has_camera"]:
        principal = item["principal_point"].clone()
        principal[0] = out_res - principal[0]
        out["principal_point"] = principal
    mirror = torch.tensor([[-1.0, 0.0, float(out_res)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out["input_to_image"] = (torch.cat([item["input_to_image"], torch.tensor([[0.0, 0.0, 1.0]])]) @ mirror)[:2]
    return out


def gain_levels(gain: tuple[float, float, float]) -> np.ndarray:
    """(3, 256) uint8 lookup tables: level v of channel c -> clip(round(v gain[c]), 0, 255) (SPIN's noise)."""
    levels = np.arange(256, dtype=np.float64)
    return np.stack([np.clip(np.rint(levels * g), 0, 255) for g in gain]).astype(np.uint8)


def prepare_sample(sample: Sample, params: AugmentParams = AugmentParams(), out_res: int = 224) -> dict[str, Any]:
    """A stored sample -> network-input tensors, augmented with ``params``.

    ==================  ==================  =========================================================
    key                 shape, dtype        meaning
    ==================  ==================  =========================================================
    img                 (3, R, R) uint8     RGB input (R = out_res); normalise on the device
    keypoints_2d        (49, 3) float32     SPIN-49 keypoints, normalised input coords [-1, 1] + conf
    bigraph_joints_2d   (12, 3) float32     BiGraph's detected joints, normalised + score
    joints_3d           (24, 4) float32     camera frame of the input, metres + confidence
    pose, betas         (72,), (10,)        SMPL, global orientation in the input's camera frame
    mask                (R, R) uint8        labels (0 background, 1..6 LSP parts or 1 silhouette),
                                            255 where unknown (no mask, or outside the stored crop)
    has_smpl/3d/mask    () bool             supervision flags
    has_camera          () bool             focal_length (2,) and principal_point (2,) hold the
                                            input's pinhole intrinsics in input pixels
    input_to_image      (2, 3) float32      input pixels -> original-image pixels (eval protocols)
    image_size          (2,) int64          original image (width, height)
    vertices            (V, 3) float32      only when the sample has them (evaluation sets; a batch
                                            mixing samples with and without: ``streams.collate``): the
                                            ground-truth mesh WITHOUT its translation (the body model's
                                            output frame, as networks predict meshes), input camera axes
    transl              (3,) float32        with ``vertices``: the translation taken out (input camera
                                            frame; 0 when the sample has none)
    image_id            str                 original image's name ("" when the sample has none); people
                                            of one image share it (COCO keypoint AP groups by image)
    area                () float32          person's segmentation area in original-image px^2 (COCO's
                                            OKS scale); 0 when unknown
    has_area            () bool             area is known
    mask_original       (H0, W0) uint8      labels as ``mask`` at the original image's resolution
                        or None             (H0, W0 = image_size height, width), None when absent;
                                            never stacked (``streams.UNSTACKED_KEYS``), not augmented
    silhouette_original (H0, W0) uint8      the silhouette annotation (0 / 1) at the original
                        or None             resolution, as ``mask_original``
    bigraph_joints_from str                 where the detected joints came from ("" when not recorded)
    gender              str                 "neutral" | "male" | "female" (3DPW's ground-truth body)
    ==================  ==================  =========================================================
    """
    item = crop_to_input(sample, params.rotation_deg, params.scale, out_res, params.gain)
    return flip_input(item, out_res) if params.flip else item
