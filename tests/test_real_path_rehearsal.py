"""A rehearsal of the real path, end to end, on files written here in the real formats.

What a researcher with the licensed files does: SPIN-format npz files per data set (each with the fields the
real one has), SPIN's final fits, OpenPose JSON folders and COCO keypoint results as BiGraph's detections, a
licensed-SMPL folder (here a stand-in exported from the open model, with its own male and female bodies and a
``UV_Processed.mat`` in DensePose's structure); then ``cli.convert`` for every set, ``cli.train`` with the
papers' recipes (``experiment=...``, shrunk by overrides to a few CPU steps), and ``cli.evaluate``. The checks
are computed independently of the suite's evaluation code, from the written files and ``smplx``:

- 3DPW's PVE and MPJPE are against the gendered body (``SMPL_MALE`` / ``SMPL_FEMALE``), as PyMAF's eval.py;
- H36M's joints are the npz's ``S``, also where the sample carries a (MoSh) fit;
- LSP's foreground is scored on the silhouette, the six parts on the part mask;
- BiGraph's RoI centres are the detection files' joints, and a joint the detector missed is counted;
- the in-the-wild sets are supervised where SPIN's fits are valid, and PyMAF renders DensePose's charts.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.body.standins import smplx_mesh, write_licensed_smpl_folder
from tests.datamodules.spin_fixtures import (IMAGE_H, IMAGE_W, OPENPOSE25_TO_BIGRAPH12_BY_HAND,
                                             make_spin_file, person_at, write_final_fits, write_openpose_json)

pytestmark = pytest.mark.slow

CROP = 320                      # the converter's default crop side
ROWS = 6
H36M_TO_LSP14_BY_HAND = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]   # PyMAF constants.H36M_TO_J14
J24_TO_LSP14_BY_HAND = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18]        # PyMAF constants.J24_TO_J14
J24_PELVIS_BY_HAND = 14
COCO17_TO_BIGRAPH12_BY_HAND = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
J24_TO_COCO17_BY_HAND = [19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0]   # SPIN's 24 -> COCO's 17

# (shard folder, dataset, split, the fields of the real SPIN / GraphCMR file, companion files)
SETS = [
    ("h36m", "h36m", "train", ("part", "S", "pose", "shape"), {}),
    ("mpi_inf_3dhp", "mpi_inf_3dhp", "train", ("part", "S", "openpose", "pose", "shape", "has_smpl"), {"fits": True}),
    ("lsp", "lsp", "train", ("part", "openpose"), {"fits": True}),
    ("lspet", "lspet", "train", ("part", "openpose"), {"fits": True}),
    ("mpii", "mpii", "train", ("part", "openpose"), {"fits": True}),
    ("coco", "coco", "train", ("part", "openpose"), {"fits": True}),
    ("up3d", "up3d", "train", ("part", "pose", "shape"), {}),
    ("3dpw_test", "3dpw", "test", ("pose", "shape", "gender"), {}),
    ("h36m_valid_protocol1", "h36m", "test", ("S",), {"detections": "coco_results"}),
    ("h36m_valid_protocol2", "h36m", "test", ("S", "pose", "shape"), {"detections": "openpose_json"}),
    ("lsp_test", "lsp", "test", ("part", "maskname", "partname"), {"detections": "coco_results"}),
    ("up3d_test", "up3d", "test", ("part", "pose", "shape"), {"detections": "openpose_json"}),
    ("coco_val", "coco", "test", ("part",), {}),
]
BASE_FIELDS = ("imgname", "center", "scale")
MISSED = (3, 8)   # BiGraph-12 joints each detection file leaves undetected (confidence 0)


# ----------------------------------------------------------------------------------------------------- files
def write_set(raw: Path, folder: str, dataset: str, fields: tuple[str, ...], seed: int) -> dict:
    """raw/<folder>/<dataset>.npz with exactly ``fields`` (+ imgname, center, scale), images in raw/<folder>/images."""
    root = raw / folder
    d = make_spin_file(root, dataset, n=ROWS, seed=seed, keys=fields)
    d = {k: v for k, v in d.items() if k in BASE_FIELDS + fields}
    if "pose" in d:
        d["pose"][:, 0] += np.pi                                     # upright in the camera, as real fits are
    if "gender" in d:
        d["gender"] = np.array(["m", "f", "m", "f", "f", "m"])      # 3DPW's genders: m or f
    np.savez(root / f"{dataset}.npz", **d)
    return d


def write_silhouettes(d: dict, root: Path, inverted: bool) -> None:
    """LSP's test silhouettes (a box), or their complement, at each image's maskname under ``root``."""
    for name in d["maskname"]:
        sil = np.zeros((IMAGE_H, IMAGE_W), np.uint8)
        sil[30:150, 70:170] = 255
        path = root / str(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - sil if inverted else sil).save(path)


def write_detections(d: dict, root: Path, kind: str, seed: int) -> tuple[str, np.ndarray]:
    """A detector's output for every row: the person in the row's box (``MISSED`` joints at confidence 0) and a
    bystander outside it. Returns the --detections path and (N, 12, 3) the matched person's joints."""
    rows, people = [], []
    for i in range(len(d["imgname"])):
        k = 25 if kind == "openpose_json" else 17
        to12 = OPENPOSE25_TO_BIGRAPH12_BY_HAND if kind == "openpose_json" else COCO17_TO_BIGRAPH12_BY_HAND
        near = person_at(d["center"][i] + [3.0, -2.0], k, spread=40.0, seed=seed + i)
        near[[to12[j] for j in MISSED], 2] = 0.0
        far = person_at(d["center"][i] + [260.0, 0.0], k, conf=1.0, seed=seed + 50 + i)
        people.append(near[to12])
        rows.append((str(d["imgname"][i]), near, far))
    if kind == "openpose_json":
        folder = root / "openpose"
        for name, near, far in rows:
            write_openpose_json(folder / f"{name.rsplit('.', 1)[0]}_keypoints.json", [far, near])
        return str(folder), np.stack(people)
    results = [{"image_id": name, "category_id": 1, "keypoints": p.reshape(-1).tolist(), "score": s}
               for name, near, far in rows for p, s in ((far, 0.95), (near, 0.8))]
    path = root / "person_keypoints_results.json"
    path.write_text(json.dumps(results))
    return str(path), np.stack(people)


