"""Using a trained model: photos and boxes in, one typed :class:`PersonMesh` per person out.

    from lightning_modules.predictor import Predictor
    from datamodules.people import Person
    predictor = Predictor.from_checkpoint("outputs/runs/pymaf-synthetic-s0/checkpoints/last.ckpt")
    people = predictor.predict(image, [Person(center=np.array([256.0, 256.0]), scale=2.2)])   # image: (H, W, 3) uint8 RGB
    people[0].vertices, people[0].pose, people[0].camera_translation

Two backends run the network: ``backend="torch"`` (the eager module, CPU or CUDA) and ``backend="onnx"``
(ONNX Runtime on the checkpoint's exported inference graph, ``lightning_modules.export``; on CPU 1.2-1.4x faster
than eager torch for HMR and PyMAF, 0.8x for BiGraph, whose graph layers lose torch's sparse products:
BENCHMARKS.md). The ONNX graph is written next to the checkpoint as ``<ckpt>.onnx``
(what ``make export`` writes) on first use and reused while it is newer than the checkpoint.

Each person goes through the evaluation sets' own path: the SPIN box is cut into a stored crop
(``datamodules.convert.crop``: box-averaged, then resampled) and resampled into the network input without
augmentation (``datamodules.augment.prepare_sample``), so a photo reaches the network as a converted
evaluation sample does. BiGraph reads each person's 12 detected joints (``Person.joints``, image pixels).

The full-image camera: the network's weak-perspective camera (s, tx, ty) belongs to its crop (focal length
5000 px at the input's side, principal point at the crop centre, ``body.camera``). The same view of the whole
photo has the focal length 5000 b / R in photo pixels (b = the box side 200 x scale, R = the input side) and
the principal point at the photo's centre; in it the body sits at
t = (tx + 2 (cx - W / 2) / (s b), ty + 2 (cy - H / 2) / (s b), 2 * 5000 / (R s)), the conversion CLIFF and
4D-Humans use. Both are in each result, with the crop -> photo pixel map the overlays use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from body.camera import FOCAL_LENGTH
from datamodules.augment import AugmentParams, prepare_sample
from datamodules.convert.crop import crop_image
from datamodules.convert.keypoints import keypoints_to_crop
from datamodules.people import Person
from datamodules.sample import Sample, person_crop_affine
from datamodules.schema import CROP_CONTEXT, CROP_SIZE
from datamodules.streams import EVAL_ONLY_KEYS, collate
from runtime.errors import UserError

BACKENDS = ("torch", "onnx")


@dataclass
class PersonMesh:
    """One person's reconstruction. Meshes and joints in the camera frame of the crop camera without its
    translation (metres, x right, y down, z forward); V vertices, F faces of the model's body.

    vertices          (V, 3) the model's final mesh (BiGraph: its non-parametric graph mesh)
    vertices_smpl     (V, 3) BiGraph: the body model on its regressed parameters; None for HMR and PyMAF
    joints_3d         (24, 3) SPIN's 24 joints of the final mesh
    pose              (72,) axis-angle, global orientation first; pose_rotmat (24, 3, 3); betas (10,)
    camera            (3,) weak-perspective (s, tx, ty) of the crop
    camera_translation (3,) the body's translation in the full photo's camera (module docstring)
    focal_length      the full photo camera's focal length, pixels (principal point at the photo's centre)
    input_to_image    (2, 3) network-input pixels -> photo pixels
    center, scale     the person's box; joints (12, 3) the BiGraph joints it was given, or None
    """

    vertices: np.ndarray
    vertices_smpl: np.ndarray | None
    joints_3d: np.ndarray
    pose: np.ndarray
    pose_rotmat: np.ndarray
    betas: np.ndarray
    camera: np.ndarray
    camera_translation: np.ndarray
    focal_length: float
    input_to_image: np.ndarray
    center: np.ndarray
    scale: float
    joints: np.ndarray | None


def full_image_camera(cam: np.ndarray, center: np.ndarray, scale: float, image_size: tuple[int, int],
                      img_res: int) -> tuple[np.ndarray, float]:
    """(translation (3,), focal length px) of the whole photo's camera (module docstring). ``image_size`` is
    (width, height)."""
    s, tx, ty = (float(v) for v in cam)
    box = 200.0 * float(scale)
    w, h = image_size
    t = np.array([tx + 2.0 * (center[0] - w / 2.0) / (s * box), ty + 2.0 * (center[1] - h / 2.0) / (s * box),
                  2.0 * FOCAL_LENGTH / (img_res * s)])
    return t, FOCAL_LENGTH * box / img_res


def exported_graph(module, ckpt: str | Path, target: str | Path | None = None) -> Path:
    """The ONNX file of ``module``'s inference graph (``target``, default ``<ckpt>.onnx``): exported when missing or
    older than the checkpoint, else reused."""
    from lightning_modules.export import default_onnx_path, export_onnx

    target = Path(target) if target else default_onnx_path(ckpt)
    if target.is_file() and target.stat().st_mtime >= Path(ckpt).stat().st_mtime:
        return target
    try:
        return export_onnx(module, target)
    except PermissionError:
        raise UserError(f"backend=onnx: cannot write the exported graph to {target}; pass onnx=PATH "
                        "(a writable file) or export it first (make export CKPT=... OUT=PATH)") from None


def onnx_providers(device: str | torch.device) -> list[str]:
    """ONNX Runtime's execution providers for a torch device name; a one-line error when CUDA is asked for and the
    installed onnxruntime has none."""
    import onnxruntime as ort

    if torch.device(device).type == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UserError(f"backend=onnx device={device}: this onnxruntime runs on CPU only "
                        f"({', '.join(ort.get_available_providers())}); use device=cpu, backend=torch, or install "
                        "onnxruntime-gpu")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class Predictor:
    """A trained module (``lightning_modules.registry.load_module``) on photos, in batches of ``batch_size``; the
    network runs in the module itself or, given ``onnx`` (an ``OnnxModel`` of the module's exported graph), in
    ONNX Runtime. The module gives the body's faces and the input size either way."""

    def __init__(self, module, device: str | torch.device = "cpu", batch_size: int = 16, onnx=None):
        self.module = module.eval().to("cpu" if onnx is not None else device)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.img_res = int(module.img_res)
        self.onnx = onnx

    @classmethod
    def from_checkpoint(cls, path: str, device: str | torch.device = "cpu", batch_size: int = 16,
                        model: str | None = None, backend: str = "torch",
                        onnx_path: str | Path | None = None) -> "Predictor":
        """Load a ``make train`` checkpoint (or a converted official one) weights-only; ``backend`` is one of
        ``BACKENDS`` (module docstring), ``onnx_path`` where the ONNX backend's graph lives (default ``<ckpt>.onnx``)."""
        from lightning_modules.registry import load_module

        if backend not in BACKENDS:
            raise UserError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
        module = load_module(path, model)
        if backend == "torch":
            return cls(module, device, batch_size)
        from lightning_modules.export import OnnxModel, require_onnx

        require_onnx("backend=onnx")
        # Threads that sleep between runs: spinning ones would take the cores from the cropping and drawing
        # that a caller (make demo) does between batches.
        session = OnnxModel(exported_graph(module, path, onnx_path), providers=onnx_providers(device), spinning=False)
        return cls(module, device, batch_size, onnx=session)

    @property
    def needs_joints(self) -> bool:
        """Whether the network reads 2D joints (BiGraph's skeleton branch)."""
        return getattr(self.module, "roi_joints", None) is not None

    @property
    def faces(self) -> np.ndarray:
        return self.module.body.faces.cpu().numpy()

    def network_input(self, image: np.ndarray, person: Person) -> dict:
        """The person's network-input sample (``prepare_sample``'s keys; module docstring)."""
        h, w = image.shape[:2]
        affine = person_crop_affine(person.center, person.scale, CROP_SIZE, CROP_CONTEXT)
        joints = None if person.joints is None else keypoints_to_crop(person.joints, affine)
        sample = Sample.build(image=crop_image(image, affine, CROP_SIZE), source="demo", image_size=[w, h],
                              crop_to_image=affine, crop_context=CROP_CONTEXT, bigraph_joints_2d=joints,
                              center=np.asarray(person.center, np.float32), scale=float(person.scale))
        item = prepare_sample(sample, AugmentParams(), self.img_res)
        return {k: v for k, v in item.items() if k not in EVAL_ONLY_KEYS}

    @torch.no_grad()
    def _run(self, items: list[dict]) -> dict[str, torch.Tensor]:
        """The network on a list of ``network_input`` items: {vertices, joints_3d, pose_rotmat, betas, cam[,
        vertices_smpl]} (B, ...) float32 CPU tensors."""
        batch = collate(items, [])
        if self.onnx is not None:
            joints = batch["bigraph_joints_2d"].numpy() if self.needs_joints else None
            return {k: torch.from_numpy(v) for k, v in self.onnx(batch["img"].numpy(), joints).items()}
        batch = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        prediction = self.module(batch)
        final = self.module.decoder.final(prediction)
        out = {k: final[k].float().cpu() for k in ("vertices", "joints_3d", "pose_rotmat", "betas", "cam")}
        if prediction.vertices_np is not None:
            out["vertices_smpl"] = self.module.decoder.decode(prediction.final)["vertices"].float().cpu()
        return out

    def predict_many(self, images: Sequence[np.ndarray], people: Sequence[Sequence[Person]]) -> list[list[PersonMesh]]:
        """Every person of every image, in batches across images: ``people[i]`` are image i's people."""
        from body.rotations import rotmat_to_axis_angle

        if self.needs_joints:
            for i, persons in enumerate(people):
                if any(p.joints is None for p in persons):
                    raise ValueError(f"image {i}: BiGraph needs every person's 2D joints (Person.joints)")
        jobs = [(i, p) for i, persons in enumerate(people) for p in persons]
        results: list[list[PersonMesh]] = [[] for _ in images]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            items = [self.network_input(images[i], p) for i, p in chunk]
            out = self._run(items)
            axis_angle = rotmat_to_axis_angle(out["pose_rotmat"]).reshape(len(chunk), 72)
            for k, ((i, person), item) in enumerate(zip(chunk, items)):
                h, w = images[i].shape[:2]
                cam = out["cam"][k].numpy()
                t, focal = full_image_camera(cam, person.center, person.scale, (w, h), self.img_res)
                results[i].append(PersonMesh(
                    vertices=out["vertices"][k].numpy(),
                    vertices_smpl=out["vertices_smpl"][k].numpy() if "vertices_smpl" in out else None,
                    joints_3d=out["joints_3d"][k].numpy(), pose=axis_angle[k].numpy(),
                    pose_rotmat=out["pose_rotmat"][k].numpy(), betas=out["betas"][k].numpy(), camera=cam,
                    camera_translation=t, focal_length=focal, input_to_image=item["input_to_image"].numpy(),
                    center=np.asarray(person.center, np.float64), scale=float(person.scale),
                    joints=None if person.joints is None else np.asarray(person.joints)))
        return results

    def predict(self, image: np.ndarray, people: Sequence[Person]) -> list[PersonMesh]:
        """The people of one (H, W, 3) uint8 RGB image."""
        return self.predict_many([image], [people])[0]
