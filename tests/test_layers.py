"""The suite's layers, read from the source with ``ast`` (nothing is imported): the command-line shell
(``cli/``) sits on top and nothing in the library reaches up into it; ``runtime/`` is the bottom layer;
``configs/`` does not reach back into ``body/``; the old ``body.errors`` / ``body.cli`` re-exports are gone."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("body", "datamodules", "metrics", "lightning_modules", "callbacks", "configs", "runtime", "cli")
SHELL = ("tests", "scripts")  # may import anything, cli included
SUITE = frozenset(PACKAGES)
IMPORT_FUNCTIONS = {"import_module", "__import__"}  # importlib.import_module("x.y"), __import__("x")


def python_files(folders: tuple[str, ...] = PACKAGES) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str, frozenset[str]]]:
    """``(line, statement, dotted names)`` of every import in the file, at any depth (functions, ``if``
    blocks, ``importlib.import_module("...")``). ``from a.b import c`` names both ``a.b`` and ``a.b.c``
    (``c`` may be a submodule); relative imports are resolved against the file's package."""
    source = path.read_text()
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = {prefix} | {f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*"}
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None))
              in IMPORT_FUNCTIONS):
            names = {node.args[0].value}
        else:
            continue
        yield node.lineno, " ".join(ast.get_source_segment(source, node).split()), frozenset(names)


def top(name: str) -> str:
    return name.split(".", 1)[0]


def offences(rule: Callable[[str, str], bool], folders: tuple[str, ...] = PACKAGES) -> list[str]:
    """``file:line: statement`` for every import with a name for which ``rule(folder, name)`` is true
    (``folder``: the file's top-level folder)."""
    out = []
    for path in python_files(folders):
        folder = path.relative_to(ROOT).parts[0]
        for line, statement, names in imports(path):
            if any(rule(folder, name) for name in names):
                out.append(f"{path.relative_to(ROOT)}:{line}: {statement}")
    return out


def test_the_packages_are_there():
    assert all((ROOT / pkg / "__init__.py").is_file() for pkg in PACKAGES), PACKAGES
    assert len(python_files()) > 50


def test_nothing_in_the_library_imports_the_command_line_package():
    """cli/ is the shell: only cli/ itself, tests/ and scripts/ may import it."""
    bad = offences(lambda folder, name: folder != "cli" and top(name) == "cli")
    assert not bad, ("the library imports the command-line package cli/ (move what it needs out of cli/):\n"
                     + "\n".join(bad))


def test_configs_does_not_import_body():
    bad = offences(lambda folder, name: folder == "configs" and top(name) == "body")
    assert not bad, "configs/ imports body/ (a back-edge: body/ may read configs, not the reverse):\n" + "\n".join(bad)


def test_runtime_imports_no_other_suite_package():
    bad = offences(lambda folder, name: folder == "runtime" and top(name) in SUITE - {"runtime"})
    assert not bad, "runtime/ is the lowest layer and imports no other suite package:\n" + "\n".join(bad)


@pytest.mark.parametrize("old, new", [("body.errors", "runtime.errors"), ("body.cli", "runtime.cli")])
def test_the_old_body_re_exports_are_gone(old, new):
    bad = offences(lambda folder, name: name == old or name.startswith(old + "."), PACKAGES + SHELL)
    assert not bad, f"{old} is gone: import {new} instead:\n" + "\n".join(bad)
    path = ROOT / (old.replace(".", "/") + ".py")
    assert not path.exists(), f"{path.relative_to(ROOT)} should be deleted: import {new} instead"


def test_the_parser_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The checks above rely on it: plain, from-, relative, nested and importlib imports are all found."""
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "body").mkdir()
    (tmp_path / "body" / "__init__.py").write_text("from .errors import UserError\n")
    src = tmp_path / "body" / "x.py"
    src.write_text("import cli.train\nfrom body import errors\nfrom . import cli as c\n"
                   "def f():\n    from ..cli import show_body\n    import importlib\n"
                   "    importlib.import_module('cli.convert')\n")
    found = [(line, names) for line, _, names in imports(src)]
    assert [line for line, _ in found] == [1, 2, 3, 5, 6, 7]
    names = set().union(*(names for _, names in found))
    assert {"cli.train", "body.errors", "body.cli", "cli.show_body", "cli.convert", "importlib"} <= names, names
    assert {n for _, _, names in imports(tmp_path / "body" / "__init__.py") for n in names} == \
        {"body.errors", "body.errors.UserError"}
    assert offences(lambda folder, name: top(name) == "cli", ("body",)) == [
        "body/x.py:1: import cli.train", "body/x.py:5: from ..cli import show_body",
        "body/x.py:7: importlib.import_module('cli.convert')"]
