"""Run a command-line entry point: user errors become one line on stderr and exit status 2."""
from __future__ import annotations

import sys
from typing import Callable

from body.errors import UserError


def run_cli(main: Callable[[], object]) -> None:
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
