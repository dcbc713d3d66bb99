"""Shapes, poses and orientations of synthetic people respect the joint-limit table."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from body.joints import SMPL_JOINT_NAMES, flip_smpl_pose
from body.poses import NAMED_POSES, named_pose
from datamodules.synthetic import limits
from datamodules.synthetic.limits import LIMITS_HI, LIMITS_LO, TYPICAL, clip_to_limits, limit_violations
from datamodules.synthetic.poses import (LIBRARY_NAMES, mirror_pose, orientation_matrix, random_pose, sample_betas,
                                         sample_body_pose, sample_orientation)


def deg(joint: str, axis: int) -> tuple[float, float]:
    j = SMPL_JOINT_NAMES.index(joint)
    return round(math.degrees(LIMITS_LO[j, axis])), round(math.degrees(LIMITS_HI[j, axis]))


def test_limit_table_reads_like_anatomy_and_is_mirror_symmetric():
    assert deg("left_knee", 0) == deg("right_knee", 0) == (0, 150)      # flexion, no hyperextension
    assert deg("left_elbow", 1) == (-145, 0) and deg("right_elbow", 1) == (0, 145)
    assert (LIMITS_LO[1:] <= 0).all() and (LIMITS_HI[1:] >= 0).all()     # the rest pose is within limits
    assert ((LIMITS_LO <= TYPICAL) & (TYPICAL <= LIMITS_HI)).all()
    sign = np.array([1.0, -1.0, -1.0])
    perm = [SMPL_JOINT_NAMES.index(n.replace("left_", "@").replace("right_", "left_").replace("@", "right_"))
            for n in SMPL_JOINT_NAMES]
    for j, m in enumerate(perm):
        lo, hi = LIMITS_LO[m] * sign, LIMITS_HI[m] * sign
        np.testing.assert_allclose(np.minimum(lo, hi), LIMITS_LO[j], atol=1e-12)
        np.testing.assert_allclose(np.maximum(lo, hi), LIMITS_HI[j], atol=1e-12)


def test_the_library_is_large_and_every_pose_is_within_limits():
    assert len(LIBRARY_NAMES) >= 15 and "t_pose" not in LIBRARY_NAMES
    assert {"standing", "walking", "sitting", "reaching", "bending"} <= set(NAMED_POSES)  # the original names
    for name in NAMED_POSES:
        pose = named_pose(name).numpy().reshape(-1)
        assert limit_violations(pose[3:]) == [], name
        mirrored = mirror_pose(pose.astype(np.float64))
        np.testing.assert_allclose(mirrored, flip_smpl_pose(torch.from_numpy(pose)[None])[0].numpy(), atol=1e-7)
        assert limit_violations(mirrored[3:]) == [], name


@pytest.mark.parametrize("share, spread", [(1.0, 0.6), (0.0, 0.6), (0.0, 1.0), (0.5, 0.45)])
def test_sampled_poses_are_within_limits(share, spread):
    rng = np.random.default_rng(0)
    poses = np.stack([sample_body_pose(rng, share, spread)[0] for _ in range(500)])
    assert poses.shape == (500, 69)
    assert (poses >= limits.BODY_LO - 1e-12).all() and (poses <= limits.BODY_HI + 1e-12).all()
    assert poses.std(0).max() > 0.1  # they vary


def test_random_poses_spread_around_the_relaxed_pose():
    rng = np.random.default_rng(1)
    small = np.stack([random_pose(rng, 0.2) for _ in range(300)])
    large = np.stack([random_pose(rng, 1.0) for _ in range(300)])
    d_small = np.abs(small - limits.BODY_TYPICAL).mean()
    d_large = np.abs(large - limits.BODY_TYPICAL).mean()
    assert d_small < 0.5 * d_large
    np.testing.assert_array_equal(clip_to_limits(limits.BODY_HI + 1.0), limits.BODY_HI)


def test_betas_and_orientations():
    rng = np.random.default_rng(2)
    betas = np.stack([sample_betas(rng) for _ in range(2000)])
    assert np.abs(betas).max() <= 3.0 and abs(betas.std() - 1.0) < 0.05
    up = []
    for _ in range(1000):
        r = torch.as_tensor(sample_orientation(rng))
        rot = torch.linalg.matrix_exp(torch.tensor([[0.0, -r[2], r[1]], [r[2], 0.0, -r[0]], [-r[1], r[0], 0.0]]))
        up.append(rot[:, 1].numpy())  # the body's up axis (SMPL +y) in the camera frame (y down)
    up = np.stack(up)
    assert (up[:, 1] < -0.75).mean() > 0.9  # upright: up points to the image top, small tilts
    assert (up[:, 1] < 0).mean() > 0.97
    np.testing.assert_allclose(orientation_matrix(0.0, 0.0, 0.0), np.diag([1.0, -1.0, -1.0]), atol=1e-12)
