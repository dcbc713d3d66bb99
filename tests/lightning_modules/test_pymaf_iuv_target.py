"""PyMAF's IUV target (``lightning_modules.pymaf.render_gt_iuv``): the camera fit against PyMAF's
``estimate_translation_np`` (rebuilt here in numpy from the official text) and the chart-split rendering."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lightning_modules.pymaf as pymaf
from body.camera import FOCAL_LENGTH, pixels_to_normalized
from body.model import BodyModel
from body.raster import rasterize
from body.render import face_iuv_map

IMG_RES, OUT_RES = 224, 56


def official_estimate_translation_np(S, joints_2d, joints_conf, focal_length=5000.0, img_size=224.0):
    """PyMAF's ``utils/geometry.py`` ``estimate_translation_np``: rows weighted by sqrt(conf), normal equations."""
    n = S.shape[0]
    f = np.array([focal_length, focal_length])
    center = np.array([img_size / 2.0, img_size / 2.0])
    Z = np.reshape(np.tile(S[:, 2], (2, 1)).T, -1)
    XY = np.reshape(S[:, 0:2], -1)
    O = np.tile(center, n)
    F = np.tile(f, n)
    weight2 = np.reshape(np.tile(np.sqrt(joints_conf), (2, 1)).T, -1)
    Q = np.array([F * np.tile(np.array([1, 0]), n), F * np.tile(np.array([0, 1]), n), O - np.reshape(joints_2d, -1)]).T
    c = (np.reshape(joints_2d, -1) - O) * Z - F * XY
    W = np.diagflat(weight2)
    Q, c = W @ Q, W @ c
    return np.linalg.solve(Q.T @ Q, Q.T @ c)


@pytest.fixture(scope="module")
def scene():
    model = BodyModel.from_config("open").double()
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(2, 72, generator=g, dtype=torch.float64) * 0.2
    pose[:, 0] += np.pi                                          # upright in the camera frame (y down)
    with torch.no_grad():
        out = model(torch.zeros(2, 10, dtype=torch.float64), pose[:, 3:], pose[:, :3])
    joints = out.keypoints49[:, 25:]
    true_t = torch.tensor([[0.1, 0.2, 40.0], [-0.2, 0.1, 50.0]], dtype=torch.float64)
    cam = joints + true_t[:, None]
    pixels = FOCAL_LENGTH * cam[..., :2] / cam[..., 2:] + IMG_RES / 2
    pixels = pixels + 4.0 * torch.randn(pixels.shape, generator=g, dtype=torch.float64)   # noisy keypoints
    conf = torch.rand(2, 24, generator=g, dtype=torch.float64) ** 2
    conf[:, :3] = 0.0
    keypoints = pixels_to_normalized(torch.cat([pixels, conf[..., None]], -1), IMG_RES)
    return model, out.vertices, joints, keypoints


def test_camera_fit_is_pymafs_sqrt_confidence_least_squares(scene, monkeypatch):
    model, vertices, joints, keypoints = scene
    seen, original = [], pymaf.estimate_translation

    def recording(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(pymaf, "estimate_translation", recording)
    pymaf.render_gt_iuv(model, vertices, joints, keypoints, IMG_RES, OUT_RES)
    (got,) = seen
    pixels = (keypoints[..., :2].numpy() + 1) * IMG_RES / 2
    for b in range(2):
        ref = official_estimate_translation_np(joints[b].numpy(), pixels[b], keypoints[b, :, 2].numpy())
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=1e-7, atol=1e-7)
        # The weighting matters here: confidence-weighted rows (not sqrt) give another translation.
        linear = official_estimate_translation_np(joints[b].numpy(), pixels[b], keypoints[b, :, 2].numpy() ** 2)
        assert np.abs(linear - ref).max() > 1e-2


def test_target_is_the_flat_iuv_of_the_chart_split_mesh(scene):
    model, vertices, joints, keypoints = scene
    iuv = pymaf.render_gt_iuv(model, vertices, joints, keypoints, IMG_RES, OUT_RES)
    assert iuv.shape == (2, 3, OUT_RES, OUT_RES)
    pixels = (keypoints[..., :2] + 1) * IMG_RES / 2
    t = torch.stack([torch.as_tensor(official_estimate_translation_np(joints[b].numpy(), pixels[b].numpy(),
                                                                      keypoints[b, :, 2].numpy())) for b in range(2)])
    cam = (vertices + t[:, None])[:, model.iuv_vertex_map]
    k = OUT_RES / IMG_RES
    screen = torch.cat([FOCAL_LENGTH * k * cam[..., :2] / cam[..., 2:] + OUT_RES / 2, cam[..., 2:]], -1)
    ref = face_iuv_map(rasterize(screen, model.iuv_faces, (OUT_RES, OUT_RES)), model.iuv_face_iuv)
    assert (iuv != ref).any(1).float().mean() < 0.01                # at most a few edge pixels differ
    assert (iuv[:, 0] > 0).sum() > 300
