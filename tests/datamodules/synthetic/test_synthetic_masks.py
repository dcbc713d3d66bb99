"""Part masks of synthetic samples are the rendering of the mesh's LSP-6 part labels."""
from __future__ import annotations

import numpy as np
import torch

from body.raster import rasterize
from body.render import face_labels_map, vertex_labels_to_face_labels, vertex_normals
from datamodules.synthetic.sources import TRAIN_SOURCES
from metrics.protocols import lsp6_vertex_labels


def crop_intrinsics(sample) -> tuple[np.ndarray, np.ndarray]:
    """Crop focal (2,) and principal point (2,): the original camera through the inverse crop affine."""
    a = sample.crop_to_image.astype(np.float64)
    k = np.diag(a[:, :2])
    return sample.camera["focal_length"] / k, (sample.camera["principal_point"] - a[:, 2]) / k


def render(vertices: np.ndarray, sample, model) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) LSP-6 label map and (H, W) depth of the mesh, rendered here from the stored geometry."""
    f, c = crop_intrinsics(sample)
    v = torch.from_numpy(vertices)[None]
    xy = torch.from_numpy(f).float() * v[..., :2] / v[..., 2:] + torch.from_numpy(c).float()
    frags = rasterize(torch.cat([xy, v[..., 2:]], -1), model.faces, sample.mask.shape)
    lsp = lsp6_vertex_labels(model.vertex_part24)   # the LSP protocol's six parts (metrics.protocols)
    labels = face_labels_map(frags, vertex_labels_to_face_labels(lsp, model.faces))[0].numpy()
    return labels, frags.zbuf[0].numpy()


def masked_samples(tiny_samples, scene_generator):
    """(sample, vertices) of every sample with a mask: evaluation sets (stored vertices) and lsp (their
    hidden ground truth, regenerated)."""
    out = [(s, s.vertices) for (split, _), group in tiny_samples.items() if split == "eval" for s in group]
    people = scene_generator.people(0, TRAIN_SOURCES["lsp"], [0, 1, 2])
    out += [(s, p.vertices) for s, (p, _) in zip(tiny_samples[("train", "lsp")], people)]
    return out


def test_masks_equal_the_rendering_of_the_part_labels(tiny_samples, scene_generator, body_model):
    for sample, vertices in masked_samples(tiny_samples, scene_generator):
        assert sample.mask.dtype == np.uint8 and set(np.unique(sample.mask)) <= set(range(7))
        assert (sample.mask > 0).sum() > 1000
        labels, _ = render(vertices, sample, body_model)
        assert (labels == sample.mask).mean() > 0.999, sample.key


def test_visible_vertices_land_on_their_part(tiny_samples, scene_generator, body_model):
    """The mask label under a projected vertex that is not occluded (its depth is the z-buffer's) and
    faces the camera is the vertex's own part label, in most cases (part borders excepted)."""
    lsp = lsp6_vertex_labels(body_model.vertex_part24).numpy()
    agree = total = 0
    for sample, vertices in masked_samples(tiny_samples, scene_generator):
        _, zbuf = render(vertices, sample, body_model)
        f, c = crop_intrinsics(sample)
        uv = f * vertices[:, :2] / vertices[:, 2:] + c
        normals = vertex_normals(torch.from_numpy(vertices)[None], body_model.faces)[0].numpy()
        view = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
        ij = np.floor(uv).astype(int)
        ok = ((ij >= 0) & (ij < 320)).all(1) & ((normals * view).sum(1) < -0.3)
        ok[ok] &= np.abs(zbuf[ij[ok, 1], ij[ok, 0]] - vertices[ok, 2]) < 0.01
        got = sample.mask[ij[ok, 1], ij[ok, 0]]
        assert (got > 0).all()
        agree += int((got == lsp[ok]).sum())
        total += int(ok.sum())
    assert total > 1000 and agree / total > 0.95
