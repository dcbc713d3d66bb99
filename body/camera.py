"""Camera and crop conventions (README, "Conventions"), as pure batched functions.

Camera frame: OpenCV's, x right, y DOWN, z forward (into the scene). Body-model output is used in
this frame directly, as SPIN / PyMAF do: their ground-truth global orientations (H36M, 3DPW, UP-3D
fits in SPIN-format files) are already expressed in the camera frame, so an upright person has a
global orientation near 180 deg about x (SMPL's own frame is y up, face towards +z). The networks
start from the same kind of mean orientation, so they learn in this frame too. Projection is a
plain pinhole: u = f_x x / z + c_x, v = f_y y / z + c_y, no clamping of z (points must lie in front).

Weak-perspective camera (s, tx, ty), as the networks predict it: the camera translation is
t = (tx, ty, 2 f / (img_res s + 1e-9)) with f = 5000 px and the principal point at the crop centre,
so that a point at depth ~0 in the body frame lands at normalised crop coordinates s (x + tx, y + ty).

Pixel coordinates are continuous: pixel i covers [i, i + 1) and its centre is at i + 0.5, so an image
of width W spans [0, W] and a horizontal flip is x -> W - x. Normalised coordinates map the crop's
edges to -1 and +1:  x_norm = 2 x / res - 1,  which is ``torch.nn.functional.grid_sample``'s
``align_corners=False`` convention and makes a flip x_norm -> -x_norm. (cv2.warpAffine uses the
pixel-centre-at-integer convention; the difference is half a pixel.) PyMAF's point features read feature
maps at these normalised points with ``align_corners=True`` (its ``MAF_Extractor``; the suite's
``lightning_modules/nets/mesh_aligned.py`` does the same), i.e. -1 / +1 on the border pixels' centres.

Crops (SPIN): square, centred at ``center`` (x, y) in original-image pixels, side 200 * scale pixels,
resampled to out_res x out_res. A positive ``rotation_deg`` rotates the image content
counter-clockwise as displayed (SPIN's augmentation); the matching 3D rotation of camera-frame points
(and of the global orientation, R_global -> R_z R_global) is ``crop_rotation_3d``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

FOCAL_LENGTH: float = 5000.0
IMG_RES: int = 224
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _shape_error(name: str, expected: str, x: Tensor) -> ValueError:
    return ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")


# ----------------------------------------------------------------------------------------------
# Weak perspective <-> translation
# ----------------------------------------------------------------------------------------------
def weak_perspective_to_translation(cam: Tensor, focal_length: float = FOCAL_LENGTH,
                                    img_res: float = IMG_RES) -> Tensor:
    """Weak-perspective camera to a camera translation.

    Args:
        cam: (..., 3) = (s, tx, ty).
    Returns:
        (..., 3) = (tx, ty, 2 f / (img_res s + 1e-9)).
    """
    if cam.shape[-1:] != (3,):
        raise _shape_error("cam", "(..., 3) = (s, tx, ty)", cam)
    s, tx, ty = cam.unbind(-1)
    return torch.stack([tx, ty, 2.0 * focal_length / (img_res * s + 1e-9)], dim=-1)


def translation_to_weak_perspective(translation: Tensor, focal_length: float = FOCAL_LENGTH,
                                    img_res: float = IMG_RES) -> Tensor:
    """Inverse of ``weak_perspective_to_translation``.

    Args:
        translation: (..., 3) = (tx, ty, tz), tz > 0.
    Returns:
        (..., 3) = (s, tx, ty) with s = (2 f / tz - 1e-9) / img_res.
    """
    if translation.shape[-1:] != (3,):
        raise _shape_error("translation", "(..., 3)", translation)
    tx, ty, tz = translation.unbind(-1)
    return torch.stack([(2.0 * focal_length / tz - 1e-9) / img_res, tx, ty], dim=-1)


# ----------------------------------------------------------------------------------------------
# Projection
# ----------------------------------------------------------------------------------------------
def perspective_projection(points: Tensor, translation: Tensor,
                           focal_length: float | Tensor = FOCAL_LENGTH,
                           camera_center: Tensor | None = None,
                           rotation: Tensor | None = None) -> Tensor:
    """Pinhole projection of 3D points to pixel coordinates (x right, y down).

    p = R X + t;  u = f_x p_x / p_z + c_x;  v = f_y p_y / p_z + c_y.

    Args:
        points: (B, N, 3) points in the body/world frame.
        translation: (B, 3) camera translation.
        focal_length: float, (B,) or (B, 2) = (f_x, f_y), in pixels.
        camera_center: (2,) or (B, 2) principal point in pixels; None = (0, 0).
        rotation: optional (B, 3, 3) camera rotation; None = identity.
    Returns:
        (B, N, 2) pixel coordinates.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise _shape_error("points", "(B, N, 3)", points)
    b = points.shape[0]
    if translation.shape != (b, 3):
        raise _shape_error("translation", f"(B, 3) = ({b}, 3)", translation)
    if rotation is not None:
        if rotation.shape != (b, 3, 3):
            raise _shape_error("rotation", f"(B, 3, 3) = ({b}, 3, 3)", rotation)
        points = points @ rotation.transpose(1, 2)
    p = points + translation[:, None]

    f = torch.as_tensor(focal_length, dtype=points.dtype, device=points.device)
    if f.dim() == 0:
        f = f.expand(b, 2)
    elif f.shape == (b,):
        f = f[:, None].expand(b, 2)
    elif f.shape != (b, 2):
        raise _shape_error("focal_length", f"a float, (B,) or (B, 2) with B = {b}", f)

    if camera_center is None:
        c = points.new_zeros(b, 2)
    else:
        c = torch.as_tensor(camera_center, dtype=points.dtype, device=points.device)
        if c.shape == (2,):
            c = c.expand(b, 2)
        elif c.shape != (b, 2):
            raise _shape_error("camera_center", f"(2,) or (B, 2) with B = {b}", c)

    return f[:, None] * p[..., :2] / p[..., 2:3] + c[:, None]


