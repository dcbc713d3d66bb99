"""Shared fixtures of the data tests: samples whose geometry is real (a posed body seen by a camera)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from body.joints import SPIN49_TO_BIGRAPH12
from body.model import BodyModel
from datamodules.sample import CROP_CONTEXT, CROP_SIZE, Sample, person_crop_affine
from datamodules.warp import apply_affine_np, invert_affine_np


@pytest.fixture(scope="session")
def body_model() -> BodyModel:
    return BodyModel.from_config("open")


def project(points: np.ndarray, focal: np.ndarray, principal: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixels of a pinhole camera."""
    return points[:, :2] / points[:, 2:3] * np.asarray(focal) + np.asarray(principal)


def camera_sample(body: BodyModel, seed: int, source: str = "h36m", mask: bool = False,
                  vertices: bool = False, focal: float = 1200.0) -> Sample:
    """A sample of a randomly posed body seen by a pinhole camera, with every annotation consistent.

    The image is a dark crop with one bright dot under the right wrist keypoint, so that image and
    keypoint alignment can be checked after resampling.
    """
    rng = np.random.default_rng(seed)
    pose = np.zeros(72)
    yaw = rng.uniform(-math.pi, math.pi)
    # upright in the camera frame (180 deg about x), turned by ``yaw`` about the body's vertical axis
    pose[:3] = roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(torch.tensor([math.pi, 0.0, 0.0])) @
                                     roma.rotvec_to_rotmat(torch.tensor([0.0, yaw, 0.0]))).numpy()
    pose[3:] = rng.normal(0.0, 0.25, 69)
    betas = rng.normal(0.0, 1.0, 10)
    transl = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2), rng.uniform(4.0, 7.0)])
    with torch.no_grad():
        out = body(betas=torch.tensor(betas[None], dtype=torch.float32),
                   body_pose=torch.tensor(pose[None, 3:], dtype=torch.float32),
                   global_orient=torch.tensor(pose[None, :3], dtype=torch.float32),
                   transl=torch.tensor(transl[None], dtype=torch.float32))
    kp3d = out.keypoints49[0].double().numpy()
    image_size = np.array([800, 600])
    f = np.array([focal, focal])
    c = image_size / 2.0 + rng.uniform(-20, 20, 2)
    kp_img = project(kp3d, f, c)
    lo, hi = kp_img.min(0), kp_img.max(0)
    center = (lo + hi) / 2.0
    scale = 1.2 * float((hi - lo).max()) / 200.0
    crop_to_image = person_crop_affine(center, scale, CROP_SIZE, CROP_CONTEXT)
    kp_crop = apply_affine_np(kp_img, invert_affine_np(crop_to_image))
    keypoints = np.concatenate([kp_crop, np.ones((49, 1))], 1)
    keypoints[:25, 2] = 0.0  # no OpenPose detections, like SPIN's ground-truth files
    keypoints[:25, :2] = 0.0
    image = np.full((CROP_SIZE, CROP_SIZE, 3), 20, np.uint8)
    wrist = kp_crop[25 + 6]  # SPIN-24 slot 6 = right wrist
    xi, yi = int(wrist[0]), int(wrist[1])
    if 2 <= xi < CROP_SIZE - 2 and 2 <= yi < CROP_SIZE - 2:
        image[yi - 1:yi + 2, xi - 1:xi + 2] = 255
    fields = dict(
        image=image, source=source, image_size=image_size, crop_to_image=crop_to_image,
        keypoints_2d=keypoints, joints_3d=np.concatenate([kp3d[25:], np.ones((24, 1))], 1),
        pose=pose, betas=betas, has_smpl=True, has_3d=True,
        bigraph_joints_2d=keypoints[SPIN49_TO_BIGRAPH12], camera={"focal_length": f, "principal_point": c},
        center=center, scale=scale,
    )
    if mask:
        labels = np.zeros((CROP_SIZE, CROP_SIZE), np.uint8)
        labels[100:200, 100:150] = 3   # a "left arm" block left of a "right arm" block
        labels[100:200, 150:200] = 4
        fields["mask"] = labels
    if vertices:
        fields["vertices"] = out.vertices[0].numpy()
    return Sample.build(**fields)
