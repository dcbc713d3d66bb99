"""Synthetic samples are geometrically consistent: 3D data, SMPL parameters, camera, crop and 2D keypoints."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from datamodules.sample import CROP_SIZE, person_crop_affine
from datamodules.synthetic.annotate import build_sample
from datamodules.synthetic.sources import EVAL_SETS, TRAIN_SOURCES

TOL_PX = 1e-2
TOL_M = 1e-4


def reproject(points: np.ndarray, sample) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) crop pixels: pinhole with the stored camera (original image),
    then the inverse of crop_to_image. Written independently of the generator's code."""
    p = points.astype(np.float64)
    f = sample.camera["focal_length"].astype(np.float64)
    c = sample.camera["principal_point"].astype(np.float64)
    orig = f * p[:, :2] / p[:, 2:3] + c
    a = sample.crop_to_image.astype(np.float64)
    return (orig - a[:, 2]) @ np.linalg.inv(a[:, :2]).T


def body_output(model, sample):
    pose = torch.from_numpy(sample.pose)[None]
    with torch.no_grad():
        return model(torch.from_numpy(sample.betas)[None], pose[:, 3:], pose[:, :3])


def all_samples(tiny_samples):
    return [s for samples in tiny_samples.values() for s in samples]


def test_every_source_and_set_was_generated(tiny_samples):
    assert {k for k in tiny_samples} == {("train", n) for n in TRAIN_SOURCES} | {("eval", n) for n in EVAL_SETS}
    assert all(len(v) == (10 if split == "train" else 1) for (split, _), v in tiny_samples.items())


def test_stored_3d_reprojects_onto_keypoints_2d(tiny_samples):
    checked = 0
    for s in all_samples(tiny_samples):
        kp = s.keypoints_2d
        if s.has_3d:
            both = (s.joints_3d[:, 3] > 0) & (kp[25:, 2] > 0)
            err = np.abs(reproject(s.joints_3d[both, :3], s) - kp[25:][both, :2]).max()
            assert err < TOL_PX, (s.key, err)
            checked += int(both.sum())
        if s.vertices is not None:  # the mesh lands inside the crop where the person is
            uv = reproject(s.vertices, s)
            assert np.median(np.abs(uv - CROP_SIZE / 2)) < CROP_SIZE / 2
    assert checked > 100


# The 17 Human3.6M slots of the 24 ground-truth joints (SPIN's global_idx), written out.
H36M17_TO_J24_BY_HAND = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]


def test_smpl_parameters_reproduce_vertices_and_joints_up_to_a_translation(tiny_samples, body_model):
    for (split, name), group in tiny_samples.items():
        h36m_joints = split == "eval" and name == "h36m"   # motion-capture-like joints: the H36M regressor's
        for s in group:
            check_sample(s, body_model, h36m_joints)


def check_sample(s, body_model, h36m_joints: bool) -> None:
    if s.has_smpl:
        out = body_output(body_model, s)
        kp3 = out.keypoints49[0].numpy().astype(np.float64)
        if h36m_joints:
            kp3[[25 + j for j in H36M17_TO_J24_BY_HAND]] = body_model.h36m17(out.vertices)[0].numpy()
        if s.vertices is not None:
            d = s.vertices.astype(np.float64) - out.vertices[0].numpy()
            assert np.abs(d - d.mean(0)).max() < TOL_M, s.key
            t = d.mean(0)
            assert np.abs(s.transl - t).max() < TOL_M, s.key   # the translation the mesh carries
        if s.has_3d:
            m = s.joints_3d[:, 3] > 0
            d = s.joints_3d[m, :3].astype(np.float64) - kp3[25:][m]
            assert np.abs(d - d.mean(0)).max() < TOL_M, s.key
            if s.vertices is not None:
                assert np.abs(d.mean(0) - t).max() < TOL_M
            t = d.mean(0)
        if s.vertices is None and not s.has_3d:  # up3d: solve the translation from the 2D keypoints
            t = translation_from_2d(kp3, s)
        m = s.keypoints_2d[:, 2] > 0
        err = np.abs(reproject(kp3[m] + t, s) - s.keypoints_2d[m, :2]).max()
        assert err < TOL_PX, (s.key, err)


