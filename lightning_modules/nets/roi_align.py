"""RoI Align (He et al., Mask R-CNN 2017) as two small matrix products per image.

BiGraph crops, for every skeleton joint, a feature patch centred on the estimated 2D joint from several
ResNet-50 stages with RoI Align. torchvision's ``ops.roi_align`` cannot be used with the suite's CPU torch
(see ``resnet.py``), so this module reproduces its semantics exactly (checked against torchvision's CPU
kernel, ``torchvision/csrc/ops/cpu/roi_align_kernel.cpp`` and ``roi_align_common.h``):

For a box (x1, y1, x2, y2) in input-image pixels, ``spatial_scale`` s (1 / stride of the feature map),
output size (PH, PW) and ``aligned``:
    offset = 0.5 if aligned else 0                        (aligned: pixel centres sit at integer + 0.5)
    start = (x1 s - offset, y1 s - offset), size = (x2 s - offset, y2 s - offset) - start
    if not aligned: size = max(size, 1)                    (aligned boxes keep their size, even <= 0)
    bin = size / (PW, PH)
    samples per bin g_h x g_w = sampling_ratio each if sampling_ratio > 0,
        else ceil(size_h / PH) x ceil(size_w / PW) per box (adaptive; <= 0 samples gives a zero output)
    sample (iy, ix) of bin (ph, pw): y = start_y + ph bin_h + (iy + 0.5) bin_h / g_h  (x likewise)
    value(y, x) = 0 if not (-1 <= y <= H and -1 <= x <= W)      (NaN coordinates count as outside)
                  else bilinear interpolation at (clamp(y, 0, H - 1), clamp(x, 0, W - 1))
    output[ph, pw] = sum of the bin's sample values / max(g_h g_w, 1).
Feature pixel (i, j) is the value at integer coordinates (y, x) = (i, j).

Every factor of that sum separates into a y part and an x part: the samples form a grid (ys x xs), the
outside rule is a product of a y test and an x test, bilinear interpolation at a clamped point weighs pixel
(i, j) by hat(i - y) hat(j - x) with hat(t) = max(0, 1 - |t|), and 1 / (g_h g_w) = (1 / g_h)(1 / g_w). So
    output[ph, pw] = sum_ij  Ry[ph, i] F[i, j] Rx[pw, j],   Ry[ph, i] = (1 / g_h) sum_iy in_y hat(i - y_iy)
(Rx likewise): per image, one product of the (C H, W) map with the boxes' (W, N PW) x weights and one
small contraction over H. Nothing per sample is materialised (the ``grid_sample`` formulation this replaced
gathered every sample of every channel). BiGraph's 12 joint boxes on c2..c5, 2-core CPU: 3.5 -> 2.8 ms for one
image, 110 -> 44 ms for 32 (most of what is left at batch 1 is the small operations' overhead). The result is
differentiable with respect to the features (the adjoint is the bilinear scatter torchvision's backward
does) and runs on any device. Like torchvision, no gradient flows to the boxes: they are detached.
(K, 5) rois are padded to the largest per-image count. In float32 the sample coordinates carry float32
rounding (~1e-7 relative), as torchvision's float32 kernel does.

Export. The adaptive sample count is data (the largest box's), which an exported graph cannot size a tensor by:
while exporting (``torch.compiler.is_exporting()``) the samples per bin are capped at those of a box twice the
feature map's side. Every smaller box is sampled exactly as in eager mode (BiGraph's boxes, bone-length squares
around joints of the crop, are far smaller); a larger one would average fewer samples.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    ph, pw = (size, size) if isinstance(size, int) else size
    if ph < 1 or pw < 1:
        raise ValueError(f"output_size must be positive, got {size}")
    return int(ph), int(pw)


def boxes_from_centers(centers: Tensor, side: Tensor | float) -> Tensor:
    """Square boxes centred on points: centers (B, N, 2) in pixels -> (B, N, 4) as (x1, y1, x2, y2) =
    centre -/+ side / 2, side a scalar, per image (B,) or per point (B, N) (aligned from the left).
    BiGraph: side = the image's mean estimated bone length."""
    side = torch.as_tensor(side, dtype=centers.dtype, device=centers.device)
    side = side.reshape(side.shape + (1,) * (centers.dim() - 1 - side.dim()))   # (B,) -> (B, 1)
    half = side[..., None] / 2
    return torch.cat([centers - half, centers + half], dim=-1)


