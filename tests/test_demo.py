"""make demo and the predictor on a real photograph (scikit-image's astronaut): every output exists, the .obj holds
the body's mesh, the overlay covers exactly the projected mesh, the predictor gives the demo's numbers, and BiGraph
without a keypoint file stops in one line. Box and keypoint files follow SPIN's and GraphCMR's demos."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli import demo
from datamodules.people import Person, people_in, read_people_file
from lightning_modules.predictor import Predictor
from runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]
# The astronaut's visible joints (OpenPose BODY_25 indices: x, y px), read off the photo by eye.
ASTRONAUT_OPENPOSE = {0: (235, 95), 1: (240, 200), 2: (160, 205), 3: (105, 350), 4: (175, 470), 5: (330, 215),
                      6: (375, 330), 7: (330, 420), 8: (245, 480), 9: (195, 480), 12: (300, 480)}


def openpose_json(points: dict[int, tuple[float, float]], people: int = 1) -> dict:
    """OpenPose's --write_json record of ``people`` copies of one BODY_25 pose (index: (x, y) px, confidence 0.9)."""
    flat = np.zeros((25, 3))
    for i, (x, y) in points.items():
        flat[i] = (x, y, 0.9)
    return {"version": 1.3, "people": [{"pose_keypoints_2d": flat.ravel().tolist()} for _ in range(people)]}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.png")
    (folder / "astronaut_openpose.json").write_text(json.dumps(openpose_json(ASTRONAUT_OPENPOSE)))
    (folder / "astronaut_bbox.json").write_text(json.dumps({"bbox": [110, 20, 300, 492]}))
    return folder


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    v = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("v ")])
    f = np.array([[int(x) - 1 for x in line.split()[1:]] for line in lines if line.startswith("f ")])
    return v, f


def _projected_box(vertices: np.ndarray, record: dict, img_res: int) -> np.ndarray:
    """The box (x0, y0, x1, y1) of the mesh in the photo, computed here from the JSON alone: the crop camera
    (focal 5000 at img_res, principal point at the crop centre) then the crop's square of side 200 scale."""
    s, tx, ty = record["camera_crop"]["weak_perspective"]
    t = np.array([tx, ty, 2 * 5000.0 / (img_res * s)])
    p = vertices + t
    crop = 5000.0 * p[:, :2] / p[:, 2:3] + img_res / 2.0
    side = record["box"]["side_px"]
    photo = np.array(record["box"]["center"]) - side / 2.0 + crop * side / img_res
    return np.concatenate([photo.min(0), photo.max(0)])


def _untrained(ckpt: str, folder: Path) -> str:
    """A checkpoint of the same model, freshly initialised (as train would start it), in make train's format."""
    from lightning_modules.registry import build_module

    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    hparams = saved["hyper_parameters"]
    torch.manual_seed(0)
    module = build_module(hparams["model"], hparams.get("body") or {"name": "open"}, [], int(hparams.get("img_res", 224)))
    path = folder / "untrained.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("trained", [True, False], ids=["trained", "untrained"])
@pytest.mark.parametrize("model", ["pymaf", "bigraph"])
def test_the_demo_on_a_photo_writes_every_output_and_draws_the_mesh_where_it_projects(photos, checkpoints, tmp_path,
                                                                                       model, trained):
    out = tmp_path / "out"
    ckpt = checkpoints[model] if trained else _untrained(checkpoints[model], tmp_path)
    result = demo.main([f"ckpt={ckpt}", f"input={photos}", f"output={out}"])
    assert result["images"] == 1 and result["people"] == 1
    expected = ["astronaut_overlay.png", "astronaut_0.obj", "astronaut_0_front.png", "astronaut_0_side.png",
                "astronaut_0.json"] + (["astronaut_0_smpl.obj"] if model == "bigraph" else [])
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    predictor = Predictor.from_checkpoint(checkpoints[model])
    vertices, faces = _read_obj(out / "astronaut_0.obj")
    assert vertices.shape == (predictor.module.body.num_vertices, 3) and np.array_equal(faces, predictor.faces)
    record = json.loads((out / "astronaut_0.json").read_text())
    assert len(record["smpl"]["pose"]) == 72 and len(record["smpl"]["betas"]) == 10
    photo = np.asarray(Image.open(photos / "astronaut.png").convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(out / "astronaut_overlay.png").convert("RGB")).astype(int)
    ys, xs = np.nonzero(np.abs(drawn - photo).sum(-1) > 6)
    box = _projected_box(vertices, record, predictor.img_res)
    assert np.abs(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) - box).max() <= 2.0, (box, xs.min())
    # The keypoint file wins for BiGraph (it needs joints); the box file for PyMAF (the first listed).
    xy = np.array(list(ASTRONAUT_OPENPOSE.values()), dtype=float)
    source_box = xy.mean(0) if model == "bigraph" else [260.0, 266.0]
    assert np.allclose(record["box"]["center"], source_box)