def write_coco_annotations(d: dict, path: Path) -> None:
    """COCO's person_keypoints_val2014.json for the rows' images: each row's person (keypoints, box, area) and a
    crowd region, under COCO's own image ids."""
    images, annotations = [], []
    for i, name in enumerate(d["imgname"]):
        kp = np.asarray(d["part"][i])[J24_TO_COCO17_BY_HAND]
        visible = kp[:, 2] > 0
        kp = np.concatenate([kp[:, :2], np.where(visible, 2.0, 0.0)[:, None]], 1) * visible[:, None]
        x0, y0 = kp[visible, :2].min(0) if visible.any() else d["center"][i]
        x1, y1 = kp[visible, :2].max(0) if visible.any() else d["center"][i]
        images.append({"id": 9000 + i, "file_name": Path(str(name)).name})
        annotations += [{"id": 2 * i, "image_id": 9000 + i, "category_id": 1, "iscrowd": 0, "keypoints": kp.reshape(-1).tolist(),
                         "num_keypoints": int(visible.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": float((x1 - x0) * (y1 - y0))},
                        {"id": 2 * i + 1, "image_id": 9000 + i, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 51,
                         "num_keypoints": 0, "bbox": [0, 0, 10, 10], "area": 100.0}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1}]}))


def row_of(key: str) -> int:
    """The npz row of a sample key (``<set>_<row:08d>_<imgname>``)."""
    return int(re.search(r"_(\d{8})_", key).group(1))