def _axis_samples(start: Tensor, size: Tensor, bins: int, grid: Tensor,
                  max_grid: int) -> tuple[Tensor, Tensor]:
    """Sample coordinates along one axis and whether each sample exists.

    start, size: (B, N) box start and extent in feature pixels; grid: (B, N) samples per bin (integer
    valued, may be <= 0); max_grid: the largest of them (>= 1). Returns coords (B, N, bins, max_grid)
    and exists (B, N, bins, max_grid), false for sample indices >= the box's own grid.
    """
    bin_size = size / bins                                                     # (B, N)
    per_bin = grid.clamp_min(1)
    b = torch.arange(bins, dtype=start.dtype, device=start.device)
    i = torch.arange(max_grid, dtype=start.dtype, device=start.device)
    coords = (start[..., None, None] + b[:, None] * bin_size[..., None, None]
              + (i + 0.5) * bin_size[..., None, None] / per_bin[..., None, None])
    exists = i < grid[..., None, None]
    return coords, exists.expand_as(coords)


def _axis_weights(coords: Tensor, exists: Tensor, length: int, per_bin: Tensor) -> Tensor:
    """One axis's interpolation weights, summed over a bin's samples (module docstring's Ry / Rx).

    Args:
        coords, exists: (B, N, bins, g) sample coordinates in feature pixels and whether each exists.
        length: pixels along the axis.
        per_bin: (B, N) samples per bin along the axis (integer valued, may be <= 0).
    Returns:
        (B, N, bins, length): sum over the bin's samples of hat(pixel - clamp(coord, 0, length - 1)) for the
        samples inside [-1, length] (NaN or non-existent samples weigh 0), divided by max(per_bin, 1).
    """
    inside = exists & (coords >= -1) & (coords <= length)
    clamped = torch.where(inside, coords, torch.zeros_like(coords)).clamp(0, length - 1)
    pixels = torch.arange(length, dtype=coords.dtype, device=coords.device)
    hat = (1.0 - (pixels - clamped[..., None]).abs()).clamp_min(0.0)          # (B, N, bins, g, length)
    weights = (hat * inside[..., None].to(coords.dtype)).sum(dim=-2)            # (B, N, bins, length)
    return weights / per_bin.clamp_min(1.0)[..., None, None]


