"""Official PyMAF weights <-> this suite's ``PyMAFNet``: the mapping ``python -m cli.convert_pymaf`` applies.

The official checkpoint (``PyMAF_model_checkpoint.pt`` of HongwenZhang/PyMAF, the paper's code at a5feca1) is
a torch file whose ``"model"`` entry is the state dict of its ``models.pymaf_net.PyMAF`` (``eval.py`` and
``demo.py`` load it with ``model.load_state_dict(checkpoint["model"])``). That network is the suite's PyMAF
with the paper's config (``PAPER_MODEL``: ResNet-50 of width 64, T = 3 levels, mesh-aligned feedback, the
auxiliary IUV head with its 15-class coarse-part output); only names and four kinds of entries differ.
``official_pymaf_table.ROWS`` lists every official entry with its shape, our name and shape, and a rule:

    copy       the same tensor: ``feature_extractor.*`` -> ``backbone.*`` (torchvision names on both sides),
               ``deconv_layers.{3k, 3k+1}`` -> ``deconv.blocks.k.{0, 1}``, the regressors' layers, the head.
    conv1d     the point MLP: official ``maf_extractor.t.conv{l}`` are Conv1d (O, I, 1), ours
               ``point_features.t.mlp.layers.l`` Linear (O, I) (same product): squeeze / unsqueeze the last axis.
    theta:a:b  official ``regressor.t.init_pose`` (1, 144), ``init_shape`` (1, 10), ``init_cam`` (1, 3) are the
               slices a:b of our ``regressors.t.mean_theta`` (157,) = [pose 6D, betas, camera] (Theta_0). The
               converted network therefore starts from the official mean parameters (SPIN's
               ``smpl_mean_params.npz``) whatever the body model's own mean parameters are.
    drop       not a learnt weight, and rebuilt by the suite: ``points_grid`` (the 21 x 21 grid: checked equal
               to ours, ``mesh_aligned.grid_points``), ``maf_extractor.t.Dmap`` (the 6890 -> 431 mesh
               down-sampling: the body model's hierarchy, ``BodyModel.mesh_hierarchy``; see
               ``downsampling_difference``) and ``regressor.t.smpl.*`` (the SMPL model each official regressor
               holds: licensed data and smplx's buffers; the suite's body model comes from its asset set).
               Any ``regressor.t.smpl.*`` entry is dropped, listed or not, as their set depends on the smplx
               version that wrote the file; a dropped entry may also be absent.

Every other difference fails in one line that names the entry (``UserError``): an official entry the table
does not know, a mapped entry missing, a shape that differs from the table's, a value that is no tensor.
``ours_to_official`` is the inverse for the mapped entries (load it into the official network with
``strict=False``: the dropped entries are rebuilt by the official code too).

Reading the official file (``read_official_checkpoint``) is weights-only, as every loader of the suite
(``lightning_modules.checkpoints``): tensors and plain containers, plus numpy scalars and dtypes (the official
trainer's counters may be numpy numbers); anything else is refused in one line before it runs.
"""
from __future__ import annotations

import functools
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from lightning_modules.official_pymaf_table import OFFICIAL_CODE, ROWS
from runtime.errors import UserError

# The paper's config (configs/model/pymaf.yaml values that the official network fixes), for ``complete_group``.
PAPER_MODEL: dict[str, Any] = {
    "name": "pymaf", "backbone": {"weights": None, "width": 64}, "n_levels": 3, "feedback": "mesh_aligned",
    "pyramid": True, "aux": "iuv", "init_features": "grid", "deconv_channels": 256,
}
TABLE_FILE = "lightning_modules/official_pymaf_table.py"
SMPL_SUBTREE = re.compile(r"^regressor\.\d+\.smpl\.")
GRID_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Row:
    """One official state-dict entry: its name and shape, our ``PyMAFNet`` name and shape, and the rule
    (module docstring). ``ours`` is "" for ``drop``."""

    official: str
    official_shape: tuple[int, ...]
    ours: str
    our_shape: tuple[int, ...]
    rule: str

    @property
    def theta_slice(self) -> slice:
        _, a, b = self.rule.split(":")
        return slice(int(a), int(b))


