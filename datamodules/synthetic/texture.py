"""Per-pixel colour (albedo) of a synthetic person: clothing regions, patterns, hair and face, from the mesh.

Regions come from the 24-part labels of the mesh (``body.parts``; a pixel takes the label of the face
under it) refined by smooth *body coordinates* of every vertex, measured once on the mean-shape body in a
relaxed standing pose (``body.poses`` "standing"; body frame, metres, pelvis at the origin) and carried
by the skinning to any pose (they are vertex attributes, interpolated per pixel):

- ``ref`` (3): the vertex's position in that reference pose, the domain of the patterns. Patterns are
  solid textures (functions of ``ref``: stripes, checks, plaid, melange), so they run seamlessly over
  part boundaries; the per-part cylindrical UVs of ``body.parts`` restart at every part and wrap at a
  seam, which shows on stripes;
- ``arm`` / ``leg``: distance from the shoulder / hip joint of the vertex's side, over the length
  shoulder-wrist / hip-ankle (0 at the joint, 1 at the wrist / ankle): sleeve and trouser hems;
- ``torso``: height above the pelvis over the pelvis-neck height: the waist line.

Rules (by part, then by body coordinate): feet and toes -> shoes, and legs beyond the shoe top; thighs
and shins -> bottom above the hem, else skin; pelvis, spine, collars and neck -> top between the waist
and the neckline, bottom below the waist, skin above the neckline (tank tops: skin near the shoulders);
upper arms and forearms -> top above the sleeve hem, else skin; hands -> skin; head -> skin, hair above
the hairline (and on the back of the neck for long hair), eyes, brows and lips drawn at their reference
positions. Every boundary between two regions is a level set of a smooth coordinate lying inside a
part, never a part boundary (those follow the mesh's large triangles and look jagged): the thresholds'
ranges in ``.appearance`` are chosen for that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from body.poses import named_pose
from body.render import vertex_labels_to_face_labels
from datamodules.synthetic.appearance import Appearance, Garment

# SMPL part indices (body.joints.SMPL_JOINT_NAMES order).
FEET = (7, 8, 10, 11)
LEGS = (1, 2, 4, 5)
TORSO = (0, 3, 6, 9)
COLLARS = (13, 14)
ARMS = (16, 17, 18, 19)
HANDS = (20, 21, 22, 23)
NECK, HEAD = 12, 15
# Columns of the per-vertex attribute table.
REF, ARM, LEG, TORSO_H = slice(0, 3), 3, 4, 5
NUM_ATTRS = 6


@dataclass
class BodyCoordinates:
    """Per-vertex attributes (V, 6) = ref x, y, z (m), arm, leg, torso (module docstring); per-face part
    labels (F,) long (0..23) and LSP-6 labels (F,) long (1..6); reference points (m) of the head joint,
    neck joint, eyes (2, 3) and nose tip."""

    attrs: Tensor
    face_part: Tensor
    face_lsp6: Tensor
    head: Tensor
    neck: Tensor
    eyes: Tensor
    nose: Tensor


def body_coordinates(model) -> BodyCoordinates:
    """Measure the body coordinates of a :class:`body.model.BodyModel` (mean shape, "standing")."""
    pose = named_pose("standing")[None]
    with torch.no_grad():
        out = model(torch.zeros(1, 10), pose[:, 1:], pose[:, 0])
    j = out.joints[0]
    v = out.vertices[0] - j[0]
    j = j - j[0]
    left = v[:, 0] >= 0
    shoulder = torch.where(left[:, None], j[16], j[17])
    hip = torch.where(left[:, None], j[1], j[2])
    arm_len = (j[20] - j[16]).norm()
    leg_len = (j[7] - j[1]).norm()
    attrs = torch.stack([v[:, 0], v[:, 1], v[:, 2], (v - shoulder).norm(dim=1) / arm_len,
                         (v - hip).norm(dim=1) / leg_len, v[:, 1] / j[12, 1]], dim=1)
    faces = model.faces
    ids = model.vertex_ids
    part24 = model.vertex_part24
    from metrics.protocols import lsp6_vertex_labels   # (metrics imports torchmetrics: only when needed)
    lsp6 = lsp6_vertex_labels(part24)   # the LSP protocol's six parts (the neck in the torso)
    return BodyCoordinates(
        attrs=attrs, face_part=vertex_labels_to_face_labels(part24, faces),
        face_lsp6=vertex_labels_to_face_labels(lsp6, faces), head=j[15], neck=j[12],
        eyes=torch.stack([v[ids["leye"]], v[ids["reye"]]]), nose=v[ids["nose"]],
    )


def _isin(x: Tensor, values: tuple[int, ...]) -> Tensor:
    return torch.isin(x, torch.tensor(values, dtype=x.dtype))


def _soft_square(t: Tensor) -> Tensor:
    """A square wave of period 1 with soft edges, in [0, 1]."""
    return 0.5 + 0.5 * torch.tanh(3.0 * torch.sin(2 * math.pi * t))


def grain(ref: Tensor) -> Tensor:
    """(N, 3) reference positions -> (N,) pseudo-random values in [0, 1) (a sine hash at ~1 mm scale)."""
    h = torch.sin(ref[:, 0] * 12989.8 + ref[:, 1] * 78233.0 + ref[:, 2] * 37719.0) * 43758.5453
    return h - torch.floor(h)


def pattern_weight(ref: Tensor, g: Garment) -> Tensor:
    """(N, 3) reference positions -> (N,) mix weight of the garment's second colour."""
    x, y, z = ref.unbind(1)
    p = g.period
    if g.pattern == "plain":
        return torch.zeros_like(x)
    if g.pattern == "hstripes":
        return _soft_square(y / p + g.phase)
    if g.pattern == "vstripes":
        return _soft_square((x * math.cos(g.angle) + z * math.sin(g.angle)) / p + g.phase)
    if g.pattern == "checks":
        s = torch.sin(2 * math.pi * x / p) * torch.sin(2 * math.pi * y / p) * torch.sin(2 * math.pi * (z / p + g.phase))
        return 0.5 + 0.5 * torch.tanh(6.0 * s)
    if g.pattern == "plaid":
        return 0.5 * (_soft_square(x / p + g.phase) + _soft_square(y / p)) * (0.8 + 0.2 * _soft_square(z / p))
    if g.pattern == "melange":
        return grain(ref)
    raise ValueError(f"unknown pattern {g.pattern!r}")


