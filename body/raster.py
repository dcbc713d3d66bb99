"""A batched z-buffer triangle rasteriser in pure torch (headless: no OpenGL, EGL or OSMesa).

Conventions
-----------
* ``verts_screen`` (B, V, 3): x, y in PIXELS (x right, y down), z = positive camera depth (smaller is
  closer). Pixel (i, j) (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5); a face covers a
  pixel when the pixel centre lies inside the closed triangle.
* One face topology ``faces`` (F, 3) long is shared by the whole batch.
* Winding: with camera-frame vertices (x right, y down, z forward, right-handed) and faces wound
  counter-clockwise around their outward normal (SMPL's convention), a face that looks at the camera has a
  NEGATIVE signed screen area (x1 - x0)(y2 - y0) - (y1 - y0)(x2 - x0) < 0. ``cull_backfaces=True`` drops the
  faces with a positive area. By default both sides are rasterised.
* Faces with a vertex at z <= ``near``, a non-finite coordinate or a zero screen area are skipped.

Algorithm (all tensor ops; no Python loop over faces or pixels)
--------------------------------------------------------------
1. Per (image, face) pair: the edge functions of its three edges and the integer box of pixel centres
   that its bounding box covers, clipped to the image.
2. The pairs are bucketed by box size (width class x height class); a bucket of k_h x k_w boxes is
   enumerated as a (P, k_h, k_w) broadcast grid, in chunks of at most ``chunk_size`` candidates.
3. Inside test: E_i(p) >= 0 for the three edge functions, each evaluated from a CANONICAL edge direction
   (starting at the lexicographically smaller endpoint), so that two faces sharing an edge compute the
   very same floating-point value with opposite signs: a pixel centre on a shared edge is taken by at
   least one of them, and a closed mesh's silhouette has no pinholes.
4. Depth: 1/z is affine in screen space, 1/z = sum_i E_i / (2A z_i). The candidate key
   ``(float32 bits of 1/z) << 32 | (2^32 - 1 - face)`` is reduced per pixel with ``scatter_reduce(amax)``:
   the nearest face wins, ties go to the smaller face index (deterministic, independent of chunking and
   batching).
5. The winners' perspective-correct barycentrics and depth are recomputed per foreground pixel from the
   (differentiable) face table, so ``bary`` and ``zbuf`` carry gradients to ``verts_screen``.
"""
from __future__ import annotations

import math
import sys
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Fragments", "rasterize", "interpolate_vertex_attributes"]

# Columns of the per-(image, face) table. Edge i is the edge opposite vertex i: (v[i+1], v[i+2]).
_AX, _AY, _EX, _EY = 0, 3, 6, 9  # blocks of 3 columns (one per edge): edge start (x, y), direction (x, y)
_WZ = 12  # block of 3 columns (one per vertex): 1 / (z_i * 2A), A the unsigned screen area
_XL, _YL, _BW, _BH = 15, 16, 17, 18  # first pixel centre of the box (x, y), box width, box height
_N_COLS = 19
_N_EXACT = 8  # box classes 1.._N_EXACT are exact sizes
_FACE_MASK = (1 << 32) - 1


