"""Converted official PyMAF weights give the official forward's outputs: a float64 comparison on CPU.

    python scripts/compare_official_pymaf.py [--official-root /work/ref/pymaf_a5feca1] [--batch 2] [--seed 0]
        [--tol 1e-6] [--write-table lightning_modules/official_pymaf_table.py]

Needs the official code of PyMAF (HongwenZhang/PyMAF at a5feca1, the paper's commit): ``--official-root`` or
``$PYMAF_OFFICIAL_ROOT``. No licensed file is needed: the official network is built on the suite's open body
model exported in the SMPL/SPIN/GraphCMR formats (``cli.export_body``, ``body.export``) into a temporary
``data/`` folder laid out as the official ``core/path_config.py`` expects (``data/smpl/SMPL_NEUTRAL.pkl``,
``data/smpl_mean_params.npz``, ``data/J_regressor_extra.npy``, ``data/J_regressor_h36m.npy``,
``data/mesh_downsampling.npz``), and run from that folder (the official code reads ``data/...`` relative to
the working directory).

What it does:
1. builds the official ``models.pymaf_net.PyMAF`` with ``configs/pymaf_config.yaml`` (ResNet-50, 3 levels,
   auxiliary IUV head), makes it float64, and gives every weight and BatchNorm statistic random values (seeded),
   so that no weight is at a symmetric initial value that could hide a wrong mapping;
2. checks its state dict against the committed table ``lightning_modules/official_pymaf_table.py`` (names and
   shapes); ``--write-table`` regenerates that table from this state dict and the suite's network instead;
3. converts the state dict with ``lightning_modules.official_pymaf.official_to_ours`` (what
   ``python -m cli.convert_pymaf`` uses), loads it into the suite's PyMAF LightningModule built with the
   paper's config on the same open body (float64), and runs both networks in eval mode on the same random
   normalised images;
4. prints a table of max |official - ours| per output and level: the ResNet c5 map and the three
   deconvolution maps, the sampled points, per level M0..M3 (M0: the mean-parameter start) the rotations,
   betas, camera, vertices (the official SMPL forward vs the suite's body model on the estimate), the 49
   SPIN/PyMAF keypoints and their 2D projections, and the IUV head's four outputs; exits 1 when any exceeds
   ``--tol``;
5. writes a converted checkpoint through ``cli.convert_pymaf`` from a float32 copy of the official weights
   saved as ``{"model": state_dict, ...}`` (the official ``utils/saver.py`` layout), loads it as ``make eval``
   does (``lightning_modules.registry.load_module``, weights-only) and checks every weight equals the official
   one exactly.

Runtime shims (only in this process, nothing is installed or edited):
- ``torchvision.models.resnet``: the official ``models/hmr.py`` imports it only to download ImageNet weights
  (``pretrained=True``); torchvision cannot be imported with the suite's CPU torch, so a stand-in module whose
  ``resnet50`` raises is put in ``sys.modules`` and the network is built with ``pretrained=False``; the
  stand-in leaves ``sys.modules`` once the official modules are imported (Lightning and torchmetrics probe for
  torchvision).
- ``yacs.config.CfgNode`` (when yacs is not installed): the official ``core/cfgs.py`` keeps its config in one;
  a small dict with attribute access and ``merge_from_file`` (YAML) stands in for it.
- ``vertex_ids``: the official ``models.smpl.SMPL`` builds ``smplx.SMPL`` with smplx's default vertex ids
  (SMPL's own vertices for nose, eyes, ears, toes, heels, fingertips); on the open mesh those ids name other
  vertices, so its constructor is wrapped to pass the exported ``vertex_ids.json`` (the suite's body model
  passes the same ids). With licensed SMPL this shim changes nothing.
- dtypes: both networks are built in float32, as their code builds them (so the 21 x 21 grid is the same
  float32 ``linspace`` on both sides), then made float64 with ``.double()``; the forward runs with the default
  dtype set to float64 because the official ``projection`` builds its intrinsics with ``torch.zeros`` in the
  default dtype.
- The official code's deprecation warnings (``torch.sparse.FloatTensor``, ``meshgrid`` without ``indexing``,
  ``torch.cross`` without ``dim``, ``is 0`` in ``utils/saver.py``) are silenced while it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import types
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_ROOT = "/work/ref/pymaf_a5feca1"
ROOT_ENV = "PYMAF_OFFICIAL_ROOT"
TABLE_PATH = REPO / "lightning_modules" / "official_pymaf_table.py"
IMG_RES = 224


# ----------------------------------------------------------------------------------------------
# The official code, with its runtime shims
# ----------------------------------------------------------------------------------------------
class _CfgNode(dict):
    """Stand-in for ``yacs.config.CfgNode``: nested dict with attribute access, YAML merging."""

    def __init__(self, init=None, new_allowed=False):  # noqa: ARG002  (yacs's signature)
        super().__init__()
        for key, value in (init or {}).items():
            self[key] = _CfgNode(value) if isinstance(value, dict) else value

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def _merge(self, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                if not isinstance(self.get(key), _CfgNode):
                    self[key] = _CfgNode()
                self[key]._merge(value)
            else:
                self[key] = value

    def merge_from_file(self, path) -> None:
        import yaml

        with open(path) as fh:
            self._merge(yaml.safe_load(fh) or {})

    def merge_from_list(self, items) -> None:
        import yaml

        for key, value in zip(items[0::2], items[1::2]):
            node = self
            *parents, last = key.split(".")
            for p in parents:
                node = node[p]
            node[last] = yaml.safe_load(value)


def install_shims() -> list[str]:
    """Put the stand-in modules in ``sys.modules`` (module docstring); returns what was stubbed."""
    stubbed = []

    def resnet50(*args, **kwargs):
        raise RuntimeError("torchvision stand-in: ImageNet weights are not available here (pretrained=False)")

    if "torchvision" not in sys.modules:
        tv, models, resnet = (types.ModuleType(n) for n in ("torchvision", "torchvision.models",
                                                               "torchvision.models.resnet"))
        resnet.resnet50 = resnet50
        models.resnet = resnet
        tv.models = models
        sys.modules.update({"torchvision": tv, "torchvision.models": models, "torchvision.models.resnet": resnet})
        stubbed.append("torchvision.models.resnet (resnet50 raises; built with pretrained=False)")
    try:
        import yacs.config  # noqa: F401
    except ImportError:
        yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")
        config.CfgNode = _CfgNode
        yacs.config = config
        sys.modules.update({"yacs": yacs, "yacs.config": config})
        stubbed.append("yacs.config.CfgNode (dict with attribute access and YAML merge)")
    return stubbed


def remove_torchvision_stub() -> None:
    """Take the torchvision stand-in out of ``sys.modules`` once the official modules are imported (they keep
    their reference): Lightning and torchmetrics probe for torchvision and fail on a module without a spec."""
    for name in ("torchvision.models.resnet", "torchvision.models", "torchvision"):
        if getattr(sys.modules.get(name), "__spec__", True) is None:
            del sys.modules[name]


def export_official_data(work: Path) -> dict:
    """The open body model in the official ``data/`` layout under ``work`` (and, all in one folder as the suite's
    ``body=smpl`` reads licensed files, in ``work/export``); returns its vertex ids."""
    from body.assets import load_asset_set
    from body.export import export_asset_set

    export = work / "export"
    with contextlib.redirect_stdout(io.StringIO()):
        export_asset_set(load_asset_set("open", "neutral"), export)
    data = work / "data"
    (data / "smpl").mkdir(parents=True, exist_ok=True)
    shutil.copy(export / "SMPL_NEUTRAL.pkl", data / "smpl" / "SMPL_NEUTRAL.pkl")
    for name in ("smpl_mean_params.npz", "J_regressor_extra.npy", "J_regressor_h36m.npy", "mesh_downsampling.npz"):
        shutil.copy(export / name, data / name)
    return json.loads((export / "vertex_ids.json").read_text())


def import_official(root: Path, vertex_ids: dict):
    """Import the official modules from ``root`` (after ``install_shims``, from the data folder) -> (pymaf_net
    module, cfg, geometry module)."""
    import importlib

    sys.path.insert(0, str(root))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # the official utils/saver.py's `is 0`
            # models/__init__.py rebinds the name pymaf_net to a function: take the modules from sys.modules
            cfgs, pymaf_net, official_smpl, geometry = (importlib.import_module(n) for n in (
                "core.cfgs", "models.pymaf_net", "models.smpl", "utils.geometry"))
    finally:
        sys.path.remove(str(root))   # its top-level names (core, models, utils, datasets) shadow nothing later

    for mod in (cfgs, pymaf_net, official_smpl, geometry):
        if not Path(mod.__file__).resolve().is_relative_to(root.resolve()):
            raise RuntimeError(f"{mod.__name__} was imported from {mod.__file__}, not from {root}")
    cfgs.cfg.merge_from_file(str(root / "configs" / "pymaf_config.yaml"))
    smpl_init = official_smpl.SMPL.__init__
    ids = {k: int(v) for k, v in vertex_ids.items() if k != "head_top"}

    def init_with_vertex_ids(self, *args, **kwargs):
        kwargs.setdefault("vertex_ids", ids)
        with contextlib.redirect_stdout(io.StringIO()):
            smpl_init(self, *args, **kwargs)

    official_smpl.SMPL.__init__ = init_with_vertex_ids
    remove_torchvision_stub()
    return pymaf_net, cfgs.cfg, geometry


def randomise_(model: torch.nn.Module, seed: int) -> None:
    """Seeded random values for every weight and BatchNorm statistic of the official network (not its SMPL
    data or fixed buffers): convolution and linear weights multiplied elementwise by U(0.5, 1.5) (their init's
    scale), biases N(0, 0.05^2), BatchNorm weight, bias, mean and variance near (1, 0, 0, 1) and random counters;
    the regressors' output layers are scaled up so that each level moves the mesh visibly (the script prints
    by how much)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if ".smpl" in name:
                continue
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=g))
                module.bias.copy_(0.1 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g))
                module.num_batches_tracked.fill_(int(torch.randint(1, 10**6, (1,), generator=g)))
            elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                w = module.weight
                w.mul_(0.5 + torch.rand(w.shape, generator=g, dtype=w.dtype))
                if module.bias is not None:
                    module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=g, dtype=w.dtype))
        for reg in model.regressor:
            for layer, scale in ((reg.decpose, 5.0), (reg.decshape, 20.0), (reg.deccam, 2.0)):
                layer.weight.mul_(scale)


