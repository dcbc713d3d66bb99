"""``make eval``: each protocol's row against known answers and against the validation path, and the command.

The known answers come from an oracle model that predicts the ground truth: 3D errors 0, LSP masks equal
to the annotation up to edge pixels, COCO AP 1. The oracle expresses the true (synthetic) camera in the
networks' crop camera (f = 5000 px at the crop centre) by a projective change of the mesh, so its
predictions go through exactly the same projection and affine code as a trained model's.
"""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from body.errors import UserError
from lightning_modules import evaluate
from lightning_modules.evaluation import CocoAnnotations, ProtocolEvaluator
from lightning_modules.hmr import HMRModule
from lightning_modules.train import model_class

RES = 224


class OracleModule(HMRModule):
    """Predicts the batch's ground truth; ``shift_px`` moves every 2D prediction right by that many input pixels."""

    shift_px = 0.0

    def run_network(self, batch):
        gt = self.ground_truth_mesh(batch)
        transl = (batch["vertices"] - gt["vertices"]).mean(1, keepdim=True)       # camera = body + transl
        f, p = batch["focal_length"][:, None], batch["principal_point"][:, None]   # (B, 1, 2) input px
        p = p + torch.tensor([self.shift_px, 0.0])

        def to_crop_camera(x):   # 5000 x'/z' + 112 = f x / z + p
            c = 5000.0 / f[..., :1]
            xy = (f * x[..., :2] + (p - RES / 2) * x[..., 2:]) * c / 5000.0
            return torch.cat([xy, x[..., 2:] * c], dim=-1)

        kp = gt["keypoints49_3d"] + transl
        kp_norm = 2.0 * (f * kp[..., :2] / kp[..., 2:] + p) / RES - 1.0
        cam = torch.tensor([1e6, 0.0, 0.0]).expand(len(f), 3)
        pred = {"vertices": to_crop_camera(batch["vertices"]), "keypoints_2d": kp_norm, "cam": cam}
        return {"oracle": pred, "body_vertices": gt["vertices"], "iterations": []}

    def final_prediction(self, out):
        return out["oracle"]

    def evaluated_meshes(self, out):
        return {"": out["body_vertices"]}


def tiny_hmr_config() -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load("configs/model/hmr.yaml"))
    cfg["backbone"]["width"] = 8
    return cfg


@pytest.fixture(scope="module")
def oracle():
    return OracleModule(model=tiny_hmr_config()).eval()


def run_set(module, dm, name, protocol, coco=None):
    evaluator = ProtocolEvaluator(module, protocol, coco)
    with torch.no_grad():
        for batch in dm.eval_dataloader(name):
            evaluator.update(batch, module.run_network(batch))
    return evaluator


def test_oracle_has_zero_3d_errors(oracle, tiny_data_module):
    for name, protocol in (("3dpw", "3dpw"), ("h36m", "h36m"), ("up3d", "up3d")):
        ev = run_set(oracle, tiny_data_module, name, protocol)
        row = ev.row()["columns"]
        assert ev.evaluated == ev.samples > 0
        assert list(row) == {"3dpw": ["pve", "mpjpe", "pa_mpjpe"], "h36m": ["mpjpe", "pa_mpjpe"],
                             "up3d": ["mpve"]}[protocol]
        assert all(v is not None and 0.0 <= v < 1e-2 for v in row.values()), row


def test_oracle_lsp_masks_match_the_original_resolution_annotation(oracle, tiny_data_module):
    good = run_set(oracle, tiny_data_module, "lsp", "lsp")
    row = good.row()["columns"]
    assert good.evaluated == good.samples > 0
    assert row["fb_acc"] > 0.995 and row["parts_acc"] > 0.99, row
    assert row["fb_f1"] > 0.98 and row["parts_f1"] > 0.9, row
    shifted = OracleModule(model=tiny_hmr_config()).eval()
    shifted.shift_px = 8.0
    bad = run_set(shifted, tiny_data_module, "lsp", "lsp").row()["columns"]
    assert bad["fb_f1"] < row["fb_f1"] - 0.05 and bad["parts_f1"] < row["parts_f1"] - 0.1, (row, bad)


def test_oracle_coco_ap_is_one_and_a_shift_lowers_it(oracle, tiny_data_module):
    row = run_set(oracle, tiny_data_module, "coco", "coco").row()["columns"]
    assert row["ap"] == pytest.approx(1.0) and row["ap50"] == pytest.approx(1.0)
    shifted = OracleModule(model=tiny_hmr_config()).eval()
    shifted.shift_px = 12.0
    bad = run_set(shifted, tiny_data_module, "coco", "coco").row()["columns"]
    assert bad["ap"] < 0.9, bad


