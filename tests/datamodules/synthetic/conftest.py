"""Shared fixtures of the synthetic-data tests: a tiny generated data set and its samples (the body model
fixture is the data tests' one, tests/datamodules/conftest.py)."""
from __future__ import annotations

import pytest

from datamodules.shards import read_shard
from datamodules.synthetic.dataset import generate
from datamodules.synthetic.scene import SceneGenerator

TINY_SIZE = 0.01   # 10 samples per training source, 1 per evaluation set
TINY_SEED = 0


@pytest.fixture(scope="session")
def scene_generator(body_model):
    """A scene generator over the shared body model."""
    return SceneGenerator(body_model)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """(folder, manifest) of a tiny data set generated once: seed 0, size 0.01, one process."""
    out = tmp_path_factory.mktemp("synthetic") / "data"
    manifest = generate(out, seed=TINY_SEED, size=TINY_SIZE, workers=1, log=None)
    return out, manifest


@pytest.fixture(scope="session")
def tiny_samples(tiny_data):
    """{(split, source): [Sample, ...]} of the tiny data set, in shard order."""
    out, manifest = tiny_data
    return {(split, name): [s for shard in entry["shards"] for s in read_shard(str(out / shard))]
            for split in ("train", "eval") for name, entry in manifest[split].items()}