# ------------------------------------------------------------------------------------------------- rehearsal
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Every file written and converted: ``smpl`` (the folder), ``shards`` (the data root), ``npz`` (folder ->
    arrays), ``fits``, ``detections`` (folder -> (N, 12, 3)), ``reports`` (folder -> convert report)."""
    from cli import convert

    base = tmp_path_factory.mktemp("real_path")
    smpl = write_licensed_smpl_folder(base / "smpl")
    raw, shards = base / "raw", base / "shards"
    npz, fits, detections, reports = {}, {}, {}, {}
    for seed, (folder, dataset, split, fields, extra) in enumerate(SETS):
        d = npz[folder] = write_set(raw, folder, dataset, fields, seed)
        args = [dataset, "--npz", str(raw / folder / f"{dataset}.npz"), "--images", str(raw / folder / "images"),
                "--out", str(shards / folder), "--split", split, "--crop-size", str(CROP),
                "--body", "smpl", "--smpl-dir", str(smpl)]
        if extra.get("fits"):
            valid = np.array([1, 0, 1, 1, 0, 1], dtype=np.uint8)
            betas = np.random.default_rng(seed).normal(0, 1, (ROWS, 10))
            betas[3, 4] = 3.5                                   # an extreme fit: SPIN zeroes its betas
            fits[folder] = write_final_fits(raw / folder / "final_fits.npz", ROWS, valid, seed=seed, betas=betas)
            args += ["--fits", str(raw / folder / "final_fits.npz")]
        if extra.get("detections"):
            path, detections[folder] = write_detections(d, raw / folder, extra["detections"], seed=100 * seed)
            args += ["--detections", path]
        if "maskname" in fields:
            write_silhouettes(d, raw / folder / "images", inverted=False)
            write_silhouettes(d, raw / "inverted_silhouettes", inverted=True)
            for name in d["partname"]:   # the part masks as they are, next to the complementary silhouettes
                target = raw / "inverted_silhouettes" / str(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes((raw / folder / "images" / str(name)).read_bytes())
            inverted = [a if a != str(shards / folder) else str(shards / "lsp_test_inverted") for a in args]
            reports["lsp_test_inverted"] = convert.main(inverted + ["--masks", str(raw / "inverted_silhouettes")])
        if folder == "coco_val":
            write_coco_annotations(d, raw / "person_keypoints_val2014.json")
        reports[folder] = convert.main(args)
    return {"smpl": smpl, "shards": shards, "npz": npz, "fits": fits, "detections": detections,
            "reports": reports, "base": base}


def test_the_converted_sets_hold_what_the_files_say(real):
    from datamodules.shards import read_shard

    def samples(folder):
        return [s for p in sorted((real["shards"] / folder).glob("*.tar")) for s in read_shard(str(p))]

    for folder, *_ in SETS:
        assert real["reports"][folder]["written"] == ROWS, folder
    for folder, fits in real["fits"].items():   # supervised where the fit is valid (or the npz has SMPL)
        d = real["npz"][folder]
        own = d.get("has_smpl", np.zeros(ROWS)) > 0
        got = {row_of(s.key): s for s in samples(folder)}
        assert [bool(got[i].has_smpl) for i in range(ROWS)] == list((fits["valid_fit"] > 0) | own), folder
        zeroed = got[3].betas if not own[3] else None
        if zeroed is not None:
            assert not np.any(zeroed), folder
    for folder in real["detections"]:
        assert {s.bigraph_joints_from.split(":")[0] for s in samples(folder)} == \
            {dict((f, e) for f, _, _, _, e in SETS)[folder]["detections"]}, folder


# --------------------------------------------------------------------------------------- train and evaluate
def train(real, *overrides: str) -> dict:
    from cli import train as train_cli

    return train_cli.main([*overrides, "trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                           "model.backbone.width=8", "allow_nonpaper_setup=true", f"body.smpl_dir={real['smpl']}",
                           f"data.root={real['shards']}", "data.batch_size=4", "data.eval_batch_size=6",
                           "data.num_workers=0", "data.train.epoch_samples=8", f"out_dir={real['base'] / 'runs'}"])


def evaluate(real, ckpt: str, data: str, *overrides: str) -> dict:
    from cli import evaluate as evaluate_cli

    out = real["base"] / "eval" / f"{Path(ckpt).parent.parent.name}-{data}-{len(overrides)}.json"
    return evaluate_cli.main([f"ckpt={ckpt}", f"data={data}", f"data.root={real['shards']}", "data.num_workers=0",
                              "data.eval_batch_size=6", "trainer.accelerator=cpu", f"out={out}", *overrides])


@pytest.fixture(scope="module")
def pymaf(real):
    """PyMAF's two stages (experiment=pymaf_paper_h36m, then experiment=pymaf_paper from its weights)."""
    stage1 = train(real, "model=pymaf", "experiment=pymaf_paper_h36m")
    coco = f"data.eval.coco.annotations={real['base'] / 'raw' / 'person_keypoints_val2014.json'}"
    stage2 = train(real, "model=pymaf", "experiment=pymaf_paper", coco)
    return {"stage1": stage1, "stage2": stage2, "coco": coco,
            "eval": evaluate(real, stage2["last_checkpoint"], "pymaf_mix", coco)}