TABLE: tuple[Row, ...] = tuple(Row(o, tuple(os_), u, tuple(us), r) for o, os_, u, us, r in ROWS)
BY_OFFICIAL: dict[str, Row] = {r.official: r for r in TABLE}
MAPPED: tuple[Row, ...] = tuple(r for r in TABLE if r.rule != "drop")


def our_expected_shapes() -> dict[str, tuple[int, ...]]:
    """Our ``PyMAFNet`` (paper config) state-dict names -> shapes, as the table records them."""
    return {r.ours: r.our_shape for r in MAPPED}


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """A DataParallel/DDP ``module.`` prefix on every key is removed."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _where(n: int, what: str) -> str:
    return f" (and {n - 1} more {what})" if n > 1 else ""


def official_to_ours(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The official ``PyMAF`` state dict -> our ``PyMAFNet`` state dict (names relative to the network).

    Tensors keep their dtype (a float64 official state gives a float64 one); ``mean_theta`` is assembled from
    the three ``init_*`` buffers of the same regressor in their common dtype. Raises a one-line ``UserError``
    naming the first offending entry (module docstring).
    """
    state = _strip_module_prefix(state)
    unknown = [k for k in state if k not in BY_OFFICIAL and not SMPL_SUBTREE.match(k)]
    if unknown:
        raise UserError(f"official entry {unknown[0]!r} is not in the mapping table ({TABLE_FILE})"
                        f"{_where(len(unknown), 'unknown entries')}: not the state dict of {OFFICIAL_CODE}'s PyMAF "
                        "with configs/pymaf_config.yaml")
    missing = [r for r in MAPPED if r.official not in state]
    if missing:
        raise UserError(f"official entry {missing[0].official!r} (our {missing[0].ours}) is missing"
                        f"{_where(len(missing), 'missing entries')}: not a complete PyMAF state dict")
    for r in MAPPED:
        value = state[r.official]
        if not isinstance(value, Tensor):
            raise UserError(f"official entry {r.official!r} is a {type(value).__name__}, not a tensor")
        if _shape(value) != r.official_shape:
            raise UserError(f"official entry {r.official!r} has shape {_shape(value)}, the table expects "
                            f"{r.official_shape} (our {r.ours} {r.our_shape})")
    if "points_grid" in state:
        check_points_grid(state["points_grid"])

    out: dict[str, Tensor] = {}
    thetas: dict[str, list[Row]] = {}
    for r in MAPPED:
        value = state[r.official].detach()
        if r.rule == "copy":
            out[r.ours] = value.clone()
        elif r.rule == "conv1d":
            out[r.ours] = value[..., 0].clone()
        elif r.rule.startswith("theta:"):
            thetas.setdefault(r.ours, []).append(r)
        else:
            raise UserError(f"{TABLE_FILE}: unknown rule {r.rule!r} for {r.official!r}")
    for ours, parts in thetas.items():
        parts = sorted(parts, key=lambda r: r.theta_slice.start)
        dtype = functools.reduce(torch.promote_types, [state[r.official].dtype for r in parts])
        pieces, end = [], 0
        for r in parts:
            if r.theta_slice.start != end:
                raise UserError(f"{TABLE_FILE}: the theta slices of {ours} leave a gap before {r.official!r}")
            pieces.append(state[r.official].detach().reshape(-1).to(dtype))
            end = r.theta_slice.stop
        if end != parts[0].our_shape[0]:
            raise UserError(f"{TABLE_FILE}: the theta slices of {ours} cover {end} of {parts[0].our_shape[0]} numbers")
        out[ours] = torch.cat(pieces)
    return out


