"""``make demo``: a trained model on photos, headless, on CPU or GPU.

    python -m cli.demo ckpt=... input=photo.jpg|folder|video.mp4 output=outputs/demo [batch_size=16] [device=cpu]
                       [backend=torch|onnx] [onnx=<ckpt>.onnx] [outputs=overlay,obj,views,json]

``backend=onnx`` runs the network in ONNX Runtime (exported to ``onnx``, by default next to the checkpoint, on
first use; ``lightning_modules.predictor``): same numbers within 1e-4, faster on CPU for HMR and PyMAF (not
BiGraph: BENCHMARKS.md).

Each image's people come from the box and keypoint files next to it (``datamodules.people``: ``<stem>_bbox.json``,
``<stem>_openpose.json``, ``<stem>_keypoints.json``; without any, the whole image). BiGraph reads 2D joints from
the keypoint files; an image without one stops the demo in one line. The people are reconstructed in batches
across images by :class:`lightning_modules.predictor.Predictor` (the demo adds only files and pictures). Per image
``<stem>``, in ``output``:

- ``<stem>_overlay.png``: every person's mesh drawn on the photo (the crop camera's projection mapped into the photo);
- per person k: ``<stem>_<k>.obj`` (the model's final mesh; BiGraph: its graph mesh, plus ``<stem>_<k>_smpl.obj``,
  the body model on its regressed parameters), ``<stem>_<k>_front.png`` and ``<stem>_<k>_side.png`` (the mesh
  alone, from the camera and turned 90 degrees), ``<stem>_<k>.json`` (SMPL parameters, the crop's
  weak-perspective camera, the full photo's camera translation and focal length, the box and the joints).

A video ``<stem>.mp4|mov|avi|mkv|webm`` (decoded and encoded by PyAV, which ships FFmpeg in its wheel) gives
``<stem>_overlay.mp4`` (every frame with its meshes, at the video's frame rate) and ``<stem>_<frame>.json`` (the
people of each frame, as above). Its people: ``<stem>_bbox.json`` (the same boxes in every frame), a folder
``<stem>_openpose/`` of OpenPose's per-frame files (``--write_json`` on a video: frame i is the i-th file in name
order), else the whole frame; BiGraph needs the folder.

``outputs=`` keeps only some of a photo's files (e.g. ``outputs=json,obj`` for a large folder: drawing is most of
the demo's time on CPU, BENCHMARKS.md). Every picture is drawn by the suite's rasteriser (``body.raster``): no
OpenGL, no display.
"""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime.cli import run_cli
from runtime.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
VIEW_SIZE = 512                 # side of the front and side views, pixels
OUTPUTS = ("overlay", "obj", "views", "json")   # what a photo's outputs may hold (outputs=...; default all)


@dataclass
class DemoArgs:
    ckpt: str
    input: str
    output: str = "outputs/demo"
    batch_size: int = 16
    device: str = "cpu"
    model: str | None = None
    backend: str = "torch"
    onnx: str | None = None
    outputs: tuple[str, ...] = OUTPUTS


def parse_args(argv: list[str]) -> DemoArgs:
    """``key=value`` arguments (module docstring); a bad one is a one-line error naming the valid keys."""
    fields = DemoArgs.__dataclass_fields__
    values: dict[str, str] = {}
    for item in argv:
        key, eq, value = item.partition("=")
        if not eq or key not in fields:
            raise UserError(f"make demo: bad argument {item!r}; valid keys are {', '.join(fields)} (key=value)")
        values[key] = value
    for key in ("ckpt", "input"):
        if not values.get(key):
            raise UserError(f"make demo: {key}= is required (CKPT=... INPUT=... OUTPUT=...)")
    try:
        batch = int(values.pop("batch_size", 16))
    except ValueError:
        raise UserError("make demo: batch_size must be an integer") from None
    outputs = tuple(o.strip() for o in values.pop("outputs", ",".join(OUTPUTS)).strip("[]").split(",") if o.strip())
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        raise UserError(f"make demo: outputs={','.join(outputs)} names {unknown[0] if unknown else 'nothing'}; "
                        f"choose from {', '.join(OUTPUTS)} (comma-separated)")
    return DemoArgs(batch_size=batch, outputs=outputs, **values)