@pytest.fixture(scope="module")
def bigraph(real):
    run = train(real, "model=bigraph", "experiment=bigraph_paper", "model.net.width=0.125")
    return {"run": run, "eval": evaluate(real, run["last_checkpoint"], "bigraph_mix")}


def eval_batches(real, ckpt: str, data: str, name: str):
    """The checkpoint's module and its (batch, prediction) pairs on one evaluation set, as make eval reads it."""
    from configs.loader import compose
    from datamodules.mixed import MixedDataModule
    from lightning_modules.registry import load_module
    from omegaconf import OmegaConf

    cfg = compose("eval", [f"data={data}", f"data.root={real['shards']}", "data.num_workers=0",
                           "data.eval_batch_size=6"])
    module = load_module(ckpt)
    dm = MixedDataModule(OmegaConf.to_container(cfg.data, resolve=True))
    with torch.no_grad():
        return module, [(batch, module(batch)) for batch in dm.eval_dataloader(name)]


def smplx_vertices(real, gender: str, rotmat=None, betas=None, pose=None) -> torch.Tensor:
    return smplx_mesh(real["smpl"], gender, rotmat=rotmat, betas=betas, pose=pose)


def lsp14(real, vertices: torch.Tensor) -> torch.Tensor:
    """PyMAF eval.py's joints: J_regressor_h36m, the 14 LSP joints, minus H36M's pelvis."""
    regressor = torch.as_tensor(np.load(real["smpl"] / "J_regressor_h36m.npy"), dtype=torch.float32)
    j = torch.einsum("jv,bvc->bjc", regressor, vertices)
    return j[:, H36M_TO_LSP14_BY_HAND] - j[:, :1]


def mm(x: torch.Tensor) -> float:
    return 1000.0 * float(x.mean())


def test_pymaf_recipe_runs_in_two_stages_on_licensed_smpl(real, pymaf):
    from lightning_modules.registry import load_module
    from omegaconf import OmegaConf

    stage1, stage2 = pymaf["stage1"], pymaf["stage2"]
    assert Path(stage1["run_dir"]).name == "pymaf_paper_h36m-s0" and Path(stage2["run_dir"]).name == "pymaf_paper-s0"
    saved = OmegaConf.load(Path(stage2["run_dir"]) / "config.yaml")
    assert saved.experiment == "pymaf_paper" and saved.body.name == "smpl"
    assert saved.init_weights == stage1["last_checkpoint"]
    assert stage1["skipped_samples"] == stage2["skipped_samples"] == 0
    module = load_module(stage2["last_checkpoint"])
    assert module.body.iuv_source == "densepose"       # IUV targets from the folder's UV_Processed.mat
    summary = pymaf["eval"]
    assert list(summary["sets"]) == ["3dpw", "h36m_p2", "lsp", "coco"]
    for name, row in summary["sets"].items():
        assert row["evaluated"] == row["samples"] == ROWS, name
        assert all(v is not None and np.isfinite(v) for v in row["columns"].values()), name