def project_to_normalized_crop(points: Tensor, cam_weak: Tensor, img_res: float = IMG_RES,
                               focal_length: float = FOCAL_LENGTH) -> Tensor:
    """Project body-frame points with a predicted weak-perspective camera to [-1, 1] crop coordinates.

    The PyMAF / SPIN convention: perspective projection with t from ``weak_perspective_to_translation``
    and the principal point at the crop centre, then divided by img_res / 2. Equals
    ``pixels_to_normalized(perspective_projection(..., camera_center=(res/2, res/2)), res)``.

    Args:
        points: (B, N, 3).
        cam_weak: (B, 3) = (s, tx, ty).
    Returns:
        (B, N, 2) normalised crop coordinates.
    """
    if cam_weak.dim() != 2 or cam_weak.shape[-1] != 3:
        raise _shape_error("cam_weak", "(B, 3) = (s, tx, ty)", cam_weak)
    t = weak_perspective_to_translation(cam_weak, focal_length, img_res)
    return perspective_projection(points, t, focal_length) / (img_res / 2.0)


# ----------------------------------------------------------------------------------------------
# Pixel <-> normalised coordinates
# ----------------------------------------------------------------------------------------------
def pixels_to_normalized(points: Tensor, res: float) -> Tensor:
    """Continuous pixel coordinates of a res x res crop to [-1, 1]: x_norm = 2 x / res - 1.

    Args:
        points: (..., C) with C >= 2; channels after x, y (e.g. confidence) are kept as they are.
    Returns:
        (..., C).
    """
    if points.dim() < 1 or points.shape[-1] < 2:
        raise _shape_error("points", "(..., C>=2)", points)
    return torch.cat([2.0 * points[..., :2] / res - 1.0, points[..., 2:]], dim=-1)


