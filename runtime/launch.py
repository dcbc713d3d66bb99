"""Run a Python command under the suite's allocator policy: ``python -m runtime.launch -m pytest -q``.

The arguments are those of the interpreter (``-m module ...`` or ``script.py ...``); the Makefile puts this
before commands that are not the suite's own entry points (pytest), which apply the policy themselves.
"""
from __future__ import annotations

import os
import sys

from runtime import allocator
from runtime.cli import run_cli


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m runtime.launch (-m module | script.py) [args ...]")
    allocator.apply([sys.executable, *sys.argv[1:]])
    # Already under the policy (or it is off): run the command in a fresh interpreter image.
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])


if __name__ == "__main__":
    run_cli(main, apply_allocator=False)