def ours_to_official(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """Our ``PyMAFNet`` state dict (paper config) -> the official entries of the table's mapped rows.

    Dropped entries are not produced (module docstring). Raises a one-line ``UserError`` for an entry of ours
    the table does not know, one it needs that is missing, or a shape other than the table's.
    """
    state = dict(state)
    expected = our_expected_shapes()
    unknown = [k for k in state if k not in expected]
    if unknown:
        raise UserError(f"our entry {unknown[0]!r} is not in the mapping table ({TABLE_FILE})"
                        f"{_where(len(unknown), 'unknown entries')}: only PyMAFNet with the paper's config maps to "
                        "the official network")
    missing = [k for k in expected if k not in state]
    if missing:
        raise UserError(f"our entry {missing[0]!r} is missing{_where(len(missing), 'missing entries')}")
    for k, shape in expected.items():
        if not isinstance(state[k], Tensor):
            raise UserError(f"our entry {k!r} is a {type(state[k]).__name__}, not a tensor")
        if _shape(state[k]) != shape:
            raise UserError(f"our entry {k!r} has shape {_shape(state[k])}, the table expects {shape}")
    out = {}
    for r in MAPPED:
        value = state[r.ours].detach()
        if r.rule == "copy":
            out[r.official] = value.clone()
        elif r.rule == "conv1d":
            out[r.official] = value.unsqueeze(-1).clone()
        else:
            out[r.official] = value[r.theta_slice].reshape(r.official_shape).clone()
    return out


def check_points_grid(points_grid: Tensor) -> None:
    """The official ``points_grid`` (1, 2, 441) must be our 21 x 21 grid (``mesh_aligned.grid_points``),
    transposed; a one-line ``UserError`` otherwise."""
    from lightning_modules.nets.mesh_aligned import GRID_SIZE, grid_points

    ours = grid_points(GRID_SIZE, dtype=torch.float64).t().unsqueeze(0)
    if not isinstance(points_grid, Tensor):
        raise UserError(f"official entry 'points_grid' is a {type(points_grid).__name__}, not a tensor")
    if _shape(points_grid) != _shape(ours):
        raise UserError(f"official entry 'points_grid' has shape {_shape(points_grid)}, expected {_shape(ours)}")
    diff = float((points_grid.detach().double() - ours).abs().max())
    if diff > GRID_TOLERANCE:
        raise UserError(f"official entry 'points_grid' differs from the suite's 21 x 21 grid by {diff:.3g}: "
                        "a different sampling grid than PyMAF's linspace(-1, 1, 21) 'ij' meshgrid")


def downsampling_difference(dmap: Tensor, body) -> float:
    """Max |Dmap x - ours(x)| over random vertex positions x: how far the official 6890 -> 431 down-sampling
    ``maf_extractor.t.Dmap`` is from the body model's hierarchy (0 for the same 431 vertices, as with
    licensed SMPL and GraphCMR's ``mesh_downsampling.npz``; inf when the vertex counts differ)."""
    hierarchy = body.mesh_hierarchy
    if tuple(dmap.shape) != (hierarchy.num_vertices[2], hierarchy.num_vertices[0]):
        return float("inf")
    x = torch.randn(1, dmap.shape[1], 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = hierarchy.downsample(x.to(torch.float32), 0, 2).double()
    return float((dmap.double() @ x[0] - ours[0]).abs().max())


# ----------------------------------------------------------------------------------------------
# Reading the official file
# ----------------------------------------------------------------------------------------------
def _numpy_plain_globals() -> list:
    """numpy scalars and dtypes: data, no code (the official trainer may save numpy counters)."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                          "uint32", "uint64", "float16", "float32", "float64")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, *dtypes]


def _refused_global(err: Exception) -> str:
    text = " ".join(str(err).split())
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return f"loading it needs {m.group(1)}"
    m = re.search(r"WeightsUnpickler error: ([^.]+)", text)
    return m.group(1)[:160] if m else (text[:160] or type(err).__name__)


def read_official_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(the official state dict, the file's other plain entries such as ``epoch``), read weights-only on the CPU.

    Accepts ``{"model": state_dict, ...}`` (the official ``utils/saver.py`` layout) or a bare state dict.
    Raises a one-line ``UserError`` for a missing file, a file that needs more than tensors, plain
    containers and numpy scalars to load (refused before anything in it runs), or one without a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (the official PyMAF checkpoint, e.g. data/pretrained_model/"
                        "PyMAF_model_checkpoint.pt of HongwenZhang/PyMAF)")
    try:
        with torch.serialization.safe_globals(_numpy_plain_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(f"{path}: refused, {_refused_global(err)}: only tensors, plain containers and numpy "
                        "scalars are read (a pickle of other objects could run code when loaded)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise UserError(f"{path}: not a readable torch file ({type(err).__name__}: {first})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        state, extra = obj["model"], {k: v for k, v in obj.items() if k != "model"}
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state, extra = obj, {}
    else:
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, Mapping) else type(obj).__name__
        raise UserError(f"{path}: no PyMAF state dict (expected a 'model' entry as the official saver writes; "
                        f"found {keys})")
    return dict(state), extra