class Fragments(NamedTuple):
    """Per-pixel output of :func:`rasterize`.

    Attributes:
        pix_to_face: (B, H, W) long, index into ``faces`` of the nearest face; -1 for background.
        zbuf: (B, H, W) float, camera depth z of the nearest face at the pixel centre; +inf for background.
        bary: (B, H, W, 3) float, perspective-correct barycentric coordinates of the pixel centre w.r.t.
            the winning face's vertices (``faces[pix_to_face]``), each >= 0, summing to 1; 0 for
            background.
    """

    pix_to_face: Tensor
    zbuf: Tensor
    bary: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where some face covers the pixel."""
        return self.pix_to_face >= 0


def _box_classes(max_size: int) -> list[int]:
    """Box-size classes 1.._N_EXACT exactly, then steps of ~1/4 (10, 12, 14, 16, 20, 24, ...), the last
    one >= ``max_size``. A box of width w is enumerated with the smallest class >= w."""
    classes = list(range(1, _N_EXACT + 1))
    while classes[-1] < max_size:
        c = classes[-1]
        classes.append(c + max(1, 2 ** (int(math.log2(c)) - 2)))
    return classes


def _face_table(verts_screen: Tensor, faces: Tensor, image_size: tuple[int, int], near: float,
                cull_backfaces: bool) -> tuple[Tensor, Tensor]:
    """Edge functions, depth weights and pixel boxes of every (image, face) pair.

    The oriented edge function of edge i at a pixel centre p is
        E_i(p) = ex_i * (py - ay_i) - ey_i * (px - ax_i),
    >= 0 inside the face, with E_0 + E_1 + E_2 = 2A; E_i / 2A are the screen-space barycentrics. The edge
    start a_i is its lexicographically smaller endpoint and (ex_i, ey_i) = +-(b_i - a_i), so faces sharing
    an edge evaluate bit-identical values (of opposite signs) at every pixel centre.

    Args:
        verts_screen: (B, V, 3) pixel x, y and camera depth z.
        faces: (F, 3) long.
        image_size: (H, W).
    Returns:
        table: (19, B, F) float, rows as the ``_AX`` ... ``_BH`` constants (differentiable in the edge and
            depth rows).
        active: (B, F) bool, the face is valid and its box holds at least one pixel centre.
    """
    H, W = image_size
    vt = verts_screen.permute(2, 0, 1)  # (3, B, V)
    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = (vt.index_select(2, faces[:, k]).unbind(0) for k in range(3))
    xs, ys, zs = (x0, x1, x2), (y0, y1, y2), (z0, z1, z2)  # each (B, F)
    area2 = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)

    finite = torch.isfinite(verts_screen).all(-1)  # (B, V)
    valid = (area2 != 0) & (z0 > near) & (z1 > near) & (z2 > near)
    for k in range(3):
        valid &= finite.index_select(1, faces[:, k])
    if cull_backfaces:
        valid &= area2 < 0

    sign = torch.sign(area2).detach()
    a_x, a_y, e_x, e_y = [], [], [], []
    for i in range(3):  # edge i runs v[i + 1] -> v[i + 2]
        xu, yu, xw, yw = xs[(i + 1) % 3], ys[(i + 1) % 3], xs[(i + 2) % 3], ys[(i + 2) % 3]
        u_first = ((xu < xw) | ((xu == xw) & (yu <= yw))).detach()
        ax, ay = torch.where(u_first, xu, xw), torch.where(u_first, yu, yw)
        bx, by = torch.where(u_first, xw, xu), torch.where(u_first, yw, yu)
        s = torch.where(u_first, sign, -sign)
        a_x.append(ax)
        a_y.append(ay)
        e_x.append((bx - ax) * s)
        e_y.append((by - ay) * s)
    one = torch.ones((), dtype=area2.dtype, device=area2.device)
    area_safe = torch.where(valid, area2.abs(), one)
    wz = [1.0 / (torch.where(valid, z, one) * area_safe) for z in zs]

    with torch.no_grad():
        # Pixel centres c with min <= c <= max: j + 0.5 in [xmin, xmax]. Monotone rounding of the float
        # ops below can only widen the box, never drop a covered centre.
        zero = torch.zeros((), dtype=area2.dtype, device=area2.device)
        x_min = torch.where(valid, torch.minimum(torch.minimum(x0, x1), x2), zero)
        x_max = torch.where(valid, torch.maximum(torch.maximum(x0, x1), x2), zero)
        y_min = torch.where(valid, torch.minimum(torch.minimum(y0, y1), y2), zero)
        y_max = torch.where(valid, torch.maximum(torch.maximum(y0, y1), y2), zero)
        x_lo = torch.ceil(x_min - 0.5).clamp_(0, W)
        y_lo = torch.ceil(y_min - 0.5).clamp_(0, H)
        box_w = (torch.floor(x_max - 0.5).clamp_(-1, W - 1) - x_lo + 1).clamp_(min=0)
        box_h = (torch.floor(y_max - 0.5).clamp_(-1, H - 1) - y_lo + 1).clamp_(min=0)
        active = valid & (box_w > 0) & (box_h > 0)

    table = torch.stack(a_x + a_y + e_x + e_y + wz + [x_lo + 0.5, y_lo + 0.5, box_w, box_h])  # (19, B, F)
    return table, active


def _edge_functions(cols: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The three oriented edge functions of faces at pixel centres.

    Args:
        cols: (19, *S) face-table rows, broadcastable against px and py.
        px, py: pixel-centre coordinates.
    Returns:
        E_0, E_1, E_2, each of the broadcast shape, >= 0 inside the face.
    """
    return tuple(cols[_EX + i] * (py - cols[_AY + i]) - cols[_EY + i] * (px - cols[_AX + i]) for i in range(3))


