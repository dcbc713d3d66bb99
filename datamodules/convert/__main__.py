"""``python -m datamodules.convert``: see :mod:`datamodules.convert.cli`."""
from body.cli import run_cli
from datamodules.convert.cli import main

if __name__ == "__main__":
    run_cli(main)
