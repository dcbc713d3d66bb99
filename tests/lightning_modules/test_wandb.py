"""logger=wandb, offline: the config, losses, validation metrics, throughput and overlay images land in the run,
a resumed run continues the same W&B run id, and no secret is written anywhere."""
from __future__ import annotations

import re
from pathlib import Path

from cli import train

FAKE_KEY = "fake-" + "0123456789abcdef" * 2 + "f00d"


def _args(root, out, *extra):
    return ["model=hmr", "model.backbone.width=8", f"data.root={root}", "data.batch_size=4", "data.eval_batch_size=4",
            "data.num_workers=0", "data.train.epoch_samples=4", "trainer.max_epochs=1", "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1", "logger=wandb", "logger.offline=true", f"out_dir={out}", *extra]


def _strings(path: Path) -> str:
    """The printable runs of a binary file (the .wandb log is protobuf records)."""
    return "\n".join(m.decode() for m in re.findall(rb"[ -~]{4,}", path.read_bytes()))


def test_offline_wandb_run_holds_everything_continues_on_resume_and_keeps_no_secret(tiny_data_module, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    first = train.main(_args(tiny_data_module.root, tmp_path))
    run_dir = Path(first["run_dir"])
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    runs = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1
    logged = _strings(next(runs[0].glob("run-*.wandb")))
    for key in ("train/loss", "train/samples_per_s", "train/data_share", "train/lr", "val/3dpw/mpjpe",
                "val/3dpw/mpjpe_M0", "epoch_samples", "allow_nonpaper_setup"):   # metrics, throughput, config
        assert key in logged, key
    assert list(runs[0].glob("files/media/images/val/overlays_*.png"))

    train.main(_args(tiny_data_module.root, tmp_path, "trainer.max_epochs=2", "ckpt_path=last"))   # resumed
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs)   # one W&B run, two attempts

    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []
