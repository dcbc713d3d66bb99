"""``make data-stats``: draw N samples from the training loader and print, as JSON, what came out.

Per source: the configured weight, the number of samples drawn and their share; the largest
difference between share and weight in percentage points; the skipped-sample count with reasons; and
the loader's throughput with the configured workers and augmentation (:func:`datamodules.stats.draw_stats`).

    python -m cli.data_stats [data=synthetic] [draws=20000] [data.num_workers=2]
"""
from __future__ import annotations

import json
import sys

from configs.loader import compose
from datamodules.mixed import MixedDataModule
from datamodules.stats import draw_stats
from runtime.cli import run_cli


def main(argv: list[str] | None = None) -> None:
    cfg = compose("data_stats", sys.argv[1:] if argv is None else argv)
    dm = MixedDataModule(cfg.data, rank=0, world_size=1)
    print(json.dumps(draw_stats(dm, int(cfg.draws)), indent=2))


if __name__ == "__main__":
    run_cli(main)
