"""A trained model's inference graph as ONNX, and running it with ONNX Runtime.

    img     (B, 3, R, R) uint8 RGB network input (``lightning_modules.predictor.Predictor.network_input``)
    joints  (B, 12, 3) float32 BiGraph only: its 12 detected joints in normalised input coordinates [-1, 1] +
            confidence (0 = missing), as ``prepare_sample`` gives ``bigraph_joints_2d``
 ->
    vertices (B, V, 3), joints_3d (B, 24, 3), pose_rotmat (B, 24, 3, 3), betas (B, 10), cam (B, 3) (the model's
    final output, ``BodyDecoder.final``), and for BiGraph vertices_smpl (B, V, 3) (the body model on its
    regressed parameters)

The batch size is dynamic. ``torch.onnx.export`` (dynamo) traces the module with ``torch.export``; what it could
not trace has an export path in the module that traced it, each held equal to the eager path by a test: the body
model's kinematic chain (``body/model.py``), the graph layers' sparse products (``nets/graph.py``), RoI Align's
adaptive sample count (``nets/roi_align.py``), and BiGraph's branch on missing joints (``base.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

OUTPUTS: tuple[str, ...] = ("vertices", "joints_3d", "pose_rotmat", "betas", "cam")


def require_onnx(command: str) -> None:
    """A one-line error naming the extra to install when onnxscript (export) or onnxruntime (running) is missing."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        from runtime.errors import UserError

        raise UserError(f"{command} needs onnxscript and onnxruntime: pip install -e '.[export]' "
                        "(make venv installs them)") from None


def default_onnx_path(ckpt: str | Path) -> Path:
    """Where a checkpoint's graph goes unless told otherwise (``make export``, the predictor's ONNX backend)."""
    return Path(ckpt).with_suffix(".onnx")


class InferenceGraph(nn.Module):
    """The module's inference as one graph (module docstring)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.eval()
        self.takes_joints = getattr(module, "roi_joints", None) is not None
        self.has_smpl_mesh = type(module).__name__ == "BiGraphModule"

    @property
    def input_names(self) -> list[str]:
        return ["img", "joints"] if self.takes_joints else ["img"]

    @property
    def output_names(self) -> list[str]:
        return list(OUTPUTS) + (["vertices_smpl"] if self.has_smpl_mesh else [])

    def forward(self, img: Tensor, joints: Tensor | None = None) -> tuple[Tensor, ...]:
        batch = {"img": img} if joints is None else {"img": img, "bigraph_joints_2d": joints}
        prediction = self.module(batch)
        final = self.module.decoder.final(prediction)
        out = tuple(final[name] for name in OUTPUTS)
        if self.has_smpl_mesh:
            out = out + (self.module.decoder.decode(prediction.final)["vertices"],)
        return out

    def example_inputs(self, batch: int = 2) -> tuple[Tensor, ...]:
        res = int(self.module.img_res)
        img = torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        if not self.takes_joints:
            return (img,)
        xy = torch.rand(batch, 12, 2, generator=torch.Generator().manual_seed(1)) * 1.2 - 0.6
        return img, torch.cat([xy, torch.ones(batch, 12, 1)], dim=-1)


def export_onnx(module: nn.Module, path: str | Path) -> Path:
    """Write ``module``'s inference graph to ``path`` (ONNX, dynamic batch); returns the path."""
    graph = InferenceGraph(module).float().eval()
    batch = torch.export.Dim.DYNAMIC
    shapes = {name: {0: batch} for name in graph.input_names}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(graph, graph.example_inputs(2), str(path), dynamo=True, input_names=graph.input_names,
                          output_names=graph.output_names, dynamic_shapes=shapes, report=False, verbose=False,
                          external_data=False)   # one self-contained file (the 2 GB protobuf limit is far)
    return path


class OnnxModel:
    """An exported graph in ONNX Runtime (CPU unless ``providers`` says otherwise): ``model(img[, joints])`` ->
    {output name: array}. ``spinning=False`` lets the session's threads sleep between runs (ONNX Runtime keeps
    them spinning by default, which takes the cores from anything else running in between, e.g. a benchmark's
    other contenders)."""

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None,
                 spinning: bool = True):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, img: np.ndarray, joints: np.ndarray | None = None) -> dict[str, np.ndarray]:
        feeds = {"img": np.ascontiguousarray(img, dtype=np.uint8)}
        if "joints" in self.input_names:
            if joints is None:
                raise ValueError("this graph (BiGraph) needs the joints input (B, 12, 3)")
            feeds["joints"] = np.ascontiguousarray(joints, dtype=np.float32)
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