def test_3dpw_is_scored_against_the_gendered_body(real, pymaf):
    row = pymaf["eval"]["sets"]["3dpw"]["columns"]
    _, pairs = eval_batches(real, pymaf["stage2"]["last_checkpoint"], "pymaf_mix", "3dpw")
    d = real["npz"]["3dpw_test"]
    pve, mpjpe, pve_neutral, gendered_vs_neutral = [], [], [], []
    for batch, prediction in pairs:
        rows = [row_of(k) for k in batch["key"]]
        pred = smplx_vertices(real, "neutral", prediction.final.pose_rotmat, prediction.final.betas)
        genders = ["male" if d["gender"][i] == "m" else "female" for i in rows]
        gt = torch.stack([smplx_vertices(real, g, pose=d["pose"][[i]], betas=d["shape"][[i], :10])[0]
                          for g, i in zip(genders, rows)])
        neutral = smplx_vertices(real, "neutral", pose=d["pose"][rows], betas=d["shape"][rows, :10])
        pve.append((pred - gt).norm(dim=-1).mean(-1))
        pve_neutral.append((pred - neutral).norm(dim=-1).mean(-1))
        gendered_vs_neutral.append((gt - neutral).norm(dim=-1).mean(-1))
        mpjpe.append((lsp14(real, pred) - lsp14(real, gt)).norm(dim=-1).mean(-1))
    assert sum(len(p) for p in pve) == ROWS
    assert row["pve"] == pytest.approx(mm(torch.cat(pve)), abs=0.05)
    assert row["mpjpe"] == pytest.approx(mm(torch.cat(mpjpe)), abs=0.05)
    assert mm(torch.cat(gendered_vs_neutral)) > 30.0               # the genders are other bodies ...
    assert abs(mm(torch.cat(pve_neutral)) - row["pve"]) > 1.0      # ... and the neutral one would score otherwise


def test_h36m_is_scored_against_s_even_with_a_mosh_fit(real, pymaf):
    row = pymaf["eval"]["sets"]["h36m_p2"]["columns"]
    _, pairs = eval_batches(real, pymaf["stage2"]["last_checkpoint"], "pymaf_mix", "h36m_p2")
    d = real["npz"]["h36m_valid_protocol2"]
    assert "pose" in d                                             # the file carries a fit ...
    errors, from_mesh = [], []
    for batch, prediction in pairs:
        rows = [row_of(k) for k in batch["key"]]
        s = torch.as_tensor(d["S"][rows], dtype=torch.float32)
        gt = s[:, J24_TO_LSP14_BY_HAND, :3] - s[:, J24_PELVIS_BY_HAND, None, :3]
        pred = lsp14(real, smplx_vertices(real, "neutral", prediction.final.pose_rotmat, prediction.final.betas))
        mesh = lsp14(real, smplx_vertices(real, "neutral", pose=d["pose"][rows], betas=d["shape"][rows, :10]))
        errors.append((pred - gt).norm(dim=-1).mean(-1))
        from_mesh.append((pred - mesh).norm(dim=-1).mean(-1))
    assert row["mpjpe"] == pytest.approx(mm(torch.cat(errors)), abs=0.05)   # ... and S scores the joints
    assert abs(mm(torch.cat(from_mesh)) - row["mpjpe"]) > 20.0