def normalized_to_pixels(points: Tensor, res: float) -> Tensor:
    """Inverse of ``pixels_to_normalized``: x = (x_norm + 1) res / 2.

    Args:
        points: (..., C) with C >= 2; channels after x, y are kept as they are.
    Returns:
        (..., C).
    """
    if points.dim() < 1 or points.shape[-1] < 2:
        raise _shape_error("points", "(..., C>=2)", points)
    return torch.cat([(points[..., :2] + 1.0) * (res / 2.0), points[..., 2:]], dim=-1)


# ----------------------------------------------------------------------------------------------
# Crop affine transforms
# ----------------------------------------------------------------------------------------------
def _batch_vector(x: Tensor | float | None, b: int, like: Tensor, name: str) -> Tensor:
    """A float, None (0) or (B,) tensor as a (B,) tensor of ``like``'s dtype/device."""
    if x is None:
        return like.new_zeros(b)
    v = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        return v.expand(b)
    if v.shape != (b,):
        raise _shape_error(name, f"a float or (B,) with B = {b}", v)
    return v


def _rotation_2d(angle_rad: Tensor) -> Tensor:
    """(B,) angles to (B, 2, 2) matrices [[cos, -sin], [sin, cos]]."""
    c, s = torch.cos(angle_rad), torch.sin(angle_rad)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def crop_affine(center: Tensor, scale: Tensor | float, out_res: float,
                rotation_deg: Tensor | float | None = None) -> Tensor:
    """Affine map from original-image pixels to crop pixels (SPIN crop, continuous coordinates).

    crop = (out_res / (200 scale)) R(-rotation) (x - center) + out_res / 2, with R(a) the 2D rotation
    [[cos a, -sin a], [sin a, cos a]]; in y-down pixels a positive ``rotation_deg`` turns the content
    counter-clockwise on screen about the crop centre.

    Args:
        center: (B, 2) box centre (x, y) in original-image pixels.
        scale: (B,) or float; box side = 200 * scale pixels.
        out_res: crop side in pixels.
        rotation_deg: None, float or (B,) in degrees.
    Returns:
        (B, 2, 3) matrices A; crop points = A[:, :, :2] @ x + A[:, :, 2].
    """
    if center.dim() != 2 or center.shape[-1] != 2:
        raise _shape_error("center", "(B, 2)", center)
    b = center.shape[0]
    scale = _batch_vector(scale, b, center, "scale")
    rot = _batch_vector(rotation_deg, b, center, "rotation_deg")
    k = out_res / (200.0 * scale)                                             # (B,)
    lin = k[:, None, None] * _rotation_2d(-rot * (math.pi / 180.0))           # (B, 2, 2)
    trans = out_res / 2.0 - torch.einsum("bij,bj->bi", lin, center)           # (B, 2)
    return torch.cat([lin, trans[:, :, None]], dim=2)


def invert_affine(affine: Tensor) -> Tensor:
    """Inverse of 2D affine maps.

    Args:
        affine: (B, 2, 3) = [M | t].
    Returns:
        (B, 2, 3) = [M^-1 | -M^-1 t].
    """
    if affine.dim() != 3 or affine.shape[1:] != (2, 3):
        raise _shape_error("affine", "(B, 2, 3)", affine)
    inv = torch.linalg.inv(affine[:, :, :2])
    return torch.cat([inv, -inv @ affine[:, :, 2:]], dim=2)


def apply_affine(points: Tensor, affine: Tensor) -> Tensor:
    """Apply 2D affine maps to points.

    Args:
        points: (B, N, C) with C >= 2; channels after x, y (e.g. confidence) are kept as they are.
        affine: (B, 2, 3).
    Returns:
        (B, N, C).
    """
    if points.dim() != 3 or points.shape[-1] < 2:
        raise _shape_error("points", "(B, N, C>=2)", points)
    if affine.shape != (points.shape[0], 2, 3):
        raise _shape_error("affine", f"(B, 2, 3) with B = {points.shape[0]}", affine)
    xy = points[..., :2] @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]
    return torch.cat([xy, points[..., 2:]], dim=-1)