def test_outputs_keeps_only_the_files_it_names_and_a_bad_name_lists_the_choices(photos, checkpoints, tmp_path):
    out = tmp_path / "out"
    demo.main([f"ckpt={checkpoints['pymaf']}", f"input={photos}", f"output={out}", "outputs=json,obj"])
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_0.json", "astronaut_0.obj"]
    with pytest.raises(UserError, match="overlay, obj, views, json"):
        demo.parse_args(["ckpt=a", "input=b", "outputs=json,mesh"])


def test_the_predictor_gives_the_demos_numbers(photos, checkpoints, tmp_path):
    out = tmp_path / "out"
    demo.main([f"ckpt={checkpoints['bigraph']}", f"input={photos / 'astronaut.png'}", f"output={out}"])
    image = np.asarray(Image.open(photos / "astronaut.png").convert("RGB"))
    people = people_in(photos / "astronaut.png", 512, 512, need_joints=True)
    got = Predictor.from_checkpoint(checkpoints["bigraph"], batch_size=1).predict(image, people)[0]
    vertices, _ = _read_obj(out / "astronaut_0.obj")
    smpl, _ = _read_obj(out / "astronaut_0_smpl.obj")
    record = json.loads((out / "astronaut_0.json").read_text())
    assert np.abs(vertices - got.vertices).max() < 1e-6 and np.abs(smpl - got.vertices_smpl).max() < 1e-6
    assert np.allclose(record["smpl"]["pose"], got.pose, atol=1e-7) and np.allclose(record["smpl"]["betas"], got.betas)
    assert np.allclose(record["camera_full_image"]["translation"], got.camera_translation)


def test_batches_across_images_give_each_image_its_own_result(photos, checkpoints):
    image = np.asarray(Image.open(photos / "astronaut.png").convert("RGB"))
    people = [Person(np.array([260.0, 266.0]), 2.46), Person(np.array([200.0, 200.0]), 1.5)]
    predictor = Predictor.from_checkpoint(checkpoints["pymaf"], batch_size=2)
    together = predictor.predict_many([image, image[:, ::-1].copy()], [people, people[:1]])
    alone = Predictor.from_checkpoint(checkpoints["pymaf"], batch_size=1).predict(image, people)
    assert [len(r) for r in together] == [2, 1]
    for a, b in zip(together[0], alone):
        assert np.abs(a.vertices - b.vertices).max() < 1e-5 and np.allclose(a.camera, b.camera, atol=1e-6)


def test_full_image_camera_puts_the_body_where_the_crop_camera_does(checkpoints, photos):
    """The full photo's camera (translation, focal length, principal point at the photo's centre) projects the
    body's origin where the crop camera does, mapped into the photo."""
    from lightning_modules.predictor import full_image_camera

    cam, center, scale = np.array([0.9, 0.1, -0.2]), np.array([300.0, 180.0]), 1.7
    t, focal = full_image_camera(cam, center, scale, (640, 480), 224)
    in_photo = focal * t[:2] / t[2] + np.array([320.0, 240.0])
    in_crop = cam[0] * cam[1:] * 112 + 112
    assert np.allclose(in_photo, center - 170 + in_crop * 340 / 224)


def test_bigraph_without_a_keypoint_file_stops_in_one_line(photos, checkpoints, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "astronaut.png").write_bytes((photos / "astronaut.png").read_bytes())
    done = subprocess.run([sys.executable, "-m", "cli.demo", f"ckpt={checkpoints['bigraph']}", f"input={lone}",
                           f"output={tmp_path / 'out'}"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "astronaut_openpose.json" in lines[0] and "astronaut_keypoints.json" in lines[0]


# ------------------------------------------------------------------------------------------------ people files
def test_boxes_follow_spin_and_graphcmr(tmp_path):
    box = tmp_path / "a_bbox.json"
    box.write_text(json.dumps({"bbox": [[10, 20, 100, 300], [400, 50, 80, 40]]}))
    first, second = read_people_file(box)
    assert np.allclose(first.center, [60, 170]) and first.scale == 1.5 and first.joints is None
    assert np.allclose(second.center, [440, 70]) and second.scale == 0.4
    pose = tmp_path / "a_openpose.json"
    pose.write_text(json.dumps(openpose_json({2: (100, 100), 5: (200, 100), 9: (110, 400), 12: (190, 400)}, 2)))
    people = read_people_file(pose)
    assert len(people) == 2 and np.allclose(people[0].center, [150, 250])
    assert np.isclose(people[0].scale, 300 * 1.2 / 200)                  # the longer side, 1.2 x, over 200
    assert people[0].joints.shape == (12, 3) and np.allclose(people[0].joints[1], [100, 100, 0.9])  # right shoulder
    coco = tmp_path / "b_keypoints.json"
    kp = np.zeros((17, 3))
    kp[[5, 6, 11, 12]] = [[200, 100, 0.8], [100, 100, 0.8], [190, 400, 0.8], [110, 400, 0.8]]
    coco.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 0.9}]))
    (person,) = read_people_file(coco)
    assert np.allclose(person.center, [150, 250]) and np.allclose(person.joints[0], [200, 100, 0.8])  # left shoulder
    (whole,) = people_in(tmp_path / "c.png", 640, 480)
    assert np.allclose(whole.center, [320, 240]) and whole.scale == 3.2
    with pytest.raises(UserError, match="c_openpose.json"):
        people_in(tmp_path / "c.png", 640, 480, need_joints=True)