def test_lsp_foreground_is_scored_on_the_silhouette_and_parts_on_the_part_mask(real, pymaf):
    """The same predictions against the silhouettes and against their complement (same part masks): the
    foreground accuracies add up to one, the part scores do not move."""
    ckpt = pymaf["stage2"]["last_checkpoint"]
    box = pymaf["eval"]["sets"]["lsp"]
    inverted = evaluate(real, ckpt, "pymaf_mix", "sets=lsp", "data.eval.lsp.shards=lsp_test_inverted/*.tar",
                        pymaf["coco"])
    flipped = inverted["sets"]["lsp"]
    assert box["evaluated"] == flipped["evaluated"] == ROWS
    assert box["columns"]["fb_acc"] + flipped["columns"]["fb_acc"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < box["columns"]["fb_acc"] < 1.0
    assert box["columns"]["parts_acc"] == pytest.approx(flipped["columns"]["parts_acc"], abs=1e-9)
    assert box["columns"]["parts_f1"] == pytest.approx(flipped["columns"]["parts_f1"], abs=1e-9)


def test_bigraph_recipe_reads_its_roi_centres_from_the_detection_files(real, bigraph):
    from body.camera import normalized_to_pixels

    summary = bigraph["eval"]
    assert list(summary["sets"]) == ["h36m_p1", "h36m_p2", "up3d", "lsp"]
    ckpt = bigraph["run"]["last_checkpoint"]
    for name, folder in (("h36m_p1", "h36m_valid_protocol1"), ("h36m_p2", "h36m_valid_protocol2"),
                         ("up3d", "up3d_test")):
        row = summary["sets"][name]
        assert row["evaluated"] == row["samples"] == ROWS, name
        assert row["detections"] == {"joints": 12 * ROWS, "missing": len(MISSED) * ROWS, "missing_allowed": False}
        module, pairs = eval_batches(real, ckpt, "bigraph_mix", name)
        d, people = real["npz"][folder], real["detections"][folder]
        for batch, prediction in pairs:
            rows = [row_of(k) for k in batch["key"]]
            centres = 0.5 * (prediction.roi_boxes[..., :2] + prediction.roi_boxes[..., 2:])
            detected = [j for j in range(12) if j not in MISSED]
            for b, i in enumerate(rows):
                # The network's input is SPIN's person box (200 scale original pixels) at 224 px.
                k = 200.0 * d["scale"][i] / module.img_res
                want = (people[i, detected, :2] + 0.5 - (d["center"][i] - 100.0 * d["scale"][i])) / k
                np.testing.assert_allclose(centres[b, detected].numpy(), want, atol=1e-3)
                # The missed joints sit where the model's own skeleton puts them, not at the stored zeros.
                own = normalized_to_pixels(batch["bigraph_joints_2d"][b, list(MISSED), :2], module.img_res)
                assert not torch.allclose(centres[b, list(MISSED)], own)
    # UP-3D's MPVE against the neutral body on the file's parameters, for the graph's mesh and the SMPL one.
    up3d = summary["sets"]["up3d"]["columns"]
    _, pairs = eval_batches(real, ckpt, "bigraph_mix", "up3d")
    d = real["npz"]["up3d_test"]
    graph, smpl = [], []
    for batch, prediction in pairs:
        rows = [row_of(k) for k in batch["key"]]
        gt = smplx_vertices(real, "neutral", pose=d["pose"][rows], betas=d["shape"][rows, :10])
        pred = smplx_vertices(real, "neutral", prediction.final.pose_rotmat, prediction.final.betas)
        graph.append((prediction.vertices_np - gt).norm(dim=-1).mean(-1))
        smpl.append((pred - gt).norm(dim=-1).mean(-1))
    assert up3d["mpve_np"] == pytest.approx(mm(torch.cat(graph)), abs=0.05)
    assert up3d["mpve_p"] == pytest.approx(mm(torch.cat(smpl)), abs=0.05)


def test_a_coco_set_without_coco_annotations_stops_a_run_before_its_first_step(real, pymaf, monkeypatch):
    """SPIN's COCO file has no person areas: the AP's ground truth is COCO's own file, or the run does not start."""
    from runtime.errors import UserError

    monkeypatch.delenv("COCO_ANNOTATIONS", raising=False)
    for run in (lambda: evaluate(real, pymaf["stage2"]["last_checkpoint"], "pymaf_mix", "sets=coco"),
                lambda: train(real, "model=pymaf", "experiment=pymaf_paper", "run_name=no_coco_file")):
        with pytest.raises(UserError) as err:
            run()
        message = str(err.value)
        assert "'coco'" in message and "data.eval.coco.annotations=" in message and "\n" not in message
    assert not (real["base"] / "runs" / "no_coco_file" / "checkpoints").exists()
