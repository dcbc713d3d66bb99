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

from cli import evaluate
from lightning_modules.decoding import BodyDecoder
from lightning_modules.evaluation import CocoAnnotations, ProtocolMetrics, metric_values, stable_image_id
from lightning_modules.prediction import Estimate, Prediction
from lightning_modules.registry import model_class
from body.model import BodyModel
from body.rotations import axis_angle_to_rotmat
from runtime.errors import UserError

RES = 224


class OracleDecoder(BodyDecoder):
    """Decodes every prediction into the ground truth of the batch it last saw (``see``); ``shift_px`` moves
    every 2D prediction right by that many input pixels. Its 3D meshes are the body model on the ground-truth
    parameters (the prediction :func:`oracle_prediction` makes)."""

    shift_px = 0.0

    def see(self, batch):
        self.batch = batch

    def final(self, prediction):
        batch = self.batch
        gt = self.ground_truth_mesh(batch)
        transl = batch["transl"][:, None]                                          # camera = body + transl
        f, p = batch["focal_length"][:, None], batch["principal_point"][:, None]   # (B, 1, 2) input px
        p = p + torch.tensor([self.shift_px, 0.0])

        def to_crop_camera(x):   # 5000 x'/z' + 112 = f x / z + p
            c = 5000.0 / f[..., :1]
            xy = (f * x[..., :2] + (p - RES / 2) * x[..., 2:]) * c / 5000.0
            return torch.cat([xy, x[..., 2:] * c], dim=-1)

        kp = gt["keypoints49_3d"] + transl
        kp_norm = 2.0 * (f * kp[..., :2] / kp[..., 2:] + p) / RES - 1.0
        cam = torch.tensor([1e6, 0.0, 0.0]).expand(len(f), 3)
        return {"vertices": to_crop_camera(batch["vertices"] + transl), "keypoints_2d": kp_norm, "cam": cam}


def oracle_prediction(batch) -> Prediction:
    """One estimate: the ground-truth pose and shape."""
    rotmat = axis_angle_to_rotmat(batch["pose"].reshape(-1, 24, 3))
    return Prediction(iterations=[Estimate(pose_rotmat=rotmat, betas=batch["betas"],
                                           cam=torch.tensor([1.0, 0.0, 0.0]).expand(len(rotmat), 3))])


def tiny_hmr_config() -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load("configs/model/hmr.yaml"))
    cfg["backbone"]["width"] = 8
    return cfg


@pytest.fixture(scope="module")
def body():
    return BodyModel.from_config("open", "neutral", None)


def oracle(body, shift_px: float = 0.0) -> OracleDecoder:
    decoder = OracleDecoder(body, RES)
    decoder.shift_px = shift_px
    return decoder


def run_set(decoder, dm, name, protocol, coco=None) -> dict:
    metrics = ProtocolMetrics(decoder, protocol, coco)
    with torch.no_grad():
        for batch in dm.eval_dataloader(name):
            decoder.see(batch)
            metrics.update(batch, oracle_prediction(batch))
    return metrics


def test_oracle_has_zero_3d_errors(body, tiny_data_module):
    for name, protocol in (("3dpw", "3dpw"), ("h36m", "h36m"), ("up3d", "up3d")):
        full = run_set(oracle(body), tiny_data_module, name, protocol).row()
        row = full["columns"]
        assert full["evaluated"] == full["samples"] > 0
        assert list(row) == {"3dpw": ["pve", "mpjpe", "pa_mpjpe"], "h36m": ["mpjpe", "pa_mpjpe"],
                             "up3d": ["mpve"]}[protocol]
        assert all(v is not None and 0.0 <= v < 1e-2 for v in row.values()), row


def test_oracle_lsp_masks_match_the_original_resolution_annotation(body, tiny_data_module):
    good = run_set(oracle(body), tiny_data_module, "lsp", "lsp").row()
    row = good["columns"]
    assert good["evaluated"] == good["samples"] > 0
    assert row["fb_acc"] > 0.995 and row["parts_acc"] > 0.99, row
    assert row["fb_f1"] > 0.98 and row["parts_f1"] > 0.9, row
    bad = run_set(oracle(body, 8.0), tiny_data_module, "lsp", "lsp").row()["columns"]
    assert bad["fb_f1"] < row["fb_f1"] - 0.05 and bad["parts_f1"] < row["parts_f1"] - 0.1, (row, bad)


