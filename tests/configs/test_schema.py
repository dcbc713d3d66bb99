"""Typed configs: every group rejects an unknown nested key and a wrong type in one line, when composed."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from configs import loader
from configs.loader import compose
from runtime.errors import UserError

# (root, group choice, an unknown nested key, a key with a wrong-typed value, the expected type's name)
CASES = [
    ("train", "model=bigraph", "model.net.fusion_graf=true", "model.net.num_blocks=five", "Integer"),
    ("train", "model=pymaf", "model.backbone.widht=8", "model.pyramid=maybe", "valid bool"),
    ("train", "model=hmr", "model.optim.learning_rate=1", "model.n_iter=3.5", "Integer"),
    ("train", "data=synthetic", "data.augment.flip=0.5", "data.batch_size=abc", "Integer"),
    ("train", "data=bigraph_mix", "data.train.sources.h36m.wieght=1", "data.train.epoch_samples=many", "Integer"),
    ("train", "trainer=ddp", "trainer.max_epoch=3", "trainer.max_epochs=x", "Integer"),
    ("train", "logger=wandb", "logger.projet=x", "logger.offline=perhaps", "valid bool"),
    ("train", "body=smpl", "body.gendr=male", "body.smpl_dir=[1,2]", "to string"),
    ("train", "model=hmr", "sed=1", "seed=zero", "Integer"),
    ("eval", "data=synthetic", "data.eval.3dpw.shard=x", "data.num_workers=two", "Integer"),
    ("show_data", "data=synthetic", "per_sorce=2", "per_source=two", "Integer"),
    ("data_stats", "data=synthetic", "drawz=1", "draws=1e", "Integer"),
    ("show_body", "body=open", "image=1", "image_size=big", "Integer"),
]


@pytest.mark.parametrize("root, choice, unknown, wrong, type_name", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_each_group_rejects_unknown_keys_and_wrong_types_in_one_line(root, choice, unknown, wrong, type_name):
    with pytest.raises(UserError) as err:
        compose(root, [choice, unknown])
    message = str(err.value)
    assert "\n" not in message and f"unknown config key {unknown.split('=')[0]!r}" in message
    assert "valid keys there are" in message
    with pytest.raises(UserError) as err:
        compose(root, [choice, wrong])
    message = str(err.value)
    assert "\n" not in message and wrong.split("=")[0] in message and type_name in message


def test_a_misspelt_key_in_a_group_file_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "logger").mkdir()
    (tmp_path / "logger" / "typo.yaml").write_text("name: wandb\nprojects: meshrec\n")
    monkeypatch.setattr(loader, "CONFIG_DIR", tmp_path)
    (tmp_path / "show.yaml").write_text("defaults:\n  - logger: typo\n")
    with pytest.raises(UserError, match=r"configs/logger/typo.yaml: unknown config key 'logger.projects'; "
                                        r"valid keys there are name, project, offline"):
        compose("show", [])


def test_values_arrive_typed_and_complete():
    cfg = compose("train", ["model=bigraph", "data.batch_size=16", "model.net.num_blocks=3", "trainer.max_epochs=7"])
    assert cfg.data.batch_size == 16 and cfg.model.net.num_blocks == 3 and cfg.trainer.max_epochs == 7
    assert isinstance(cfg.model.optim.lr, float) and cfg.model.optim.betas == [0.9, 0.999]
    assert not OmegaConf.missing_keys(cfg)
    # an ablation row is checked too, and model.* overrides still win over it
    cfg = compose("train", ["model=bigraph", "ablation=bigraph_t4_a_mesh_only", "model.net.skeleton_graph=true"])
    assert cfg.model.net.skeleton_graph is True and cfg.ablation == "bigraph_t4_a_mesh_only"


def test_a_mandatory_key_left_unset_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "body").mkdir()
    (tmp_path / "body" / "short.yaml").write_text("name: open\n")
    (tmp_path / "show_body.yaml").write_text("defaults:\n  - body: short\nout: x.png\nimage_size: 8\n")
    monkeypatch.setattr(loader, "CONFIG_DIR", tmp_path)
    with pytest.raises(UserError, match=r"mandatory keys not set: body.gender, body.smpl_dir"):
        compose("show_body", [])