def _export_grid_bound(length: int, bins: int) -> int:
    """The samples per bin an exported graph allows along an axis: those of a box twice the feature map."""
    return max(1, -(-2 * length // bins))


def _roi_align_images(features: Tensor, boxes: Tensor, output_size: tuple[int, int],
                      spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
    """RoI Align of per-image boxes: features (B, C, H, W), boxes (B, N, 4) -> (B, N, C, PH, PW)."""
    ph, pw = output_size
    bsz, channels, height, width = features.shape
    n = boxes.shape[1]
    boxes = boxes.detach().to(features.dtype)
    offset = 0.5 if aligned else 0.0
    start = boxes[..., :2] * spatial_scale - offset                            # (B, N, 2) as (x, y)
    size = boxes[..., 2:] * spatial_scale - offset - start
    if not aligned:
        size = size.clamp_min(1.0)
    if sampling_ratio > 0:
        grid_x = grid_y = torch.full_like(size[..., 0], sampling_ratio)
        max_gx = max_gy = sampling_ratio
    else:
        grid_x = torch.nan_to_num(torch.ceil(size[..., 0] / pw), nan=0.0)      # NaN box: no samples
        grid_y = torch.nan_to_num(torch.ceil(size[..., 1] / ph), nan=0.0)
        if torch.compiler.is_exporting():   # module docstring, "Export": a fixed bound, no host sync
            max_gx, max_gy = _export_grid_bound(width, pw), _export_grid_bound(height, ph)
            grid_x, grid_y = grid_x.clamp(max=max_gx), grid_y.clamp(max=max_gy)
        else:
            max_gx = max(int(grid_x.max()), 1) if n else 1                     # host sync (adaptive only)
            max_gy = max(int(grid_y.max()), 1) if n else 1
    xs, x_exists = _axis_samples(start[..., 0], size[..., 0], pw, grid_x, max_gx)   # (B, N, PW, gx)
    ys, y_exists = _axis_samples(start[..., 1], size[..., 1], ph, grid_y, max_gy)   # (B, N, PH, gy)
    rx = _axis_weights(xs, x_exists, width, grid_x)                            # (B, N, PW, W)
    ry = _axis_weights(ys, y_exists, height, grid_y)                           # (B, N, PH, H)
    # Contract W with one batched matrix product, then H: (B, C H, W) @ (B, W, N PW) -> (B, C, H, N, PW).
    along_x = torch.bmm(features.reshape(bsz, channels * height, width), rx.reshape(bsz, n * pw, width).transpose(1, 2))
    # ... then H as a second batched product, (B N, C PW, H) @ (B N, H, PH) (an einsum here ran 8x slower in
    # ONNX Runtime, which BiGraph's exported graph uses).
    along_x = along_x.reshape(bsz, channels, height, n, pw).permute(0, 3, 1, 4, 2)   # (B, N, C, PW, H)
    out = along_x.reshape(bsz, n, channels * pw, height) @ ry.transpose(-1, -2)      # (B, N, C PW, PH)
    return out.reshape(bsz, n, channels, pw, ph).transpose(-1, -2)            # (B, N, C, PH, PW)


def _rois_to_slots(rois: Tensor, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Group (K, 5) rois by image: -> boxes (B, M, 4) padded with zero boxes (M = most rois of one
    image), and for every roi its image index (K,) and slot (K,) in that image's row."""
    image = rois[:, 0].long()                                                  # truncation, as torchvision
    if rois.numel() and (image.min() < 0 or image.max() >= batch_size):
        raise ValueError(f"roi batch indices must lie in [0, {batch_size}), got "
                         f"[{int(image.min())}, {int(image.max())}]")
    counts = torch.bincount(image, minlength=batch_size)                      # (B,)
    first = torch.cumsum(counts, 0) - counts                                   # (B,) first sorted position
    order = torch.argsort(image, stable=True)
    slot = torch.empty_like(image)
    slot[order] = torch.arange(len(image), device=rois.device) - first[image[order]]
    most = int(counts.max()) if rois.numel() else 0
    boxes = rois.new_zeros(batch_size, most, 4)
    boxes[image, slot] = rois[:, 1:]
    return boxes, image, slot


def roi_align(features: Tensor, boxes: Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = True) -> Tensor:
    """RoI Align with torchvision's ``ops.roi_align`` semantics (module docstring).

    Args:
        features: (B, C, H, W) feature map.
        boxes: (K, 5) rois (batch_index, x1, y1, x2, y2), or (B, N, 4) per-image boxes (x1, y1, x2, y2),
            in input-image pixels; ``spatial_scale`` maps them to feature pixels (1/4 for ResNet c2,
            1/32 for c5). Detached: no gradient flows to them.
        output_size: PH, or (PH, PW).
        sampling_ratio: samples per bin along each axis; <= 0 adapts it per box (ceil(box / output)),
            which needs one host synchronisation.
        aligned: shift boxes by -0.5 feature pixel (the correct alignment; torchvision's default is False,
            this suite's is True).
    Returns:
        (K, C, PH, PW) for (K, 5) rois, (B, N, C, PH, PW) for (B, N, 4) boxes.
    """
    if features.dim() != 4:
        raise ValueError(f"features must have shape (B, C, H, W), got {tuple(features.shape)}")
    size = _pair(output_size)
    if boxes.dim() == 3 and boxes.shape[-1] == 4:
        if boxes.shape[0] != features.shape[0]:
            raise ValueError(f"per-image boxes {tuple(boxes.shape)} do not match the batch of "
                             f"features {tuple(features.shape)}")
        return _roi_align_images(features, boxes, size, spatial_scale, sampling_ratio, aligned)
    if boxes.dim() != 2 or boxes.shape[-1] != 5:
        raise ValueError(f"boxes must have shape (K, 5) or (B, N, 4), got {tuple(boxes.shape)}")
    slots, image, slot = _rois_to_slots(boxes.detach(), features.shape[0])
    out = _roi_align_images(features, slots, size, spatial_scale, sampling_ratio, aligned)
    return out[image, slot]


class RoIAlign(nn.Module):
    """Module form of ``roi_align`` (the configuration lives in the module, as torchvision's ``RoIAlign``)."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = True) -> None:
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features: Tensor, boxes: Tensor) -> Tensor:
        """features (B, C, H, W), boxes (K, 5) or (B, N, 4) -> (K, C, PH, PW) or (B, N, C, PH, PW)."""
        return roi_align(features, boxes, self.output_size, self.spatial_scale, self.sampling_ratio,
                         self.aligned)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