def crop_rotation_3d(rotation_deg: Tensor) -> Tensor:
    """3D rotation of camera-frame points that matches a crop rotation of ``rotation_deg``.

    A rotation about the camera's z axis by -rotation (camera frame y down), so projecting the rotated
    points with the principal point at the crop centre equals rotating the projections with
    ``crop_affine``. Apply it to the global orientation as R_global -> R @ R_global.

    Args:
        rotation_deg: (B,) degrees.
    Returns:
        (B, 3, 3).
    """
    if rotation_deg.dim() != 1:
        raise _shape_error("rotation_deg", "(B,)", rotation_deg)
    r2 = _rotation_2d(-rotation_deg * (math.pi / 180.0))
    out = torch.zeros(*rotation_deg.shape, 3, 3, dtype=rotation_deg.dtype, device=rotation_deg.device)
    out[:, :2, :2] = r2
    out[:, 2, 2] = 1.0
    return out


# ----------------------------------------------------------------------------------------------
# Translation from 2D-3D correspondences
# ----------------------------------------------------------------------------------------------
def estimate_translation(points: Tensor, keypoints: Tensor, focal_length: Tensor | float,
                         camera_center: Tensor, weights: Tensor | None = None) -> Tensor:
    """Camera translation t that best projects ``points + t`` onto ``keypoints`` (weighted least squares).

    Linear in t: u - c_x = f_x (X + t_x) / (Z + t_z) gives f_x t_x - (u - c_x) t_z = (u - c_x) Z - f_x X,
    and the same for y; the rows are weighted by ``weights`` (e.g. keypoint confidences). This is the
    translation SPIN computes for ground-truth SMPL fits (with f = 5000 and the crop centre).

    Args:
        points: (B, N, 3) body-frame points (e.g. joints of a posed body model without translation).
        keypoints: (B, N, 2) pixels.
        focal_length: float, (B,) or (B, 2).
        camera_center: (2,) or (B, 2) pixels.
        weights: (B, N) >= 0; None = all ones. At least 2 weighted points per sample are needed.
    Returns:
        (B, 3).
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise _shape_error("points", "(B, N, 3)", points)
    b, n = points.shape[:2]
    if keypoints.shape != (b, n, 2):
        raise _shape_error("keypoints", f"(B, N, 2) = ({b}, {n}, 2)", keypoints)
    dt = torch.float64
    p, k = points.to(dt), keypoints.to(dt)
    f = torch.as_tensor(focal_length, dtype=dt, device=p.device)
    f = f.expand(b, 2) if f.dim() == 0 else (f[:, None].expand(b, 2) if f.shape == (b,) else f)
    c = torch.as_tensor(camera_center, dtype=dt, device=p.device).expand(b, 2)
    w = torch.ones(b, n, dtype=dt, device=p.device) if weights is None else weights.to(dt)
    d = k - c[:, None]                                                         # (B, N, 2)
    zeros = torch.zeros_like(d[..., 0])
    rows_x = torch.stack([f[:, None, 0].expand(b, n), zeros, -d[..., 0]], -1)  # (B, N, 3)
    rows_y = torch.stack([zeros, f[:, None, 1].expand(b, n), -d[..., 1]], -1)
    a = torch.cat([rows_x, rows_y], 1) * torch.cat([w, w], 1)[..., None]      # (B, 2N, 3)
    rhs = torch.cat([d[..., 0] * p[..., 2] - f[:, None, 0] * p[..., 0],
                     d[..., 1] * p[..., 2] - f[:, None, 1] * p[..., 1]], 1) * torch.cat([w, w], 1)
    t = torch.linalg.lstsq(a, rhs[..., None]).solution[..., 0]
    return t.to(points.dtype)