def translation_from_2d(kp3: np.ndarray, sample) -> np.ndarray:
    """Least-squares t with pinhole(kp3 + t) = the labelled keypoints (linear: (u - c)(Z + tz) = f (X + tx))."""
    a = sample.crop_to_image.astype(np.float64)
    m = sample.keypoints_2d[:, 2] > 0
    orig = sample.keypoints_2d[m, :2].astype(np.float64) @ a[:, :2].T + a[:, 2]
    f = sample.camera["focal_length"].astype(np.float64)
    c = sample.camera["principal_point"].astype(np.float64)
    p = kp3[m].astype(np.float64)
    rows, rhs = [], []
    for k in range(2):
        du = orig[:, k] - c[k]
        row = np.zeros((len(p), 3))
        row[:, k] = f[k]
        row[:, 2] = -du
        rows.append(row)
        rhs.append(du * p[:, 2] - f[k] * p[:, k])
    t, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)
    return t


def test_2d_only_sources_match_their_hidden_ground_truth(tiny_samples, scene_generator, body_model):
    for name in ("lsp", "coco", "mpii"):
        spec = TRAIN_SOURCES[name]
        # The generator renders with one thread (datamodules/synthetic/dataset.py): torch's kernels may
        # round the last bit differently on two threads.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            people = scene_generator.people(0, spec, [0, 1])
        finally:
            torch.set_num_threads(threads)
        for (person, _), stored in zip(people, tiny_samples[("train", name)][:2]):
            # The same sample, rendered in another batch (2 instead of 10): identical values.
            np.testing.assert_array_equal(stored.camera["focal_length"], person.focal)
            np.testing.assert_array_equal(stored.crop_to_image, person.crop_to_image)
            m = stored.keypoints_2d[:, 2] > 0
            assert m.sum() >= 4
            err = np.abs(reproject(person.keypoints3d[m], stored) - stored.keypoints_2d[m, :2]).max()
            assert err < TOL_PX
            pose = torch.from_numpy(person.pose)[None]
            with torch.no_grad():
                out = body_model(torch.from_numpy(person.betas)[None], pose[:, 3:], pose[:, :3])
            d = person.keypoints3d.astype(np.float64) - out.keypoints49[0].numpy()
            assert np.abs(d - person.transl).max() < TOL_M


def test_keypoints_outside_the_crop_have_zero_confidence(tiny_samples, scene_generator, monkeypatch):
    for s in all_samples(tiny_samples):
        labelled = s.keypoints_2d[s.keypoints_2d[:, 2] > 0, :2]
        assert ((labelled >= 0) & (labelled < CROP_SIZE)).all(), s.key
    # Force deeply truncated crops of a fully annotated set (the box border cuts 60-70 % of the person, so
    # the crop border cuts some of it too): what falls outside is unlabelled, the rest labelled.
    monkeypatch.setattr("datamodules.synthetic.placement.TRUNCATION_DEPTH", (0.6, 0.7))
    spec = dataclasses.replace(EVAL_SETS["3dpw"], truncation=1.0)
    outside_seen = 0
    for i, (person, gens) in enumerate(scene_generator.people(5, spec, range(6))):
        sample = build_sample(person, spec, f"t{i}", gens["labels"], gens["detections"])
        true = person.keypoints_crop()
        inside = ((true >= 0) & (true < CROP_SIZE)).all(1)
        assert (sample.keypoints_2d[~inside, 2] == 0).all() and (sample.keypoints_2d[~inside, :2] == 0).all()
        assert (sample.keypoints_2d[inside, 2] == 1).all()
        outside_seen += int((~inside).sum())
    assert outside_seen > 0


def test_spin_boxes_and_crops(tiny_samples):
    upright = counted = 0
    samples = all_samples(tiny_samples)
    for s in samples:
        np.testing.assert_allclose(s.crop_to_image, person_crop_affine(s.center, s.scale), atol=1e-4)
        assert s.crop_context == 1.5 and s.image.shape == (CROP_SIZE, CROP_SIZE, 3)
        kp = s.keypoints_2d
        a = s.crop_to_image.astype(np.float64)
        orig = kp[kp[:, 2] > 0, :2] @ a[:, :2].T + a[:, 2]  # the person is in the original image
        assert ((orig >= 0) & (orig <= s.image_size)).all(1).mean() > 0.5
        head, ankles = kp[25 + 13], kp[[25 + 0, 25 + 5]]
        if head[2] > 0 and (ankles[:, 2] > 0).all():
            upright += int(head[1] < ankles[:, 1].mean())
            counted += 1
    assert counted >= 10 and upright >= 0.8 * counted
    # Fully visible evaluation people: the person box is 1.1-1.3 x their keypoints' tight box.
    for (split, _), group in tiny_samples.items():
        for s in group:
            if split == "eval" and (s.keypoints_2d[:, 2] > 0).all():
                kp = s.keypoints_2d[:, :2]
                side = (kp.max(0) - kp.min(0)).max()
                assert 1.1 - 1e-3 <= (CROP_SIZE / 1.5) / side <= 1.3 + 1e-3