def image_paths(source: str | Path) -> list[Path]:
    """An image, or the images of a folder (sorted); a one-line error when there is none."""
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"input={source}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                            f"({', '.join(VIDEO_SUFFIXES)}); give an image, a folder of images or a video")
        return [source]
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if found:
            return found
        raise UserError(f"input={source}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
    raise UserError(f"input={source}: no such file or folder")


# ------------------------------------------------------------------------------------------------ pictures
def photo_overlay(image: np.ndarray, people, faces: np.ndarray, img_res: int, opacity: float = 0.8) -> np.ndarray:
    """(H, W, 3) uint8: every person's mesh (``PersonMesh``) drawn on the photo, nearer people in front.

    Each mesh is projected by its crop camera and mapped into the photo (``metrics.protocols.vertices_in_image``);
    depths are put on one scale (a person's depth over its box side), so people occlude each other in order."""
    from body.camera import FOCAL_LENGTH, weak_perspective_to_translation
    from body.raster import rasterize
    from body.render import overlay, shade
    from callbacks.overlays import MESH_COLOUR
    from metrics.protocols import vertices_in_image

    photo = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0
    if not people:
        return image.copy()
    screens, cams, all_faces = [], [], []
    faces_t = torch.from_numpy(np.asarray(faces)).long()
    for k, person in enumerate(people):
        vertices = torch.from_numpy(person.vertices).float()[None]
        cam = torch.from_numpy(person.camera).float()[None]
        affine = torch.from_numpy(person.input_to_image).float()[None]
        screen = vertices_in_image(vertices, cam, affine, img_res, FOCAL_LENGTH)[0]
        screen[:, 2] = screen[:, 2] * img_res / (200.0 * person.scale)        # one depth scale for everybody
        screens.append(screen)
        cams.append(vertices[0] + weak_perspective_to_translation(cam, FOCAL_LENGTH, img_res)[0])
        all_faces.append(faces_t + k * vertices.shape[1])
    screen, verts_cam, faces_all = torch.cat(screens)[None], torch.cat(cams)[None], torch.cat(all_faces)
    frags = rasterize(screen, faces_all, (image.shape[0], image.shape[1]))
    colours = torch.tensor(MESH_COLOUR).expand(verts_cam.shape[1], 3)
    rgb, alpha = shade(frags, faces_all, verts_cam, colours)
    out = overlay(photo, rgb, alpha, opacity)[0].permute(1, 2, 0)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def mesh_views(vertices: np.ndarray, faces: np.ndarray, yaws_deg: tuple[float, ...] = (0.0, 90.0),
               size: int = VIEW_SIZE) -> np.ndarray:
    """(len(yaws_deg), size, size, 3) uint8: the camera-frame mesh (V, 3) alone on white, turned by each yaw about
    its vertical axis; the views are rasterised as one batch (one pass of the rasteriser's per-call work)."""
    from body.raster import rasterize
    from body.render import overlay, screen_coordinates, shade
    from callbacks.overlays import MESH_COLOUR, SIDE_DISTANCE, SIDE_FIELD, side_view

    body = torch.from_numpy(np.asarray(vertices)).float()[None]
    turned = torch.cat([side_view(body, yaw) for yaw in yaws_deg])                       # (Y, V, 3)
    faces_t = torch.from_numpy(np.asarray(faces)).long()
    frags = rasterize(screen_coordinates(turned, size, focal=size * SIDE_DISTANCE / SIDE_FIELD), faces_t, (size, size))
    rgb, alpha = shade(frags, faces_t, turned, torch.tensor(MESH_COLOUR).expand(turned.shape[1], 3))
    out = overlay(torch.ones(len(yaws_deg), 3, size, size), rgb, alpha, opacity=1.0).permute(0, 2, 3, 1)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# ------------------------------------------------------------------------------------------------ files
@functools.lru_cache(maxsize=4)
def _face_lines(faces: bytes) -> str:
    """The ``f a b c`` lines (1-based) of an (F, 3) int64 face array given as bytes: the same for every mesh of a
    model, so formatted once (they took two thirds of an OBJ's time)."""
    rows = (np.frombuffer(faces, np.int64).reshape(-1, 3) + 1).tolist()
    return "".join(["f %d %d %d\n" % tuple(f) for f in rows])


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """A Wavefront OBJ: one ``v x y z`` line per vertex (metres, camera frame), one ``f a b c`` per face (1-based).
    (``%`` on Python floats: formatting numpy scalars one by one took 4x as long.)"""
    lines = "".join(["v %.6f %.6f %.6f\n" % tuple(v) for v in np.asarray(vertices, np.float64).tolist()])
    path.write_text(lines + _face_lines(np.ascontiguousarray(faces, np.int64).tobytes()))
    return path


def person_record(person, image: Path, index: int, image_size: tuple[int, int]) -> dict:
    """The JSON of one person (module docstring)."""
    return {
        "image": str(image), "person": index, "image_size": list(image_size),
        "box": {"center": [float(v) for v in person.center], "scale": person.scale,
                "side_px": 200.0 * person.scale},
        "smpl": {"pose": [float(v) for v in person.pose], "betas": [float(v) for v in person.betas],
                 "pose_convention": "axis-angle, global orientation first, camera frame (x right, y down, z forward)"},
        "camera_crop": {"weak_perspective": [float(v) for v in person.camera],
                        "convention": "(s, tx, ty): focal 5000 px at the network input's side, principal point "
                                      "at the crop centre (body/camera.py)"},
        "camera_full_image": {"translation": [float(v) for v in person.camera_translation],
                              "focal_length": person.focal_length,
                              "principal_point": [image_size[0] / 2.0, image_size[1] / 2.0]},
        "joints_2d": None if person.joints is None else np.asarray(person.joints, np.float64).round(3).tolist(),
        "joints_3d": np.asarray(person.joints_3d, np.float64).round(6).tolist(),
    }


def write_outputs(out: Path, image_path: Path, image: np.ndarray, people, faces: np.ndarray, img_res: int,
                  outputs: tuple[str, ...] = OUTPUTS) -> list[Path]:
    """The files of one image (module docstring) that ``outputs`` names; returns their paths. PNGs at zlib level 1
    (lossless; three times faster to write than PIL's default, about a third larger)."""
    from body.render import save_png

    stem, size = image_path.stem, (image.shape[1], image.shape[0])
    written = []
    if "overlay" in outputs:
        written.append(save_png(out / f"{stem}_overlay.png", photo_overlay(image, people, faces, img_res), 1))
    for k, person in enumerate(people):
        if "obj" in outputs:
            written.append(write_obj(out / f"{stem}_{k}.obj", person.vertices, faces))
            if person.vertices_smpl is not None:
                written.append(write_obj(out / f"{stem}_{k}_smpl.obj", person.vertices_smpl, faces))
        if "views" in outputs:
            front, side = mesh_views(person.vertices, faces, (0.0, 90.0))
            written.append(save_png(out / f"{stem}_{k}_front.png", front, 1))
            written.append(save_png(out / f"{stem}_{k}_side.png", side, 1))
        if "json" in outputs:
            record = out / f"{stem}_{k}.json"
            record.write_text(json.dumps(person_record(person, image_path, k, size), indent=1))
            written.append(record)
    return written


def video_people(video: Path, width: int, height: int, frames: int, need_joints: bool) -> list[list]:
    """Each frame's people (module docstring)."""
    from datamodules.people import read_people_file, whole_image

    folder = video.with_name(video.stem + "_openpose")
    if folder.is_dir():
        files = sorted(folder.glob("*.json"))
        if len(files) < frames:
            raise UserError(f"{folder}: {len(files)} OpenPose files for {frames} frames of {video}; expected one per frame")
        return [read_people_file(f) for f in files[:frames]]
    if need_joints:
        raise UserError(f"{video}: BiGraph reads 2D joints and found no keypoint folder: expected {folder}/ with "
                        "OpenPose's per-frame JSON files (BODY_25)")
    boxes = video.with_name(video.stem + "_bbox.json")
    people = read_people_file(boxes) if boxes.is_file() else [whole_image(width, height)]
    return [people] * frames


def run_video(path: Path, predictor, out: Path, batch_size: int) -> tuple[int, int, list[Path]]:
    """(frames, people, files) of one video (module docstring)."""
    try:
        import av
    except ImportError:
        raise UserError(f"input={path}: videos need PyAV: pip install -e '.[demo]' (make venv installs it)") from None

    try:
        with av.open(str(path)) as source:
            stream = source.streams.video[0]
            rate = stream.average_rate or 25
            frames = [frame.to_ndarray(format="rgb24") for frame in source.decode(stream)]
    except (av.FFmpegError, IndexError) as err:
        raise UserError(f"input={path}: cannot decode it as a video ({type(err).__name__}: {err})") from None
    if not frames:
        raise UserError(f"input={path}: the video has no frames")
    height, width = frames[0].shape[:2]
    people = video_people(path, width, height, len(frames), predictor.needs_joints)
    target = out / f"{path.stem}_overlay.mp4"
    written, count = [target], 0
    from tqdm import tqdm

    with av.open(str(target), "w") as sink:
        encoder = sink.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        for start in tqdm(range(0, len(frames), batch_size), desc="demo", unit="batch", disable=not sys.stderr.isatty()):
            chunk = frames[start:start + batch_size]
            results = predictor.predict_many(chunk, people[start:start + batch_size])
            for i, (frame, persons) in enumerate(zip(chunk, results), start=start):
                drawn = photo_overlay(frame, persons, predictor.faces, predictor.img_res)
                for packet in encoder.encode(av.VideoFrame.from_ndarray(
                        np.ascontiguousarray(drawn[:encoder.height, :encoder.width]), format="rgb24")):
                    sink.mux(packet)
                record = out / f"{path.stem}_{i:06d}.json"
                record.write_text(json.dumps([person_record(p, path, k, (width, height)) | {"frame": i}
                                              for k, p in enumerate(persons)], indent=1))
                written.append(record)
                count += len(persons)
        for packet in encoder.encode():
            sink.mux(packet)
    return len(frames), count, written


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    from datamodules.convert.crop import ImageReadError, load_rgb
    from datamodules.people import people_in
    from lightning_modules.predictor import Predictor

    source = Path(args.input)
    video = source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES
    paths = [source] if video else image_paths(source)
    predictor = Predictor.from_checkpoint(args.ckpt, args.device, args.batch_size, args.model, args.backend, args.onnx)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    chunk = max(1, args.batch_size)
    if video:
        frames, count, written = run_video(source, predictor, out, chunk)
        print(f"demo: {count} people in {frames} frame(s) of {source} -> {out}")
        return {"frames": frames, "people": count, "files": [str(p) for p in written]}
    faces = predictor.faces
    written = []
    count = 0
    from tqdm import tqdm

    for start in tqdm(range(0, len(paths), chunk), desc="demo", unit="batch", disable=not sys.stderr.isatty()):
        images, people = [], []
        for path in paths[start:start + chunk]:
            try:
                image, _ = load_rgb(str(path))
            except ImageReadError as err:
                raise UserError(f"input={path}: {err}") from None
            images.append(image)
            people.append(people_in(path, image.shape[1], image.shape[0], need_joints=predictor.needs_joints))
        for path, image, persons in zip(paths[start:start + chunk], images, predictor.predict_many(images, people)):
            written += write_outputs(out, path, image, persons, faces, predictor.img_res, args.outputs)
            count += len(persons)
    print(f"demo: {count} people in {len(paths)} image(s) -> {out}")
    return {"images": len(paths), "people": count, "files": [str(p) for p in written]}


if __name__ == "__main__":
    run_cli(main)
