"""The open body rendered through the rasteriser: every one of the 24 parts shows in its IUV map."""
from __future__ import annotations

import torch

from body.model import BodyModel
from body.raster import rasterize
from body.render import camera_view, face_labels_map, iuv_map, screen_coordinates, vertex_labels_to_face_labels


def test_iuv_map_of_the_body_shows_all_24_parts():
    model = BodyModel.from_config("open")
    with torch.no_grad():
        out = model(torch.zeros(2, 10), torch.zeros(2, 69), torch.zeros(2, 3))
    verts = torch.cat([camera_view(out.vertices[:1], 0.0), camera_view(out.vertices[1:], 180.0)])  # front, back
    size = 224
    frags = rasterize(screen_coordinates(verts, size, focal=size * 8.0 / 2.1), model.faces, (size, size))
    iuv = iuv_map(frags, model.faces, model.vertex_iuv)
    fg = frags.pix_to_face >= 0
    parts_seen = set(iuv[:, 0][fg].round().long().tolist())
    assert parts_seen == set(range(1, 25)), sorted(set(range(1, 25)) - parts_seen)
    # I is the part of the face under the pixel; U, V are inside [0, 1] on the body and 0 off it.
    face_parts = vertex_labels_to_face_labels(model.vertex_part24 + 1, model.faces)
    assert torch.equal(iuv[:, 0].round().long(), face_labels_map(frags, face_parts))
    assert iuv[:, 1:][fg[:, None].expand(-1, 2, -1, -1)].min() >= 0 and iuv[:, 1:].max() <= 1
    assert (iuv[:, :, ~fg[0]][0] == 0).all()
    # Each part covers a plausible area (no part collapses to a few pixels) in at least one view.
    counts = torch.bincount(iuv[:, 0][fg].round().long(), minlength=25)[1:]
    assert counts.min() > 20, counts.tolist()