def test_oracle_coco_ap_is_one_and_a_shift_lowers_it(body, tiny_data_module):
    row = run_set(oracle(body), tiny_data_module, "coco", "coco").row()["columns"]
    assert row["ap"] == pytest.approx(1.0) and row["ap50"] == pytest.approx(1.0)
    bad = run_set(oracle(body, 12.0), tiny_data_module, "coco", "coco").row()["columns"]
    assert bad["ap"] < 0.9, bad


def test_coco_official_annotations_path_equals_the_samples_path(body, tiny_data_module, tmp_path):
    """The same ground truth written as a COCO annotation file (plus a crowd region and a person without
    keypoints, which COCOeval ignores) gives the same AP as the ground truth read from the samples."""
    shifted = oracle(body, 3.0)
    from_samples = run_set(shifted, tiny_data_module, "coco", "coco")
    ap = from_samples.metrics["coco"]
    names = {i or k for batch in tiny_data_module.eval_dataloader("coco")
             for i, k in zip(batch.get("image_id", batch["key"]), batch["key"])}
    images, annotations = [], []
    for file_id, name in enumerate(sorted(names), start=1000):   # the file's ids are COCO's, not ours
        images.append({"id": file_id, "file_name": f"val/{name}"})
        sel = [i for i, g in enumerate(torch.cat(ap.gt_image_ids).tolist()) if g == stable_image_id(name)]
        assert sel
        for i in sel:
            kp, box = torch.cat(ap.gt_keypoints)[i], torch.cat(ap.gt_boxes)[i]
            annotations.append({"image_id": file_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                                "area": float(torch.cat(ap.gt_areas)[i]), "bbox": box.tolist(), "iscrowd": 0,
                                "num_keypoints": int((kp[:, 2] > 0).sum())})
        annotations.append({"image_id": file_id, "category_id": 1, "keypoints": [0] * 51, "area": 10.0,
                            "bbox": [0, 0, 3, 3], "iscrowd": 1, "num_keypoints": 0})
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1}]}))
    coco = CocoAnnotations.from_json(str(path))
    from_file = run_set(shifted, tiny_data_module, "coco", "coco", coco)
    assert from_file.row()["columns"] == from_samples.row()["columns"]


def test_per_iteration_rows_start_at_the_mean_parameters(tiny_data_module):
    """HMR's row has M0 .. M3: M0 is the mean-parameter start, the same for any weights; M3 is the final
    estimate, so it equals the row's MPJPE."""
    rows = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = model_class("hmr")(model=tiny_hmr_config(), eval_sets=["3dpw"]).eval()
        with torch.no_grad():
            for batch in tiny_data_module.eval_dataloader("3dpw"):
                model.evaluators[0].update(batch, model(batch))
        rows.append(model.evaluators[0].row())
    for row in rows:
        per_it = row["per_iteration"]["mpjpe"]
        assert list(per_it) == ["M0", "M1", "M2", "M3"]
        assert per_it["M3"] == pytest.approx(row["columns"]["mpjpe"], abs=1e-3)
        assert row["columns"]["mpjpe"] > 10.0   # an untrained network is far off
    assert rows[0]["per_iteration"]["mpjpe"]["M0"] == rows[1]["per_iteration"]["mpjpe"]["M0"]
    assert rows[0]["per_iteration"]["mpjpe"]["M1"] != rows[1]["per_iteration"]["mpjpe"]["M1"]


@pytest.fixture(scope="module")
def trained_run(tiny_data_module, tmp_path_factory):
    """make train's own entry point, one step of a reduced-width PyMAF, on the tiny data (whose evaluation
    sets are one batch each, so its validation sees every sample)."""
    from cli import train
    out = tmp_path_factory.mktemp("runs")
    return train.main(["model=pymaf", "model.backbone.width=8", f"data.root={tiny_data_module.root}",
                       "data.batch_size=4", "data.eval_batch_size=4", "data.num_workers=0", "trainer.max_epochs=1",
                       "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", f"out_dir={out}"])


@pytest.fixture(scope="module")
def trained_checkpoint(trained_run):
    return trained_run["last_checkpoint"]


