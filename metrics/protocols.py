"""The papers' evaluation protocols: which row each table prints, and where 2D predictions meet ground truth.

Tables (what ``make eval`` prints for an evaluation set, by protocol; errors in mm, scores in [0, 1]):

========  =========================================  ====================================================
protocol  row                                        paper
========  =========================================  ====================================================
3dpw      pve, mpjpe, pa_mpjpe                       PyMAF Table 1
h36m      mpjpe, pa_mpjpe (P1 and P2 are data sets)  PyMAF Table 1 (P2), BiGraph Table 1 (P1, P2; np / p)
up3d      mpve (np / p)                              BiGraph Table 3
lsp       fb_acc, fb_f1, parts_acc, parts_f1         PyMAF Table 2, BiGraph Table 2 (SPIN's protocol)
coco      ap, ap50, ap75, apm, apl                   PyMAF Table 3
========  =========================================  ====================================================

A model with a non-parametric mesh (BiGraph) reports the 3D columns twice: ``_np`` for the graph's mesh
and ``_p`` for the body model on its regressed parameters. PyMAF's per-iteration errors (its Table 6)
are added for every 3D protocol.

2D protocols work in ORIGINAL-image pixels. The network sees the input crop (``img_res`` px); its
weak-perspective camera (s, tx, ty) means a perspective camera with f = 5000 px at the crop centre
(``body.camera``). ``input_to_image`` (the batch's (B, 2, 3) affine from input pixels to original
pixels) carries projections to the original image:

- LSP: the predicted mesh is projected into input pixels, mapped through ``input_to_image`` and
  rasterised at the original resolution with its LSP-6 face labels (:func:`lsp6_vertex_labels`: UP's six
  regions, the neck in the torso); the ground truth is the original-resolution annotation. SPIN renders
  in the crop and pastes it back (so the mesh is cut at the crop's edge); rendering through the affine
  keeps the whole mesh and needs no resampling. As SPIN's / PyMAF's ``eval.py`` (:func:`lsp_targets`):
  foreground / background is scored on the SILHOUETTE annotation (``silhouette_original``, UP-S1h's
  ``_segmentation.png`` > 0), every pixel counted (it has no ignore label); the six parts on the PART
  annotation (``mask_original``, ``_part_segmentation.png``): per-class F1 over the pixels not labelled 255,
  parts accuracy counting a 255 pixel as background. A set without silhouettes (none converted) takes the
  foreground of its part labels, 255 ignored.
- COCO: the predicted 24 ground-truth-style joints, in COCO order (``body.joints.SPIN49_TO_COCO17``),
  projected and mapped to the original image; score 1, one detection per ground-truth person box.
"""
from __future__ import annotations

import torch
from torch import Tensor

from body.camera import FOCAL_LENGTH, apply_affine, normalized_to_pixels, perspective_projection, \
    weak_perspective_to_translation
from body.parts import SMPL24_TO_LSP6
from runtime.errors import UserError

IGNORE_LABEL: int = 255
# protocol -> the row's columns, in the papers' order (3D columns get _np / _p suffixes for BiGraph).
PROTOCOL_COLUMNS: dict[str, tuple[str, ...]] = {
    "3dpw": ("pve", "mpjpe", "pa_mpjpe"),
    "h36m": ("mpjpe", "pa_mpjpe"),
    "up3d": ("mpve",),
    "lsp": ("fb_acc", "fb_f1", "parts_acc", "parts_f1"),
    "coco": ("ap", "ap50", "ap75", "apm", "apl"),
}
PROTOCOLS: tuple[str, ...] = tuple(PROTOCOL_COLUMNS)
THREE_D_PROTOCOLS: tuple[str, ...] = ("3dpw", "h36m", "up3d")


# SMPL's 24 skinning parts -> the LSP protocol's 6 parts (body.parts.LSP6_PART_NAMES order; the neck in the torso,
# as UP's ``six_region_groups`` that made the LSP test annotations).
LSP6_OF_SMPL24: Tensor = torch.as_tensor(SMPL24_TO_LSP6, dtype=torch.long)


def lsp6_vertex_labels(vertex_part24: Tensor) -> Tensor:
    """(V,) SMPL part 0..23 per vertex -> (V,) LSP-6 label 1..6 of the protocol (:data:`LSP6_OF_SMPL24`)."""
    return LSP6_OF_SMPL24.to(vertex_part24.device)[vertex_part24.long()]