def _scatter_boxes(zkey: Tensor, cols: Tensor, face: Tensor, pix0: Tensor, kh: int, kw: int, width: int) -> None:
    """Z-test all pixel centres of P boxes of one size class and reduce them into the z-buffer.

    Key of a candidate: (float32 bits of 1/z) << 32 | (2^32 - 1 - face), reduced with amax: the nearest
    face wins, ties go to the smaller face index; a key < 2^32 means "no face".

    Args:
        zkey: (B*H*W,) int64 z-buffer keys, updated in place.
        cols: (19, P) face-table rows of the P (image, face) pairs.
        face: (P,) long face index; pix0: (P,) long flat index of each box's first pixel.
        kh, kw: box class (every box has h <= kh, w <= kw; classes up to _N_EXACT are exact sizes).
        width: image width W.
    """
    dev, dt = cols.device, cols.dtype
    c = cols[:, :, None, None]  # (19, P, 1, 1)
    gx = torch.arange(kw, device=dev, dtype=dt)
    gy = torch.arange(kh, device=dev, dtype=dt)[:, None]
    px = c[_XL] + gx  # (P, 1, kw), exact: integers + 0.5
    py = c[_YL] + gy  # (P, kh, 1)
    e = [torch.sub(c[_EX + i] * (py - c[_AY + i]), c[_EY + i] * (px - c[_AX + i])) for i in range(3)]
    low = torch.minimum(e[0], e[1])
    torch.minimum(low, e[2], out=low)
    outside = low < 0  # (P, kh, kw)
    if kw > _N_EXACT:
        outside |= gx >= c[_BW]
    if kh > _N_EXACT:
        outside |= gy >= c[_BH]
    inv = e[0] * c[_WZ]  # 1/z = sum_i E_i / (2A z_i)
    inv.addcmul_(e[1], c[_WZ + 1]).addcmul_(e[2], c[_WZ + 2])
    inv.masked_fill_(outside, 0.0)
    hi = inv.float().view(torch.int32)
    lo = torch.bitwise_not(face.to(torch.int32))[:, None, None].expand_as(hi)  # 2^32 - 1 - face, unsigned
    if sys.byteorder == "little":
        key = torch.stack([lo, hi], dim=-1).view(torch.int64)  # (hi << 32) | lo in one copy
    else:
        key = (hi.to(torch.int64) << 32) | (lo.to(torch.int64) & _FACE_MASK)
    goff = torch.arange(kh, device=dev)[:, None] * width + torch.arange(kw, device=dev)
    pix = pix0[:, None, None] + goff  # (P, kh, kw)
    if kh > _N_EXACT or kw > _N_EXACT:
        pix.clamp_(max=zkey.numel() - 1)  # padding positions may run past the last pixel (their key is empty)
    zkey.scatter_reduce_(0, pix.view(-1), key.view(-1), reduce="amax")


