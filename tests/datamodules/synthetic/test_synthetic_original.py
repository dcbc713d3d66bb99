"""Evaluation fields of synthetic samples: image_id, area and the lsp set's original-resolution mask."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from body.raster import rasterize
from body.render import face_labels_map, vertex_labels_to_face_labels
from datamodules.synthetic.sources import EVAL_SETS, TRAIN_SOURCES
from datamodules.warp import warp_image
from metrics.protocols import lsp6_vertex_labels

IGNORE = 255


def render_original(sample, model) -> np.ndarray:
    """(H0, W0) LSP-6 labels of the stored mesh, rendered here over the WHOLE original image with the stored
    original camera (no window), in the generator's pixel convention (centre of pixel i at i + 0.5)."""
    v = torch.from_numpy(sample.vertices)[None]
    f = torch.from_numpy(sample.camera["focal_length"])
    c = torch.from_numpy(sample.camera["principal_point"])
    xy = f * v[..., :2] / v[..., 2:3] + c
    width, height = (int(x) for x in sample.image_size)
    frags = rasterize(torch.cat([xy, v[..., 2:3]], -1), model.faces, (height, width))
    lsp = lsp6_vertex_labels(model.vertex_part24)   # the LSP protocol's six parts (metrics.protocols)
    return face_labels_map(frags, vertex_labels_to_face_labels(lsp, model.faces))[0].to(torch.uint8).numpy()


def test_every_sample_has_its_key_as_image_id(tiny_samples):
    for group in tiny_samples.values():
        for s in group:
            assert s.image_id == s.key


@pytest.mark.parametrize("name", sorted(EVAL_SETS))
def test_area_is_the_foreground_of_the_original_resolution_render(tiny_samples, body_model, name):
    for s in tiny_samples[("eval", name)]:
        labels = render_original(s, body_model)
        assert type(s.area) is float and s.area == float((labels > 0).sum()) > 0, s.key
        if EVAL_SETS[name].original_mask:
            mo = s.mask_original
            assert mo.dtype == np.uint8 and mo.shape == (s.image_size[1], s.image_size[0])
            assert set(np.unique(mo)) <= set(range(7)) and set(np.unique(mo)) >= {0, 1, 2}
            assert np.array_equal(mo, labels)  # the generator's windowed render is the full render, bit for bit
            assert s.area == float(((mo > 0) & (mo != IGNORE)).sum())
        else:
            assert s.mask_original is None


def test_only_the_eval_lsp_set_stores_mask_original_and_training_has_no_area(tiny_samples):
    assert [n for n, spec in EVAL_SETS.items() if spec.original_mask] == ["lsp"]
    assert not any(spec.original_mask for spec in TRAIN_SOURCES.values())
    for (split, _), group in tiny_samples.items():
        for s in group:
            assert (s.area is not None) == (split == "eval")
            assert (s.mask_original is not None) == (split == "eval" and s.source == "lsp")


def test_original_mask_warped_onto_the_crop_agrees_with_the_crop_mask(scene_generator):
    """The original-resolution labels, resampled onto the crop through ``crop_to_image`` (nearest, at crop
    pixel centres), agree with the crop's own part mask except along edges. Crop pixels outside the
    original image (the crop may reach past its border) have no original label and are not counted."""
    samples = scene_generator.samples(0, EVAL_SETS["lsp"], range(4))
    for s in samples:
        assert s.mask is not None and s.mask_original is not None
        warped = warp_image(s.mask_original, s.crop_to_image, s.crop_size, "nearest", fill=IGNORE)
        inside = warped != IGNORE
        assert inside.mean() > 0.3 and (s.mask[inside] > 0).sum() > 500, s.key
        agree = (warped[inside] == s.mask[inside]).mean()
        assert agree >= 0.97, (s.key, agree)
        # Foreground only, too: the person is where the crop says.
        fg = (warped[inside] > 0) == (s.mask[inside] > 0)
        assert fg.mean() >= 0.97, s.key
