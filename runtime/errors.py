"""The suite's user-facing error: one line that says what was wrong and what to do.

Command-line entry points catch it (``runtime.cli.run_cli``), print ``error: <message>`` and exit with
status 2, without a traceback. Everything else is a bug and keeps its traceback.
"""


class UserError(RuntimeError):
    """Bad input, config or missing file; the message is a single actionable line."""
