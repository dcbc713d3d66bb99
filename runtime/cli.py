"""Run a command-line entry point: the allocator policy first, then ``main``; user errors become one line
on stderr and exit status 2."""
from __future__ import annotations

import sys
from typing import Callable

from runtime import allocator
from runtime.errors import UserError


def run_cli(main: Callable[[], object], apply_allocator: bool = True) -> None:
    """Call ``main()`` as an entry point; ``apply_allocator`` re-executes the process under the allocator
    policy first (``runtime.allocator.apply``)."""
    try:
        if apply_allocator:
            allocator.apply()
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
