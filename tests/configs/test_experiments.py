"""The papers' recipes as configs (``experiment=...``), the real-data guard and ``init_weights``."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from configs.guards import require_paper_setup
from configs.loader import compose
from runtime.errors import UserError


def test_pymaf_recipe_is_the_papers_two_stages():
    """Section 4 / A.2: 60 epochs on H36M, then 60 on the mixture from those weights; batch 64, Adam 5e-5 without
    decay; an epoch of 312,188 samples (H36M's training frames, the official dataset length)."""
    one = compose("train", ["model=pymaf", "experiment=pymaf_paper_h36m"])
    two = compose("train", ["model=pymaf", "experiment=pymaf_paper"])
    for cfg in (one, two):
        assert cfg.model.name == "pymaf" and cfg.body.name == "smpl" and cfg.model.backbone.width == 64
        assert (cfg.data.batch_size, cfg.model.optim.name, cfg.model.optim.lr, cfg.model.optim.weight_decay) == \
            (64, "adam", 5e-5, 0.0)
        assert (cfg.trainer.max_epochs, cfg.data.train.epoch_samples) == (60, 312188)
    assert list(one.data.train.sources) == ["h36m"] and one.init_weights is None
    assert set(two.data.train.sources) == {"h36m", "lsp", "mpii", "lspet", "coco", "mpi_inf_3dhp"}
    assert two.init_weights == f"{two.out_dir}/{one.run_name}/checkpoints/last.ckpt"
    # PyMAF's real-data evaluation covers its Tables 1-3: 3DPW, H36M, LSP segmentation, COCO AP.
    assert set(two.data.eval) == {"3dpw", "h36m_p2", "lsp", "coco"}


def test_bigraph_recipe():
    """Section 4.4: batch 64, Adam 2.5e-4, 50 epochs; Fig. 5: about 5,000 steps an epoch; the five-set mixture."""
    cfg = compose("train", ["experiment=bigraph_paper"])
    assert cfg.model.name == "bigraph" and cfg.body.name == "smpl"
    assert (cfg.data.batch_size, cfg.model.optim.lr, cfg.trainer.max_epochs) == (64, 2.5e-4, 50)
    assert cfg.data.train.epoch_samples // cfg.data.batch_size == 5000
    weights = {k: v.weight for k, v in cfg.data.train.sources.items()}
    assert weights == {"h36m": 0.3, "up3d": 0.2, "lsp": 0.1, "coco": 0.2, "mpii": 0.2}


def test_command_line_wins_over_the_recipe_but_not_its_model():
    cfg = compose("train", ["experiment=bigraph_paper", "trainer=ddp", "trainer.max_epochs=3"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.max_epochs == 3
    with pytest.raises(UserError, match="recipe for model 'pymaf', not 'bigraph': pass MODEL=pymaf"):
        compose("train", ["model=bigraph", "experiment=pymaf_paper"])
    with pytest.raises(UserError, match="valid choices are bigraph_paper, pymaf_paper, pymaf_paper_h36m"):
        compose("train", ["experiment=bigraph_papr"])


def _resolved(*overrides: str) -> dict:
    return OmegaConf.to_container(compose("train", list(overrides)), resolve=True)


def test_real_data_needs_imagenet_weights_and_licensed_smpl(monkeypatch):
    monkeypatch.delenv("IMAGENET_RESNET50", raising=False)
    require_paper_setup(_resolved())                                        # synthetic: exempt
    with pytest.raises(UserError, match=r"body=open: .* set body=smpl .* or allow_nonpaper_setup=true"):
        require_paper_setup(_resolved("data=bigraph_mix"))
    with pytest.raises(UserError, match=r"random weights: .* model.backbone.weights=.* or allow_nonpaper_setup"):
        require_paper_setup(_resolved("data=bigraph_mix", "body=smpl"))
    with pytest.raises(UserError, match="random weights"):
        require_paper_setup(_resolved("experiment=bigraph_paper"))          # IMAGENET_RESNET50 unset
    require_paper_setup(_resolved("experiment=bigraph_paper", "model.backbone.weights=/x/resnet50.pth"))
    require_paper_setup(_resolved("data=bigraph_mix", "allow_nonpaper_setup=true"))
    require_paper_setup(_resolved("model=pymaf", "experiment=pymaf_paper"))  # stage 2 starts from stage 1


def test_the_guard_stops_make_train_before_anything_is_built(tmp_path):
    from cli import train

    with pytest.raises(UserError, match="body=open"):
        train.main(["data=h36m", f"data.root={tmp_path}", f"out_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())                                      # no run directory written


def test_init_weights_starts_a_new_run_from_a_checkpoints_weights(tmp_path):
    """Stage 2's start: the module gets exactly the saved weights; a checkpoint of another model or with
    other shapes is refused in one line."""
    from lightning_modules.registry import build_module, load_weights

    def module(width: int, name: str = "hmr"):
        cfg = _resolved(f"model={name}", f"model.backbone.width={width}")
        return build_module(cfg["model"], cfg["body"], [], 64)

    torch.manual_seed(0)
    trained = module(8)
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": {"model": dict(trained.model_cfg)}}, path)
    torch.manual_seed(1)
    fresh = module(8)
    load_weights(fresh, str(path))
    for (k, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(UserError, match="of another shape"):
        load_weights(module(16), str(path))
    with pytest.raises(UserError, match="holds a 'hmr' model, not 'pymaf'"):
        load_weights(module(8, "pymaf"), str(path))
