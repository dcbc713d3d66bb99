"""The synthetic data set is a function of (seed, size, body): byte-identical shards, any worker count;
existing data sets are reused, others replaced atomically; errors are one line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.make_data import main
from datamodules.shards import iter_shard_members
from datamodules.synthetic import dataset
from datamodules.synthetic.dataset import generate
from runtime.cli import run_cli
from runtime.errors import UserError


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def members(root: Path, shard: str) -> list[dict]:
    return list(iter_shard_members(str(root / shard)))


def test_same_seed_gives_the_same_bytes_with_any_number_of_workers(tiny_data, tmp_path):
    out, _ = tiny_data
    generate(tmp_path / "w2", seed=0, size=0.01, workers=2, log=None)
    assert files(tmp_path / "w2") == files(out)


def test_samples_do_not_depend_on_the_size_and_differ_between_seeds(tiny_data, tmp_path):
    out, _ = tiny_data
    small = tmp_path / "small"
    other = tmp_path / "other"
    generate(small, seed=0, size=0.002, workers=1, log=None)  # 2 per training source, 1 per eval set
    generate(other, seed=1, size=0.002, workers=1, log=None)
    shard = "train/coco/coco-000000.tar"
    ref = members(out, shard)[:2]
    same = members(small, shard)
    assert [m["__key__"] for m in same] == ["coco_000000", "coco_000001"]
    for a, b in zip(same, ref):  # rendered in a batch of 2 instead of 10: the very same sample
        assert {k: v for k, v in a.items() if k != "__url__"} == {k: v for k, v in b.items() if k != "__url__"}
    diff = members(other, shard)
    assert all(a["jpg"] != b["jpg"] and a["ann.msgpack"] != b["ann.msgpack"] for a, b in zip(diff, same))


def test_an_existing_data_set_is_reused(tiny_data):
    out, manifest = tiny_data
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    lines: list[str] = []
    assert generate(out, seed=0, size=0.01, workers=1, log=lines.append) == manifest
    assert len(lines) == 1 and "nothing to do" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_other_parameters_replace_the_data_set(tmp_path):
    out = tmp_path / "data"
    generate(out, seed=0, size=0.001, workers=1, log=None)
    first = files(out)
    m = generate(out, seed=3, size=0.001, workers=1, log=None)
    assert m["seed"] == 3 and files(out) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary or old folder left


def test_an_interrupted_run_leaves_no_data_set(tmp_path, monkeypatch):
    out = tmp_path / "data"
    generate(out, seed=0, size=0.001, workers=1, log=None)
    old = files(out)
    calls = []
    real = dataset.write_shards

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset, "write_shards", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(out, seed=1, size=0.001, workers=1, log=None)
    assert files(out) == old  # the previous data set is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "fresh", seed=1, size=0.001, workers=1, log=None)
    assert not (tmp_path / "fresh").exists()


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="non-empty folder"):
        generate(tmp_path / "mine", seed=0, size=0.001, log=None)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "--size must be a positive number"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--body", "smpl"], "SMPL"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("SMPL_DIR", raising=False)
    with pytest.raises(SystemExit) as exc:
        # apply_allocator=False: the allocator policy would re-execute the test runner itself
        run_cli(lambda: main(["--out", str(tmp_path / "d"), "--workers", "1", *argv]), apply_allocator=False)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_cli_writes_the_data_set(tmp_path, capsys):
    main(["--out", str(tmp_path / "d"), "--size", "0.001", "--seed", "2", "--workers", "1"])
    assert "wrote 10 samples" in capsys.readouterr().out
    assert (tmp_path / "d" / "manifest.json").exists()
    assert os.listdir(tmp_path) == ["d"]