def build_official(root: Path, work: Path, seed: int):
    """(official PyMAF in float64 eval mode with random weights, its pymaf_net module, geometry module, the
    shims used)."""
    stubbed = install_shims()
    vertex_ids = export_official_data(work)
    os.chdir(work)
    pymaf_net, cfg, geometry = import_official(root, vertex_ids)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)   # built as the official code builds it (its float32 grid included)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the official code's deprecation warnings (sparse tensors, meshgrid)
            model = pymaf_net.PyMAF("data/smpl_mean_params.npz", pretrained=False)
    finally:
        torch.set_default_dtype(default)
    model = model.double()
    randomise_(model, seed)
    return model.eval(), pymaf_net, geometry, cfg, stubbed


# ----------------------------------------------------------------------------------------------
# The committed table: official names and shapes <-> ours
# ----------------------------------------------------------------------------------------------
# The auxiliary head's official convolutions -> ours (lightning_modules/nets/iuv_head.py).
IUV_HEAD_NAMES = {"predict_uv_index": "index", "predict_u": "u", "predict_v": "v", "predict_ann_index": "coarse"}
THETA_SLICES = {"init_pose": (0, 144), "init_shape": (144, 154), "init_cam": (154, 157)}


def derive_row(name: str) -> tuple[str, str]:
    """(our name, rule) of an official state-dict entry, by the correspondences of the module docstring of
    ``lightning_modules.official_pymaf``."""
    import re

    parts = name.split(".")
    if name == "points_grid" or re.fullmatch(r"maf_extractor\.\d+\.Dmap", name) \
            or re.match(r"regressor\.\d+\.smpl\.", name):
        return "", "drop"
    if parts[0] == "feature_extractor":
        return ".".join(["backbone", *parts[1:]]), "copy"
    if parts[0] == "deconv_layers":
        index = int(parts[1])
        return f"deconv.blocks.{index // 3}.{index % 3}.{'.'.join(parts[2:])}", "copy"
    m = re.fullmatch(r"maf_extractor\.(\d+)\.conv(\d+)\.(weight|bias)", name)
    if m:
        return f"point_features.{m[1]}.mlp.layers.{m[2]}.{m[3]}", "conv1d" if m[3] == "weight" else "copy"
    m = re.fullmatch(r"regressor\.(\d+)\.(init_pose|init_shape|init_cam)", name)
    if m:
        a, b = THETA_SLICES[m[2]]
        return f"regressors.{m[1]}.mean_theta", f"theta:{a}:{b}"
    m = re.fullmatch(r"regressor\.(\d+)\.(fc1|fc2|decpose|decshape|deccam)\.(weight|bias)", name)
    if m:
        return f"regressors.{m[1]}.{m[2]}.{m[3]}", "copy"
    m = re.fullmatch(r"dp_head\.(\w+)\.(weight|bias)", name)
    if m and m[1] in IUV_HEAD_NAMES:
        return f"iuv_head.{IUV_HEAD_NAMES[m[1]]}.{m[2]}", "copy"
    raise ValueError(f"official entry {name!r}: no correspondence known")


