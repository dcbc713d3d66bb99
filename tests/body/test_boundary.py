"""The body layer's boundary: only ``body/`` knows SMPL.

No module outside ``body/`` (and its tests, ``tests/body/``) imports smplx or reads the body model's internals
(``.smpl``, ``.assets``, ``.hierarchy``, now private as ``_smpl``, ``_assets``, ``_hierarchy``); the public
API that replaces them gives the same arrays; checkpoints written with the old names still load.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from body.model import BodyModel

ROOT = Path(__file__).resolve().parents[2]
INSIDE = (Path("body"), Path("tests") / "body")           # may import smplx and read the internals
SKIPPED_DIRS = {"data", "outputs", "wandb", "lightning_logs", "__pycache__"}  # generated, never code
PRIVATE_ATTRIBUTES = {"smpl", "assets", "hierarchy"}


def _outside_python_files() -> list[Path]:
    """Every .py file of the repository outside ``body/`` and ``tests/body/`` (no hidden or generated folders)."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        rel = Path(folder).relative_to(ROOT)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS
                         and not d.endswith(".egg-info") and rel / d not in INSIDE)
        files += [rel / n for n in sorted(names) if n.endswith(".py")]
    return files


def smplx_imports(source: str) -> list[str]:
    """``import smplx...`` / ``from smplx... import`` statements of a module, as 'line: module'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "smplx" or n.startswith("smplx.")]
    return [f"{line}: {name}" for line, name in sorted(found)]


def private_attribute_reads(source: str) -> list[str]:
    """Reads of ``<expr>.smpl`` / ``.assets`` / ``.hierarchy`` (or ``getattr`` of those names) as 'line: expression'.

    A dotted module path bound by an import (``import body.assets`` then ``body.assets.load_asset_set``)
    is not an attribute of a body model and is not reported; names in strings and comments are not code.
    """
    tree = ast.parse(source)
    module_names = {a.asname or a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for a in node.names}

    def root(node: ast.expr) -> ast.expr:
        while isinstance(node, ast.Attribute):
            node = node.value
        return node

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            base = root(node)
            if isinstance(base, ast.Name) and base.id in module_names:
                continue
            found.append((node.lineno, node.col_offset, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in PRIVATE_ATTRIBUTES):
            found.append((node.lineno, node.col_offset, ast.unparse(node)))
    return [f"{line}: {text}" for line, _, text in sorted(found)]


def test_the_checks_see_what_they_should():
    assert smplx_imports("import smplx\nimport smplx.lbs as l\nfrom smplx.lbs import lbs\nfrom smplx import SMPL\n"
                         "import os, smplx\n") == ["1: smplx", "2: smplx.lbs", "3: smplx.lbs", "4: smplx", "5: smplx"]
    assert smplx_imports("import smplxx\nfrom .smplx import a\nx = 'import smplx'  # import smplx\n") == []
    code = ("m.smpl.v_template\nmodule.body.assets.iuv\nnet.body_model.hierarchy.downsample(x, 0, 2)\n"
            "h = getattr(m, 'hierarchy')\nm.mesh_hierarchy\nm._smpl\ncfg.smpl_dir\n'model.assets'  # x.smpl\n")
    assert private_attribute_reads(code) == ["1: m.smpl", "2: module.body.assets", "3: net.body_model.hierarchy",
                                             "4: getattr(m, 'hierarchy')"]
    assert private_attribute_reads("import body.assets\nbody.assets.load_asset_set('open')\n"
                                   "import body.hierarchy as bh\nbh.hierarchy\n") == []


def test_the_walk_covers_the_suite():
    files = {str(p) for p in _outside_python_files()}
    assert {"lightning_modules/nets/pymaf_net.py", "datamodules/synthetic/texture.py",
            "tests/lightning_modules/nets/test_pymaf_net.py"} <= files
    assert not any(f.startswith(("body/", "tests/body/", ".venv/")) for f in files)


def test_no_module_outside_body_imports_smplx():
    bad = {str(p): hits for p in _outside_python_files()
           if (hits := smplx_imports((ROOT / p).read_text(encoding="utf-8")))}
    assert bad == {}, f"smplx is imported outside body/: {bad}"


def test_no_module_outside_body_reads_the_body_model_internals():
    bad = {str(p): hits for p in _outside_python_files()
           if (hits := private_attribute_reads((ROOT / p).read_text(encoding="utf-8")))}
    assert bad == {}, f"use BodyModel's public API (mesh_hierarchy, vertex_iuv, ...): {bad}"


# ---------------------------------------------------------------------------------------------- public API
@pytest.fixture(scope="module")
def model():
    return BodyModel.from_config("open")


def test_public_per_vertex_arrays_are_the_asset_sets(model, assets):
    assert torch.equal(model.vertex_iuv, torch.as_tensor(assets.iuv, dtype=torch.float32))
    assert torch.equal(model.vertex_part24, torch.as_tensor(assets.part24, dtype=torch.long))
    assert torch.equal(model.vertex_part_lsp6, torch.as_tensor(assets.part_lsp6, dtype=torch.long))
    assert model.vertex_ids == assets.vertex_ids and model.vertex_ids is not model.vertex_ids
    assert model.vertex_iuv.shape == (model.num_vertices, 3) and model.vertex_part24.shape == (model.num_vertices,)
    assert model.mesh_hierarchy.num_vertices == assets.hierarchy.num_vertices
    converted = BodyModel(assets).double()
    assert converted.vertex_iuv.dtype == torch.float64 and converted.vertex_part24.dtype == torch.long


def test_state_dict_has_only_the_smpl_buffers_under_their_private_name(model):
    keys = set(model.state_dict())
    assert keys and all(k.startswith("_smpl.") for k in keys)


def test_checkpoints_with_the_old_names_load(model):
    """A state dict written when the attribute was ``smpl`` loads strictly, standalone and nested."""
    new = model.state_dict()
    old = {("smpl." + k[len("_smpl."):]): v.clone() for k, v in new.items()}
    old["smpl.v_template"] = old["smpl.v_template"] + 1.0      # a value that shows the load took effect
    fresh = BodyModel.from_config("open")
    assert fresh.load_state_dict(old) is not None
    assert torch.equal(fresh.state_dict()["_smpl.v_template"], old["smpl.v_template"])

    class Owner(torch.nn.Module):                                # as in a LightningModule checkpoint: "body.smpl.*"
        def __init__(self):
            super().__init__()
            self.body = BodyModel.from_config("open")

    owner = Owner()
    owner.load_state_dict({"body." + k: v for k, v in old.items()}, strict=True)
    assert torch.equal(owner.body.state_dict()["_smpl.v_template"], old["smpl.v_template"])
    assert set(owner.state_dict()) == {"body." + k for k in new}