def test_make_eval_equals_the_validation_of_make_train(trained_run, tiny_data_module, tmp_path):
    """One checkpoint, one data set: the metrics make train's last validation logged and the ones make eval
    writes have the same keys (every set, PyMAF's M0..M3) and the same values."""
    summary = evaluate.main([f"ckpt={trained_run['last_checkpoint']}", f"data.root={tiny_data_module.root}",
                             "data.eval_batch_size=4", "data.num_workers=0", f"out={tmp_path / 'eval.json'}"])
    from_eval = {f"val/{name}/{key}": value for name, row in summary["sets"].items()
                 for key, value in row["metrics"].items()}
    from_training = trained_run["validation"]
    assert set(from_eval) == set(from_training)
    assert {k.split("/")[1] for k in from_eval} == {"3dpw", "h36m", "up3d", "lsp", "coco"}
    assert {"val/3dpw/mpjpe_M0", "val/3dpw/pa_mpjpe_M3", "val/lsp/parts_f1", "val/coco/ap"} <= set(from_eval)
    assert from_eval == pytest.approx(from_training, abs=1e-4)
    # make eval's mean-pose rows: make train's summary's on the same samples, and PyMAF's M0 (two paths)
    mean_pose = {f"val/{name}/{key}": value for name, row in summary["mean_pose"].items() for key, value in row.items()}
    assert mean_pose == pytest.approx(trained_run["mean_pose"], abs=1e-4)
    assert summary["mean_pose"]["h36m"]["mpjpe"] == pytest.approx(summary["sets"]["h36m"]["metrics"]["mpjpe_M0"], abs=1e-3)


def test_make_train_reports_the_mean_pose_baseline_on_the_same_samples(trained_run):
    """The summary's mean-pose row equals PyMAF's own M0 (its regressors start from Theta_0, a buffer that
    training does not move) on the 3D sets: two paths to the same numbers."""
    baseline, validation = trained_run["mean_pose"], trained_run["validation"]
    for name in ("3dpw", "h36m"):                       # (UP-3D's row has MPVE only)
        for metric in ("mpjpe", "pa_mpjpe"):
            assert baseline[f"val/{name}/{metric}"] == pytest.approx(validation[f"val/{name}/{metric}_M0"], abs=1e-3)
    assert baseline["val/3dpw/mpjpe"] > 0 and {"val/3dpw/pve", "val/up3d/mpve", "val/lsp/parts_f1"} <= set(baseline)


def test_make_eval_writes_every_papers_row(trained_checkpoint, tiny_data_module, tmp_path, capsys):
    out = tmp_path / "eval.json"
    summary = evaluate.main([f"ckpt={trained_checkpoint}", "model=pymaf", f"data.root={tiny_data_module.root}",
                             "data.num_workers=0", f"out={out}"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    sets = summary["sets"]
    assert list(sets) == ["3dpw", "h36m", "up3d", "lsp", "coco"] and summary["model"] == "pymaf"
    assert list(sets["lsp"]["columns"]) == ["fb_acc", "fb_f1", "parts_acc", "parts_f1"]
    assert list(sets["coco"]["columns"]) == ["ap", "ap50", "ap75", "apm", "apl"]
    for name in ("3dpw", "h36m", "up3d"):   # PyMAF's Table 6: M0 (mean) .. M3
        assert list(sets[name]["per_iteration"]["mpjpe"]) == ["M0", "M1", "M2", "M3"]
        assert list(sets[name]["per_iteration"]["pa_mpjpe"]) == ["M0", "M1", "M2", "M3"]
    for result in sets.values():
        assert result["evaluated"] == result["samples"] > 0
        assert all(v is not None for v in result["columns"].values())
        assert result["metrics"] == metric_values(result)
    assert summary["skipped_samples"] == 0 and summary["processes"] == 1
    printed = capsys.readouterr().out
    assert "3dpw [3dpw, 1/1 samples]: pve " in printed and "mpjpe per iteration: M0 " in printed


def test_make_eval_errors_are_one_line(trained_checkpoint, tiny_data_module, tmp_path):
    root = f"data.root={tiny_data_module.root}"
    cases = [
        ([f"ckpt={tmp_path / 'none.ckpt'}", root], "no such file"),
        ([f"ckpt={trained_checkpoint}", "model=bigraph", root], "holds a 'pymaf' model, not 'bigraph'"),
        ([f"ckpt={trained_checkpoint}", "sets=3dpw,mpii", root], "unknown evaluation set(s) mpii"),
        ([f"ckpt={trained_checkpoint}", "protocol=pck", root], "valid choices are 3dpw, h36m"),
        ([f"ckpt={trained_checkpoint}", "device=cpu", root], "unknown config key 'device'"),
        ([root], "ckpt=<path> is required"),
    ]
    for argv, message in cases:
        with pytest.raises(UserError) as err:
            evaluate.main(argv)
        assert message in str(err.value) and "\n" not in str(err.value), argv