def _write_video(path: Path, frames: list[np.ndarray], rate: int = 10) -> None:
    import av

    with av.open(str(path), "w") as sink:
        stream = sink.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pymaf", "bigraph"])
def test_the_demo_on_a_video_writes_an_overlay_video_and_a_json_per_frame(photos, checkpoints, tmp_path, model):
    av = pytest.importorskip("av")
    photo = np.asarray(Image.open(photos / "astronaut.png").convert("RGB").resize((256, 256)))
    frames = [np.roll(photo, 8 * i, axis=1) for i in range(5)]          # the person moves right
    video = tmp_path / "walk.mp4"
    _write_video(video, frames)
    if model == "bigraph":                                              # OpenPose's per-frame files
        folder = tmp_path / "walk_openpose"
        folder.mkdir()
        for i in range(5):
            points = {j: (x / 2 + 8 * i, y / 2) for j, (x, y) in ASTRONAUT_OPENPOSE.items()}
            (folder / f"walk_{i:012d}_keypoints.json").write_text(json.dumps(openpose_json(points)))
    else:
        (tmp_path / "walk_bbox.json").write_text(json.dumps({"bbox": [60, 10, 150, 246]}))
    out = tmp_path / "out"
    result = demo.main([f"ckpt={checkpoints[model]}", f"input={video}", f"output={out}", "batch_size=2"])
    assert result["frames"] == 5 and result["people"] == 5
    with av.open(str(out / "walk_overlay.mp4")) as drawn:
        overlay = [f.to_ndarray(format="rgb24") for f in drawn.decode(video=0)]
    assert len(overlay) == 5 and overlay[0].shape == (256, 256, 3)
    records = [json.loads((out / f"walk_{i:06d}.json").read_text()) for i in range(5)]
    assert [r[0]["frame"] for r in records] == list(range(5)) and all(len(r) == 1 for r in records)
    centers = [r[0]["box"]["center"][0] for r in records]
    assert model != "bigraph" or np.allclose(np.diff(centers), 8.0)    # each frame's own keypoints
    for i in (0, 4):                                                    # the mesh is drawn where it projects
        changed = np.abs(overlay[i].astype(int) - frames[i].astype(int)).sum(-1) > 60
        vertices = np.array(records[i][0]["joints_3d"])
        box = _projected_box(vertices, records[i][0], 224)
        ys, xs = np.nonzero(changed)
        inside = (xs >= box[0] - 30) & (xs <= box[2] + 30) & (ys >= box[1] - 30) & (ys <= box[3] + 30)
        assert changed.sum() > 200 and inside.mean() > 0.95


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pymaf", "bigraph"])
def test_the_onnx_backend_gives_the_torch_backends_numbers(photos, checkpoints, tmp_path, model):
    """backend=onnx exports the graph next to the checkpoint once, reuses it, and gives torch's results (1e-4)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ckpt = tmp_path / "run" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(Path(checkpoints[model]).read_bytes())
    image = np.asarray(Image.open(photos / "astronaut.png").convert("RGB"))
    people = people_in(photos / "astronaut.png", 512, 512, need_joints=True)
    people = people + [Person(np.array([200.0, 230.0]), 1.8, people[0].joints)]          # a batch of two
    onnx = Predictor.from_checkpoint(str(ckpt), batch_size=2, backend="onnx")
    assert onnx.onnx is not None and (tmp_path / "run" / "last.onnx").is_file()
    on_torch = Predictor.from_checkpoint(str(ckpt), batch_size=2)
    torch_results = on_torch.predict(image, people)
    for got, want in zip(onnx.predict(image, people), torch_results, strict=True):
        for name in ("vertices", "joints_3d", "pose_rotmat", "betas", "camera", "camera_translation"):
            assert np.abs(getattr(got, name) - getattr(want, name)).max() <= 1e-4, name
        assert (got.vertices_smpl is None) == (model == "pymaf")
        assert got.vertices_smpl is None or np.abs(got.vertices_smpl - want.vertices_smpl).max() <= 1e-4
    stamp = (tmp_path / "run" / "last.onnx").stat().st_mtime_ns
    out = tmp_path / "out"
    demo.main([f"ckpt={ckpt}", f"input={photos}", f"output={out}", "backend=onnx"])
    assert (tmp_path / "run" / "last.onnx").stat().st_mtime_ns == stamp          # reused, not exported again
    vertices, _ = _read_obj(out / "astronaut_0.obj")
    demo_people = people_in(photos / "astronaut.png", 512, 512, need_joints=model == "bigraph")  # PyMAF: the box
    assert np.abs(vertices - on_torch.predict(image, demo_people)[0].vertices).max() <= 1e-4


def test_a_bad_backend_names_the_valid_ones(checkpoints):
    with pytest.raises(UserError, match="torch, onnx"):
        Predictor.from_checkpoint(checkpoints["pymaf"], backend="tensorrt")