def lsp_targets(parts: Tensor | None, silhouette: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """One sample's LSP ground truth -> (foreground target, parts target), as the protocol scores them.

    Args:
        parts: (H, W) part labels 0..6, ``IGNORE_LABEL`` unlabelled (``mask_original``), or None.
        silhouette: (H, W) 0 / 1 silhouette (``silhouette_original``), or None.
    Returns:
        the foreground target (H, W): the silhouette where there is one (no pixel ignored), else the
        parts' foreground (``IGNORE_LABEL`` kept); the parts target (the part labels), or None.
    """
    fb = silhouette if silhouette is not None else (foreground_of(parts) if parts is not None else None)
    return fb, parts


def protocol_of_set(set_name: str, explicit: str | None = None) -> str:
    """The protocol of an evaluation set: ``explicit`` if given, else the protocol its name starts with
    (``h36m_p1`` -> ``h36m``, ``3dpw_test`` -> ``3dpw``). Raises a one-line ``UserError`` otherwise."""
    if explicit:
        if explicit not in PROTOCOL_COLUMNS:
            raise UserError(f"unknown protocol {explicit!r}: valid choices are {', '.join(PROTOCOLS)}")
        return explicit
    for name in PROTOCOLS:
        if set_name.lower().startswith(name):
            return name
    raise UserError(f"evaluation set {set_name!r}: no protocol for this name (names start with one of "
                    f"{', '.join(PROTOCOLS)}); pass protocol=<one of them>")


def keypoints_in_image(keypoints_norm: Tensor, input_to_image: Tensor, img_res: float) -> Tensor:
    """Normalised input-crop keypoints -> original-image pixels.

    Args:
        keypoints_norm: (B, K, C) x, y in [-1, 1] of the input crop (channels after x, y are kept).
        input_to_image: (B, 2, 3) input pixels -> original pixels.
    Returns:
        (B, K, C) original-image pixels.
    """
    return apply_affine(normalized_to_pixels(keypoints_norm, img_res), input_to_image.to(keypoints_norm.dtype))


def vertices_in_image(vertices: Tensor, cam: Tensor, input_to_image: Tensor, img_res: float,
                      focal_length: float = FOCAL_LENGTH) -> Tensor:
    """Predicted vertices -> the rasteriser's screen coordinates in the ORIGINAL image.

    Args:
        vertices: (B, V, 3) body-frame vertices (no translation), metres.
        cam: (B, 3) weak-perspective (s, tx, ty) of the input crop.
        input_to_image: (B, 2, 3) input pixels -> original pixels.
    Returns:
        (B, V, 3): x, y original-image pixels, z camera depth (metres; the affine keeps depth order).
    """
    t = weak_perspective_to_translation(cam, focal_length, img_res)
    centre = vertices.new_full((2,), img_res / 2.0)
    xy = perspective_projection(vertices, t, focal_length, camera_center=centre)
    depth = vertices[..., 2:3] + t[:, None, 2:3]
    return torch.cat([apply_affine(xy, input_to_image.to(vertices.dtype)), depth], dim=-1)


def foreground_of(labels: Tensor) -> Tensor:
    """Part labels -> foreground labels: 0 stays 0, any part becomes 1, ``IGNORE_LABEL`` stays."""
    return torch.where(labels == IGNORE_LABEL, labels, (labels > 0).to(labels.dtype))


def input_box_in_image(input_to_image: Tensor, img_res: float) -> Tensor:
    """The input crop's box in the original image, COCO-style (x, y, w, h): (B, 2, 3) -> (B, 4).

    The evaluation input is the person box (no augmentation), so this is the ground-truth person box."""
    corners = input_to_image.new_tensor([[0.0, 0.0], [img_res, 0.0], [0.0, img_res], [img_res, img_res]])
    pts = apply_affine(corners.expand(input_to_image.shape[0], 4, 2), input_to_image)
    lo, hi = pts.min(dim=1).values, pts.max(dim=1).values
    return torch.cat([lo, hi - lo], dim=1)


def coco_ground_truth_keypoints(keypoints_coco_norm: Tensor, input_to_image: Tensor, img_res: float) -> Tensor:
    """Annotated COCO-17 keypoints -> COCO's (x, y, v) in original pixels: v = 2 where labelled, and
    x = y = v = 0 where not (COCO's encoding of an unlabelled keypoint).

    Args:
        keypoints_coco_norm: (B, 17, 3) normalised input coordinates + confidence.
    Returns:
        (B, 17, 3) float64.
    """
    xy = keypoints_in_image(keypoints_coco_norm[..., :2].double(), input_to_image.double(), img_res)
    labelled = (keypoints_coco_norm[..., 2] > 0).double()[..., None]
    return torch.cat([xy * labelled, 2.0 * labelled], dim=-1)
