"""What every network returns to its LightningModule: one typed ``Prediction``.

A network maps an ImageNet-normalised crop (B, 3, H, W) (plus, for BiGraph, the RoI joints (B, 12, 2)) to a
``Prediction``. The shared base (``lightning_modules.base``) reads only the model-independent fields; the
model-specific ones are read by that model's loss, its tests and the picture tools.

Model-independent:
    iterations   parametric estimates, one per iteration / feedback level, the last one final
                 (HMR: its 3 IEF iterations; PyMAF: its T levels, the paper's M1..MT; BiGraph: one, from its
                 SMPL-parameter regressor).
    initial      the mean-parameter start Theta_0 (PyMAF's M0) where the network starts from it, else None.
    vertices_np  (B, V, 3) a non-parametric mesh (BiGraph's graph vertices, its tables' "np" mesh), else None.
                 With it the model's final mesh is this one, and the body model on the last estimate is the
                 "p" mesh; without it, the final mesh is the body model on the last estimate.

PyMAF only:
    sampled_points  per level, (B, N_t, 2) the normalised points its features were sampled at (None for
                    global feedback).
    iuv             the auxiliary head's output at 56 x 56 (``nets.iuv_head``), training only.
BiGraph only:
    vertices_coarse (B, N_m, 3) the graph's own vertices before up-sampling.
    skeleton_joints (B, 12, 3) the skeleton branch's 3D joints.
    roi_boxes       (B, 12, 4) the RoI boxes around the input joints (localised skeleton input only).
    fusion_adjacency  (A_jv (12, N_m), A_vj (N_m, 12)) the learnt fusion graph's blocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from torch import Tensor


@dataclass
class Estimate:
    """One parametric estimate: ``pose_rotmat`` (B, 24, 3, 3), ``betas`` (B, 10), ``cam`` (B, 3)
    weak-perspective (s, tx, ty) in the normalised crop; ``pose_6d`` (B, 144) where the pose was regressed
    in the 6D representation."""

    pose_rotmat: Tensor
    betas: Tensor
    cam: Tensor
    pose_6d: Optional[Tensor] = None


@dataclass
class Prediction:
    """A network's output (module docstring)."""

    iterations: list[Estimate]
    initial: Optional[Estimate] = None
    vertices_np: Optional[Tensor] = None
    sampled_points: list[Optional[Tensor]] = field(default_factory=list)
    iuv: Optional[dict[str, Tensor]] = None
    vertices_coarse: Optional[Tensor] = None
    skeleton_joints: Optional[Tensor] = None
    roi_boxes: Optional[Tensor] = None
    fusion_adjacency: Optional[tuple[Tensor, Tensor]] = None

    def __post_init__(self) -> None:
        if not self.iterations:
            raise ValueError("a Prediction needs at least one parametric estimate in 'iterations'")

    @property
    def final(self) -> Estimate:
        """The last parametric estimate."""
        return self.iterations[-1]

    @property
    def mesh_suffixes(self) -> tuple[str, ...]:
        """The evaluated meshes' key suffixes: ``("_np", "_p")`` with a non-parametric mesh, else ``("",)``."""
        return ("_np", "_p") if self.vertices_np is not None else ("",)

    def named_tensors(self) -> dict[str, Tensor]:
        """Every tensor the prediction holds, by a dotted path: ``iterations.0.betas``, ``initial.cam``,
        ``vertices_np``, ``iuv.index``, ``fusion_adjacency.1``, ``sampled_points.2`` ..."""
        out: dict[str, Tensor] = {}

        def add(path: str, value) -> None:
            if isinstance(value, Tensor):
                out[path] = value
            elif isinstance(value, Estimate):
                for f in fields(value):
                    add(f"{path}.{f.name}", getattr(value, f.name))
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    add(f"{path}.{i}", item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    add(f"{path}.{key}", item)

        for f in fields(self):
            add(f.name, getattr(self, f.name))
        return out

    def present(self) -> set[str]:
        """Names of the fields that hold something (not None, not an empty list)."""
        def holds(value) -> bool:
            return value is not None and not (isinstance(value, list) and not value)
        return {f.name for f in fields(self) if holds(getattr(self, f.name))}