def test_coco_official_annotations_path_equals_the_samples_path(oracle, tiny_data_module, tmp_path):
    """The same ground truth written as a COCO annotation file (plus a crowd region and a person without
    keypoints, which COCOeval ignores) gives the same AP as the ground truth read from the samples."""
    shifted = OracleModule(model=tiny_hmr_config()).eval()
    shifted.shift_px = 3.0
    from_samples = run_set(shifted, tiny_data_module, "coco", "coco")
    ap = from_samples.metrics["coco"]
    images, annotations = [], []
    for name, image_id in from_samples.coco_images.items():
        images.append({"id": 1000 + image_id, "file_name": f"val/{name}"})
        sel = [i for i, g in enumerate(torch.cat(ap.gt_image_ids).tolist()) if g == image_id]
        for i in sel:
            kp, box = torch.cat(ap.gt_keypoints)[i], torch.cat(ap.gt_boxes)[i]
            annotations.append({"image_id": 1000 + image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                                "area": float(torch.cat(ap.gt_areas)[i]), "bbox": box.tolist(), "iscrowd": 0,
                                "num_keypoints": int((kp[:, 2] > 0).sum())})
        annotations.append({"image_id": 1000 + image_id, "category_id": 1, "keypoints": [0] * 51, "area": 10.0,
                            "bbox": [0, 0, 3, 3], "iscrowd": 1, "num_keypoints": 0})
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1}]}))
    coco = CocoAnnotations.from_json(str(path))
    from_file = run_set(shifted, tiny_data_module, "coco", "coco", coco)
    assert from_file.row()["columns"] == from_samples.row()["columns"]


def test_evaluator_3d_row_equals_the_validation_metrics(tiny_data_module):
    torch.manual_seed(0)
    model = model_class("hmr")(model=tiny_hmr_config(), eval_sets=["3dpw"]).eval()
    ev = ProtocolEvaluator(model, "3dpw")
    with torch.no_grad():
        for batch in tiny_data_module.eval_dataloader("3dpw"):
            out = model.run_network(batch)
            ev.update(batch, out)
            model.update_val_metrics(batch, out, model.val_metrics[0])
    row = ev.row()
    for key in ("pve", "mpjpe", "pa_mpjpe"):
        assert row["columns"][key] == pytest.approx(float(model.val_metrics[0][key].compute()), abs=1e-3)
    per_it = row["per_iteration"]["mpjpe"]
    # M0 = the mean-parameter start, then HMR's 3 IEF iterations, the last being the final estimate;
    # validation logs the iterations only
    assert len(per_it) == 4 and per_it[-1] == pytest.approx(row["columns"]["mpjpe"], abs=1e-3)
    assert per_it[1:] == pytest.approx(model.val_metrics[0]["per_iteration"].compute().tolist(), abs=1e-3)
    assert row["columns"]["mpjpe"] > 10.0   # an untrained network is far off


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_data_module, tmp_path_factory):
    """make train's own entry point, one step of a reduced-width PyMAF, on the tiny data."""
    from lightning_modules import train
    out = tmp_path_factory.mktemp("runs")
    summary = train.main(["model=pymaf", "model.backbone.width=8", f"data.root={tiny_data_module.root}",
                          "data.batch_size=4", "data.eval_batch_size=4", "data.num_workers=0", "trainer.max_epochs=1",
                          "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", f"out_dir={out}"])
    return summary["last_checkpoint"]


def test_make_eval_writes_every_papers_row(trained_checkpoint, tiny_data_module, tmp_path, capsys):
    out = tmp_path / "eval.json"
    summary = evaluate.main([f"ckpt={trained_checkpoint}", "model=pymaf", f"data.root={tiny_data_module.root}",
                             "data.num_workers=0", f"out={out}"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    sets = summary["sets"]
    assert list(sets) == ["3dpw", "h36m", "up3d", "lsp", "coco"] and summary["model"] == "pymaf"
    assert list(sets["lsp"]["columns"]) == ["fb_acc", "fb_f1", "parts_acc", "parts_f1"]
    assert list(sets["coco"]["columns"]) == ["ap", "ap50", "ap75", "apm", "apl"]
    for name in ("3dpw", "h36m", "up3d"):
        assert len(sets[name]["per_iteration"]["mpjpe"]) == 4          # PyMAF's Table 6: M0 (mean) .. M3
        assert len(sets[name]["per_iteration"]["pa_mpjpe"]) == 4
    for result in sets.values():
        assert result["evaluated"] == result["samples"] > 0 and result["skipped"] == 0
        assert all(v is not None for v in result["columns"].values())
    printed = capsys.readouterr().out
    assert "3dpw [3dpw, 1/1 samples]: pve " in printed and "mpjpe per iteration:" in printed


def test_make_eval_errors_are_one_line(trained_checkpoint, tiny_data_module, tmp_path):
    root = f"data.root={tiny_data_module.root}"
    cases = [
        ([f"ckpt={tmp_path / 'none.ckpt'}", root], "no such file"),
        ([f"ckpt={trained_checkpoint}", "model=bigraph", root], "holds a 'pymaf' model, not 'bigraph'"),
        ([f"ckpt={trained_checkpoint}", "sets=3dpw,mpii", root], "unknown evaluation set(s) mpii"),
        ([f"ckpt={trained_checkpoint}", "protocol=pck", root], "valid choices are 3dpw, h36m"),
        ([f"ckpt={trained_checkpoint}", "device=tpu", root], "valid choices are auto, cpu, cuda"),
        ([root], "ckpt=<path> is required"),
    ]
    for argv, message in cases:
        with pytest.raises(UserError) as err:
            evaluate.main(argv)
        assert message in str(err.value) and "\n" not in str(err.value), argv