def garment_colour(ref: Tensor, g: Garment) -> Tensor:
    """(N, 3) reference positions -> (N, 3) garment colour with its pattern and a faint fabric grain."""
    w = pattern_weight(ref, g)[:, None]
    a = torch.as_tensor(g.colour_a, dtype=ref.dtype)
    b = torch.as_tensor(g.colour_b, dtype=ref.dtype)
    return ((1 - w) * a + w * b) * (0.97 + 0.06 * grain(ref * 1.37))[:, None]


def hair_mask(part: Tensor, ref: Tensor, coords: BodyCoordinates, look: Appearance) -> Tensor:
    """(N,) bool: hair at pixels of the head / neck / upper back (module docstring)."""
    if look.hair_style == "bald":
        return torch.zeros_like(part, dtype=torch.bool)
    d = ref - coords.head
    on_head = part == HEAD
    hair = on_head & (d[:, 1] > look.hairline + look.hair_slope * d[:, 2]) & (d[:, 1] > look.nape)
    if look.hair_style == "long":
        behind = (ref[:, 2] - coords.neck[2] < -0.015) & (ref[:, 1] > look.long_hair_low) & (ref[:, 0].abs() < 0.13)
        sides = on_head & (d[:, 0].abs() > 0.055) & (d[:, 1] > -0.06) & (d[:, 2] < 0.05)
        hair |= (behind & _isin(part, (HEAD, NECK, 9, 13, 14))) | sides
    return hair


def face_features(colour: Tensor, ref: Tensor, coords: BodyCoordinates, look: Appearance) -> Tensor:
    """Eyes, brows and lips drawn over (N, 3) head-skin colours at (N, 3) reference positions."""
    out = colour.clone()
    dark = torch.tensor([0.1, 0.07, 0.06], dtype=colour.dtype)
    brow = 0.6 * torch.as_tensor(look.hair, dtype=colour.dtype) + 0.4 * dark
    lip = 0.55 * torch.as_tensor(look.skin, dtype=colour.dtype) + torch.tensor([0.25, 0.08, 0.08])
    for eye in coords.eyes:
        d = ref - eye
        front = d[:, 2] > -0.02
        out[front & ((d[:, 0] / 0.009) ** 2 + (d[:, 1] / 0.0055) ** 2 < 1.0)] = dark
        brows = front & ((d[:, 0] / 0.017) ** 2 + ((d[:, 1] - 0.017) / 0.0035) ** 2 < 1.0)
        out[brows] = brow
    d = ref - (coords.nose + torch.tensor([0.0, -0.034, -0.012]))
    out[(d[:, 2] > -0.03) & ((d[:, 0] / 0.021) ** 2 + (d[:, 1] / 0.0055) ** 2 < 1.0)] = lip
    return out


def albedo(part: Tensor, attrs: Tensor, coords: BodyCoordinates, look: Appearance) -> Tensor:
    """Colours of N foreground pixels of one person.

    Args:
        part: (N,) long 24-part label of the face under each pixel.
        attrs: (N, 6) interpolated body coordinates.
    Returns:
        (N, 3) albedo in [0, 1].
    """
    ref = attrs[:, REF]
    dt = attrs.dtype
    skin = torch.as_tensor(look.skin, dtype=dt).expand(len(part), 3)
    trunk = _isin(part, TORSO + COLLARS + (NECK,))
    height = attrs[:, TORSO_H]
    top = trunk & (height > look.waist) & (height < look.neckline)
    if look.sleeve < 0:
        top &= attrs[:, ARM] >= look.strap
    top |= _isin(part, ARMS) & (attrs[:, ARM] < look.sleeve)
    shoes = _isin(part, FEET) | (_isin(part, LEGS) & (attrs[:, LEG] > look.shoe_top))
    bottom = trunk & (height <= look.waist)
    bottom |= _isin(part, LEGS) & (attrs[:, LEG] < look.hem) & ~shoes
    hair = hair_mask(part, ref, coords, look)
    out = skin.clone()
    head_skin = _isin(part, (HEAD,)) & ~hair
    if head_skin.any():
        out[head_skin] = face_features(out[head_skin], ref[head_skin], coords, look)
    if top.any():
        out[top] = garment_colour(ref[top], look.top)
    if bottom.any():
        out[bottom] = garment_colour(ref[bottom], look.bottom)
    if shoes.any():
        out[shoes] = torch.as_tensor(look.shoes, dtype=dt) * (0.9 + 0.1 * grain(ref[shoes]))[:, None]
    if hair.any():
        strands = 0.8 + 0.35 * grain(ref[hair] * 0.5)
        out[hair] = torch.as_tensor(look.hair, dtype=dt) * strands[:, None]
    return out.clamp(0.0, 1.0)