def rasterize(verts_screen: Tensor, faces: Tensor, image_size: tuple[int, int], *, near: float = 1e-3,
              cull_backfaces: bool = False, chunk_size: int = 1 << 20) -> Fragments:
    """Z-buffer rasterisation of a batch of meshes sharing one topology.

    Args:
        verts_screen: (B, V, 3) float; x, y pixel coordinates (pixel (i, j) centred at (j + 0.5, i + 0.5)),
            z positive camera depth.
        faces: (F, 3) long vertex indices.
        image_size: (H, W).
        near: faces with any vertex at z <= near are skipped.
        cull_backfaces: skip faces with a positive signed screen area (facing away from the camera for
            counter-clockwise outward winding, see the module docstring).
        chunk_size: about this many (face, pixel) candidates are evaluated at once (bounds the memory, ~50
            bytes each); the result does not depend on it.
    Returns:
        :class:`Fragments` with pix_to_face (B, H, W), zbuf (B, H, W) (+inf on background), bary
        (B, H, W, 3). ``zbuf`` and ``bary`` are differentiable w.r.t. ``verts_screen``.
    """
    if verts_screen.dim() != 3 or verts_screen.shape[-1] != 3:
        raise ValueError(f"verts_screen must be (B, V, 3), got {tuple(verts_screen.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if not verts_screen.is_floating_point():
        raise TypeError("verts_screen must be a floating-point tensor")
    H, W = int(image_size[0]), int(image_size[1])
    B, F = verts_screen.shape[0], faces.shape[0]
    dev, dt = verts_screen.device, verts_screen.dtype
    faces = faces.to(device=dev, dtype=torch.long)
    if F >= 1 << 31:
        raise ValueError("too many faces for the packed z-buffer key")

    table, active = _face_table(verts_screen, faces, (H, W), near, cull_backfaces)  # (19, B, F), (B, F)
    table = table.reshape(_N_COLS, B * F)
    zkey = torch.zeros(B * H * W, dtype=torch.int64, device=dev)

    with torch.no_grad():
        pair = active.reshape(-1).nonzero().squeeze(1)  # (P,) flat b * F + f
        if pair.numel() > 0:
            classes = _box_classes(max(H, W))
            cls = torch.tensor(classes, device=dev, dtype=dt)
            box = table[_BW:_BH + 1].detach().index_select(1, pair)  # (2, P)
            row_cls = torch.searchsorted(cls, box[1].contiguous())  # smallest class >= box height
            col_cls = torch.searchsorted(cls, box[0].contiguous())
            bucket = row_cls * len(classes) + col_cls
            order = torch.argsort(bucket, stable=True)
            counts = torch.bincount(bucket, minlength=len(classes) ** 2).tolist()
            pair = pair[order]
            cols_all = table.detach().index_select(1, pair)  # (19, P), sorted by bucket
            b, f = pair // F, pair % F
            pix0_all = (b * H + (cols_all[_YL] - 0.5).long()) * W + (cols_all[_XL] - 0.5).long()
            start = 0
            for bucket_id, n in enumerate(counts):
                if n == 0:
                    continue
                kh, kw = classes[bucket_id // len(classes)], classes[bucket_id % len(classes)]
                step = max(1, chunk_size // (kh * kw))
                for s in range(start, start + n, step):
                    e_ = min(s + step, start + n)
                    _scatter_boxes(zkey, cols_all[:, s:e_], f[s:e_], pix0_all[s:e_], kh, kw, W)
                start += n

    # Resolve the winners and recompute their (differentiable) barycentrics and depth.
    hit = zkey >= 1 << 32
    face_flat = torch.where(hit, _FACE_MASK - (zkey & _FACE_MASK), torch.full_like(zkey, -1))
    fg = hit.nonzero().squeeze(1)  # (N,) flat pixel index
    b_fg = torch.div(fg, H * W, rounding_mode="floor")
    rem = fg - b_fg * (H * W)
    i_fg = torch.div(rem, W, rounding_mode="floor")
    j_fg = rem - i_fg * W
    cols = table[:_XL].index_select(1, b_fg * F + face_flat[fg])  # (15, N)
    e = _edge_functions(cols, j_fg.to(dt) + 0.5, i_fg.to(dt) + 0.5)
    w = torch.stack([e[k] * cols[_WZ + k] for k in range(3)], dim=-1)  # (N, 3), sum = 1/z
    inv = w.sum(-1)
    zbuf = torch.full((B * H * W,), math.inf, dtype=dt, device=dev).index_put((fg,), 1.0 / inv)
    bary = torch.zeros((B * H * W, 3), dtype=dt, device=dev).index_put((fg,), w / inv[:, None])
    return Fragments(pix_to_face=face_flat.view(B, H, W), zbuf=zbuf.view(B, H, W), bary=bary.view(B, H, W, 3))


def interpolate_vertex_attributes(fragments: Fragments, faces: Tensor, vert_attrs: Tensor) -> Tensor:
    """Barycentric interpolation of per-vertex attributes at every pixel.

    Args:
        fragments: output of :func:`rasterize` for B images of size (H, W).
        faces: (F, 3) long, the topology that was rasterised.
        vert_attrs: (B, V, C) or (V, C) (shared by the batch); integer attributes are converted to the
            barycentrics' float dtype.
    Returns:
        (B, H, W, C), zeros on background.
    """
    if not vert_attrs.is_floating_point():
        vert_attrs = vert_attrs.to(fragments.bary.dtype)
    p2f = fragments.pix_to_face
    B, H, W = p2f.shape
    if vert_attrs.dim() not in (2, 3):
        raise ValueError(f"vert_attrs must be (V, C) or (B, V, C), got {tuple(vert_attrs.shape)}")
    if vert_attrs.dim() == 3 and vert_attrs.shape[0] != B:
        raise ValueError(f"vert_attrs batch {vert_attrs.shape[0]} != fragments batch {B}")
    # Only the covered pixels are interpolated (a body covers about a tenth of a picture; interpolating every
    # pixel and masking took most of the shading time), then scattered into a zero map.
    fg = (p2f.reshape(-1) >= 0).nonzero().squeeze(1)                          # (N,) flat pixel index
    vidx = faces.to(device=p2f.device, dtype=torch.long)[p2f.reshape(-1)[fg]]   # (N, 3)
    if vert_attrs.dim() == 2:
        vals = vert_attrs[vidx]                                                 # (N, 3, C)
    else:
        V = vert_attrs.shape[1]
        vals = vert_attrs.reshape(B * V, -1)[vidx + (torch.div(fg, H * W, rounding_mode="floor") * V)[:, None]]
    bary = fragments.bary.reshape(-1, 3)[fg]
    out = (bary.to(vals.dtype)[..., None] * vals).sum(-2)                      # (N, C)
    full = torch.zeros(B * H * W, out.shape[-1], dtype=out.dtype, device=out.device).index_put((fg,), out)
    return full.view(B, H, W, -1)
