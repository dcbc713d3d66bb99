"""Test scenes for the rasteriser and renderer: an icosphere, a pinhole projection, quads and the
analytic area of a projected sphere."""
from __future__ import annotations

import math

import torch


FOCAL = 200.0
SIZE = 224


def icosphere(level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere: (V, 3) float64 vertices on the sphere, (20 * 4^level, 3) long faces wound
    counter-clockwise around the outward normal."""
    t = (1 + 5 ** 0.5) / 2
    v = torch.tensor([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
                      [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
                     dtype=torch.float64)
    f = torch.tensor([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                      [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                      [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    v = v / v.norm(dim=1, keepdim=True)
    for _ in range(level):
        edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(dim=1).values
        uniq, inv = torch.unique(edges, dim=0, return_inverse=True)
        mid = v[uniq].mean(1)
        mid = mid / mid.norm(dim=1, keepdim=True)
        ab, bc, ca = (inv.view(3, -1) + v.shape[0]).unbind(0)
        v = torch.cat([v, mid])
        a, b, c = f.unbind(1)
        f = torch.cat([torch.stack(x, 1) for x in ([a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca])])
    return v, f


def project(verts_cam: torch.Tensor, focal: float = FOCAL, size: tuple[int, int] = (SIZE, SIZE)) -> torch.Tensor:
    """(..., 3) camera frame -> (..., 3) pixel x, y (principal point at the image centre) and depth."""
    x, y, z = verts_cam.unbind(-1)
    return torch.stack([focal * x / z + size[1] / 2, focal * y / z + size[0] / 2, z], -1)


def random_rotations(n: int, seed: int) -> torch.Tensor:
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).view(n, 3, 3)


def sphere_scene(dists, radius=1.0, level=4, seed=0):
    """Icospheres (randomly rotated) centred on the optical axis at the given distances.
    Returns verts_cam (B, V, 3) float32, faces."""
    v, f = icosphere(level)
    R = random_rotations(len(dists), seed)
    cam = radius * v[None] @ R.transpose(1, 2) + torch.tensor([[0.0, 0.0, d] for d in dists],
                                                               dtype=torch.float64)[:, None]
    return cam.float(), f


def quad(x0, y0, x1, y1, z, face_offset=0):
    """Screen-space axis-aligned quad at constant depth: (4, 3) verts, (2, 3) faces (front-facing)."""
    v = torch.tensor([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=torch.float32)
    f = torch.tensor([[0, 3, 2], [0, 2, 1]]) + face_offset
    return v, f


def holes(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> count of background pixels whose 4 neighbours are all foreground."""
    m = mask
    inner = m[:, :-2, 1:-1] & m[:, 2:, 1:-1] & m[:, 1:-1, :-2] & m[:, 1:-1, 2:]
    return (inner & ~m[:, 1:-1, 1:-1]).sum()


def analytic_sphere_area(d: float, r: float = 1.0, f: float = FOCAL) -> float:
    return math.pi * f ** 2 * r ** 2 / (d ** 2 - r ** 2)


# ------------------------------------------------------------------------------------------------ sphere