def derive_table(official: dict, ours: dict) -> list[tuple]:
    """Rows (official, official shape, ours, our shape, rule) for every official entry; checks that every
    entry of ours is covered and that the shapes agree with the rules."""
    rows, covered = [], set()
    for name, value in official.items():
        our, rule = derive_row(name)
        shape = tuple(value.shape)
        if rule == "drop":
            rows.append((name, shape, "", (), rule))
            continue
        if our not in ours:
            raise ValueError(f"official {name!r} -> {our!r}, which PyMAFNet does not have")
        our_shape = tuple(ours[our].shape)
        expect = {"copy": our_shape, "conv1d": our_shape + (1,)}.get(rule)
        if rule.startswith("theta:"):
            a, b = map(int, rule.split(":")[1:])
            expect = (1, b - a)
        if shape != expect:
            raise ValueError(f"official {name!r} {shape} vs our {our!r} {our_shape} under rule {rule}")
        rows.append((name, shape, our, our_shape, rule))
        covered.add(our)
    left = [k for k in ours if k not in covered]
    if left:
        raise ValueError(f"our entries without an official one: {left[:5]} ({len(left)})")
    return rows


def write_table(rows: list[tuple], path: Path) -> None:
    lines = [
        '"""Official PyMAF state-dict entries <-> this suite\'s ``PyMAFNet`` (paper config): the table',
        "``lightning_modules.official_pymaf`` applies (its docstring explains the rules).",
        "",
        "Generated from the official network (HongwenZhang/PyMAF at a5feca1, ``configs/pymaf_config.yaml``) and",
        "ours by ``python scripts/compare_official_pymaf.py --write-table``; shapes of ``regressor.t.smpl.*`` are",
        "those of SMPL (6,890 vertices). Rows: (official name, official shape, our name, our shape, rule).",
        '"""',
        "",
        'OFFICIAL_CODE = "HongwenZhang/PyMAF@a5feca1"',
        "",
        "ROWS = (",
    ]
    q = json.dumps   # double-quoted strings
    for name, shape, our, our_shape, rule in rows:
        line = f"    ({q(name)}, {shape!r}, {q(our)}, {our_shape!r}, {q(rule)}),"
        if len(line) > 120:
            line = f"    ({q(name)}, {shape!r},\n     {q(our)}, {our_shape!r}, {q(rule)}),"
        lines.append(line)
    lines.append(")")
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------------
def build_ours(converted: dict | None = None):
    """The suite's PyMAF LightningModule (paper config, open body) built in float32 as for training, then in
    float64 eval mode, with the ``converted`` weights when given."""
    from configs.loader import complete_group
    from lightning_modules.official_pymaf import PAPER_MODEL
    from lightning_modules.registry import build_module

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        module = build_module(complete_group("model", PAPER_MODEL, "paper config"), {"name": "open"}, [], IMG_RES)
    finally:
        torch.set_default_dtype(default)
    module = module.double().eval()
    if converted is not None:
        module.net.load_state_dict(converted, strict=True)
    return module


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    if a.shape != b.shape:
        raise ValueError(f"shape {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.double() - b.double()).abs().max()), float(a.double().abs().max())


@torch.no_grad()
def compare_forward(official, geometry, module, images: torch.Tensor) -> tuple[list, list]:
    """(per-level rows [(quantity, [(diff, scale)] * 4)], other rows [(quantity, (diff, scale))])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the official code's deprecation warning (torch.cross without dim)
        out, vis = official(images)
    levels_off = out["smpl_out"]                       # [initial, level 1, 2, 3]
    net = module.net
    prediction = net(images)
    ours = [prediction.initial, *prediction.iterations]
    decoded = [module.decoder.decode(e) for e in ours]

    c5 = net.backbone.forward_features(images)["c5"]
    maps = net.deconv(c5)
    other = [("ResNet-50 c5 (2048 x 7 x 7)", _max_diff(vis[0], c5))]
    for i, m in enumerate(maps):
        side = m.shape[-1]
        other.append((f"deconvolution map {side} x {side}", _max_diff(vis[i + 1], m)))
    head_off, head_ours = out["dp_out"][0], net.iuv_head(maps[-1])
    for name, key in IUV_HEAD_NAMES.items():
        if head_ours.get(key) is None:
            raise ValueError(f"our IUV head has no {key!r} output (official {name})")
        other.append((f"IUV head {name} -> {key} ({head_ours[key].shape[1]} ch)",
                      _max_diff(head_off[name], head_ours[key])))

    b = images.shape[0]
    points_off = [official.points_grid.expand(b, -1, -1).transpose(1, 2)]
    for t in range(1, len(levels_off) - 1):
        verts_ds = torch.matmul(official.maf_extractor[t].Dmap.unsqueeze(0), levels_off[t]["verts"])
        points_off.append(geometry.projection(verts_ds, levels_off[t]["pred_cam"]))
    other += [(f"sampled points, level {t + 1} ({p.shape[1]})", _max_diff(p, q))
              for t, (p, q) in enumerate(zip(points_off, prediction.sampled_points))]

    quantities = [
        ("pose 6D (144)", lambda o, e, d: (o["pred_pose"], e.pose_6d)),
        ("rotation matrices (24 x 3 x 3)", lambda o, e, d: (o["rotmat"], e.pose_rotmat)),
        ("betas (10)", lambda o, e, d: (o["pred_shape"], e.betas)),
        ("camera (s, tx, ty)", lambda o, e, d: (o["pred_cam"], e.cam)),
        ("vertices (6890 x 3), m", lambda o, e, d: (o["verts"], d["vertices"])),
        ("joints (49 x 3), m", lambda o, e, d: (o["kp_3d"], d["keypoints49_3d"])),
        ("2D keypoints (49 x 2), crop [-1, 1]", lambda o, e, d: (o["kp_2d"], d["keypoints_2d"])),
    ]
    per_level = []
    for label, pick in quantities:
        per_level.append((label, [_max_diff(*pick(o, e, d)) for o, e, d in zip(levels_off, ours, decoded)]))
    # How far each official level moves the mesh (the comparison means something only if they move it).
    moves = [float((levels_off[t]["verts"] - levels_off[t - 1]["verts"]).abs().max())
             for t in range(1, len(levels_off))]
    return per_level, other, moves


def format_results(per_level, other, moves, tol: float, header: str) -> tuple[str, bool]:
    width = max(len(q) for q, _ in per_level + other) + 2
    lines = [header, "", f"{'max |official - ours|':<{width}}" + "".join(f"{f'M{t}':>11}" for t in range(4))
             + f"{'max |official|':>16}"]
    ok = True
    for label, cells in per_level:
        ok &= all(d <= tol for d, _ in cells)
        lines.append(f"{label:<{width}}" + "".join(f"{d:>11.2e}" for d, _ in cells)
                     + f"{max(s for _, s in cells):>16.3g}")
    lines += ["", f"{'max |official - ours|':<{width}}{'':>11}{'':>33}{'max |official|':>16}"]
    for label, (d, s) in other:
        ok &= d <= tol
        lines.append(f"{label:<{width}}{d:>11.2e}{'':>33}{s:>16.3g}")
    lines += ["", "each official level moves the mesh by max " + ", ".join(f"{m:.3g}" for m in moves)
              + " m (M1 - M0, M2 - M1, M3 - M2)",
              f"tolerance {tol:g}: {'PASS' if ok else 'FAIL'} (M0 = the mean-parameter start; M1..M3 = the "
              "three feedback levels; float64, eval mode)"]
    return "\n".join(lines), ok


def check_table_against(official_state: dict) -> str:
    """One line: the committed table against the official network's state dict (names and shapes)."""
    from lightning_modules.official_pymaf import BY_OFFICIAL, TABLE

    names = set(official_state)
    missing = [r.official for r in TABLE if r.official not in names]
    extra = [k for k in names if k not in BY_OFFICIAL]
    wrong = [k for k in names & set(BY_OFFICIAL) if tuple(official_state[k].shape) != BY_OFFICIAL[k].official_shape]
    if missing or extra or wrong:
        raise SystemExit(f"the table ({TABLE_PATH.name}) differs from the official state dict: missing {missing[:3]}, "
                         f"extra {extra[:3]}, shapes {wrong[:3]}; regenerate it with --write-table")
    mapped = sum(r.rule != "drop" for r in TABLE)
    return (f"table: all {len(TABLE)} official entries match by name and shape ({mapped} mapped, "
            f"{len(TABLE) - mapped} dropped)")


def check_cli_round_trip(official_state: dict, work: Path) -> str:
    """The float32 official weights saved as the official saver does -> ``cli.convert_pymaf --body smpl`` with
    the exported open body as the "licensed" SMPL folder (the body the official network ran on here) -> the
    module ``make eval`` loads: every network weight equal to the official one, bit for bit, and no note that
    the feedback vertices differ."""
    from cli import convert_pymaf
    from lightning_modules.official_pymaf import official_to_ours
    from lightning_modules.registry import load_module

    state32 = {k: (v.float() if v.is_floating_point() else v) for k, v in official_state.items()}
    src, dst = work / "PyMAF_model_checkpoint.pt", work / "converted.ckpt"
    torch.save({"model": state32, "epoch": 60, "batch_idx": 0, "batch_size": 64, "total_step_count": 1},
               src)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        convert_pymaf.main([str(src), "--out", str(dst), "--body", "smpl", "--smpl-dir", str(work / "export")])
    if "feedback vertices" in err.getvalue():
        raise SystemExit(f"cli.convert_pymaf: {err.getvalue().strip()}")
    module = load_module(str(dst), "pymaf")
    expected = official_to_ours(state32)
    got = module.net.state_dict()
    unequal = [k for k, v in expected.items() if not torch.equal(got[k], v.to(got[k].dtype))]
    if unequal or any(got[k].dtype != v.dtype for k, v in expected.items()):
        raise SystemExit(f"cli.convert_pymaf -> load_module: {len(unequal)} weights differ, e.g. {unequal[:3]}")
    return (f"cli.convert_pymaf --body smpl (the exported files) -> make eval's load_module (weights-only): all "
            f"{len(expected)} network tensors equal the official float32 weights bit for bit, the official "
            f"Dmap equals the body's down-sampling ({dst.stat().st_size / 2**20:.0f} MiB checkpoint)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official-root", default=os.environ.get(ROOT_ENV, DEFAULT_ROOT),
                   help=f"the official code at a5feca1 (default: ${ROOT_ENV} or {DEFAULT_ROOT})")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--write-table", nargs="?", const=str(TABLE_PATH), default=None,
                   help=f"regenerate the table (default path {TABLE_PATH.relative_to(REPO)}) and stop")
    p.add_argument("--skip-cli", action="store_true", help="skip the float32 checkpoint round trip (step 5)")
    a = p.parse_args(argv)
    root = Path(a.official_root).resolve()
    if not (root / "models" / "pymaf_net.py").is_file():
        raise SystemExit(f"no official PyMAF code at {root} (pass --official-root or set ${ROOT_ENV})")

    table_path = None if a.write_table is None else (Path.cwd() / a.write_table).resolve()
    torch.set_default_dtype(torch.float64)
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="official_pymaf_") as tmp:
        work = Path(tmp)
        try:
            official, _, geometry, _, stubbed = build_official(root, work, a.seed)
            official_state = official.state_dict()
            if table_path is not None:
                rows = derive_table(official_state, build_ours().net.state_dict())
                write_table(rows, table_path)
                print(f"wrote {table_path}: {len(rows)} rows")
                return 0
            print(check_table_against(official_state))
            from lightning_modules.official_pymaf import official_to_ours

            module = build_ours(official_to_ours(official_state))
            g = torch.Generator().manual_seed(a.seed)
            images = torch.randn(a.batch, 3, IMG_RES, IMG_RES, generator=g, dtype=torch.float64)
            per_level, other, moves = compare_forward(official, geometry, module, images)
            header = (f"Official PyMAF (HongwenZhang/PyMAF@a5feca1, {root}) vs the suite's PyMAF with the converted "
                      f"weights: CPU, float64, batch {a.batch}, seed {a.seed}, random weights and BatchNorm "
                      "statistics, the open body model exported as SMPL files for both")
            text, ok = format_results(per_level, other, moves, a.tol, header)
            print(text)
            print("shims: " + "; ".join(stubbed + ["models.smpl.SMPL gets the exported vertex_ids",
                                                   "default dtype float64 for the forward"]))
            if not a.skip_cli:
                torch.set_default_dtype(torch.float32)
                print(check_cli_round_trip(official_state, work))
        finally:
            os.chdir(cwd)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
