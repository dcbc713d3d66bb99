"""Generate a batch of synthetic samples of one source: draws -> body model -> placement -> render -> samples.

Randomness: every sample has its own generators, derived from (seed, split, source, index) with numpy's
``SeedSequence`` and spawned per aspect (shape, pose, camera, appearance, background, noise, labels,
detections), so a sample does not depend on the batch it is rendered in, on the number of worker
processes, or on the other aspects' draws. The body model runs one person at a time and shading works
on one person's pixels; the rasteriser's per-pixel result does not depend on the batch (exact integer
keys, element-wise arithmetic), so a sample is the same whatever batch it is rendered in. :mod:`.dataset`
also fixes the batches and runs torch single-threaded, which makes the shards byte-identical between runs
and between ``--workers`` settings (on one machine and library stack).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from body.joints import SPIN49_NUM_OPENPOSE
from body.model import BodyModel
from datamodules.convert.datasets import H36M17_TO_J24_SLOTS
from datamodules.sample import CROP_SIZE, Sample, safe_key
from datamodules.synthetic.annotate import Person, build_sample
from datamodules.synthetic.appearance import sample_appearance
from datamodules.synthetic.backgrounds import background
from datamodules.synthetic.compose import compose
from datamodules.synthetic.placement import (crop_affine_for, crop_camera, image_to_crop, place_person, project,
                                             sample_camera, spin_box)
from datamodules.synthetic.poses import sample_betas, sample_body_pose, sample_orientation
from datamodules.synthetic.renderer import render_original_labels, render_people
from datamodules.synthetic.sources import SourceSpec
from datamodules.synthetic.texture import BodyCoordinates, body_coordinates

ASPECTS: tuple[str, ...] = ("shape", "pose", "camera", "appearance", "background", "noise", "labels", "detections")
HORIZON: tuple[float, float] = (0.35, 0.9)  # of the way from the ankles to the head top
_ANKLES = [SPIN49_NUM_OPENPOSE + 0, SPIN49_NUM_OPENPOSE + 5]
_HEAD_TOP = SPIN49_NUM_OPENPOSE + 13


def name_id(name: str) -> int:
    """A stable 32-bit id of a split or source name (CRC-32), for seeding."""
    return zlib.crc32(name.encode("utf-8"))


def sample_generators(seed: int, split: str, source: str, index: int) -> dict[str, np.random.Generator]:
    """One independent generator per aspect (``ASPECTS``) of sample ``index`` of ``split``/``source``."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(name_id(split), name_id(source), index))
    return {name: np.random.default_rng(child) for name, child in zip(ASPECTS, ss.spawn(len(ASPECTS)))}


def sample_key(spec: SourceSpec, index: int) -> str:
    """WebDataset key of sample ``index`` of a source, e.g. ``h36m_000042``."""
    return safe_key(f"{spec.name}_{index:06d}")


@dataclass
class _Draw:
    pose: np.ndarray   # (72,) float32
    betas: np.ndarray  # (10,) float32


class SceneGenerator:
    """Holds the body model and its body coordinates; renders batches of people and their samples."""

    def __init__(self, model: BodyModel, crop_size: int = CROP_SIZE):
        self.model = model.eval()
        self.coords: BodyCoordinates = body_coordinates(model)
        self.crop_size = crop_size

    @classmethod
    def from_config(cls, asset_set: str = "open", smpl_dir: str | None = None) -> "SceneGenerator":
        return cls(BodyModel.from_config(asset_set, "neutral", smpl_dir))

    def _draw(self, gens: dict[str, np.random.Generator], spec: SourceSpec) -> _Draw:
        betas = sample_betas(gens["shape"])
        body, _ = sample_body_pose(gens["pose"], spec.library, spec.spread)
        orient = sample_orientation(gens["pose"])
        return _Draw(np.concatenate([orient, body]).astype(np.float32), betas.astype(np.float32))

    def _body(self, draw: _Draw) -> tuple[np.ndarray, np.ndarray]:
        """(V, 3) vertices and (49, 3) keypoints of one person, camera frame, no translation. One person
        per call: a batched matrix product may round differently for another batch size, and a sample
        must not depend on its batch."""
        pose = torch.from_numpy(draw.pose)[None]
        with torch.no_grad():
            out = self.model(torch.from_numpy(draw.betas)[None], pose[:, 3:], pose[:, :3])
        return out.vertices[0].numpy(), out.keypoints49[0].numpy()

    def _with_h36m_joints(self, verts0: np.ndarray, kp0: np.ndarray) -> np.ndarray:
        """(49, 3) keypoints with the 17 H36M slots of the ground-truth joints replaced by the body model's
        H36M-regressed joints of ``verts0`` (V, 3) (``SourceSpec.h36m_joints``)."""
        with torch.no_grad():
            h36m = self.model.h36m17(torch.from_numpy(verts0)[None])[0].numpy()
        out = kp0.copy()
        out[[SPIN49_NUM_OPENPOSE + j for j in H36M17_TO_J24_SLOTS]] = h36m
        return out

    def _place(self, gen: np.random.Generator, spec: SourceSpec, verts0: np.ndarray,
               kp0: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
        """Camera, translation, SPIN box and crop of one person (see :mod:`.placement`).

        Returns:
            (the person's geometry fields of :class:`.annotate.Person`, crop focal (2,), crop principal (2,)).
        """
        camera = sample_camera(gen)
        transl = place_person(verts0.astype(np.float64), camera, gen).astype(np.float32)
        focal = np.full(2, camera.focal, dtype=np.float32)
        principal = camera.principal.astype(np.float32)
        kp3 = kp0 + transl
        truncate = bool(gen.random() < spec.truncation)
        center, scale = spin_box(project(kp3, focal, principal), gen, truncate)
        crop_to_image = crop_affine_for(center, scale, self.crop_size)
        fields = dict(transl=transl, keypoints3d=kp3, vertices=verts0 + transl, focal=focal, principal=principal,
                      image_size=np.array(camera.image_size, dtype=np.int32), center=center.astype(np.float32),
                      scale=float(scale), crop_to_image=crop_to_image)
        return (fields, *crop_camera(focal, principal, crop_to_image))

    def people(self, seed: int, spec: SourceSpec, indices: Sequence[int]) -> list[tuple[Person, dict]]:
        """Render the people of samples ``indices`` of ``spec``; each with its generators (for the labels
        and detections still to draw)."""
        gens = [sample_generators(seed, spec.split, spec.name, i) for i in indices]
        draws = [self._draw(g, spec) for g in gens]
        fields, focal_crop, principal_crop, looks, backgrounds = [], [], [], [], []
        for g, d in zip(gens, draws):
            verts0, kp0 = self._body(d)
            if spec.h36m_joints:
                kp0 = self._with_h36m_joints(verts0, kp0)
            f, fc, pc = self._place(g["camera"], spec, verts0, kp0)
            fields.append(dict(pose=d.pose, betas=d.betas, **f))
            focal_crop.append(fc)
            principal_crop.append(pc)
            looks.append(sample_appearance(g["appearance"]))
            kp_crop = image_to_crop(project(f["keypoints3d"], f["focal"], f["principal"]), f["crop_to_image"])
            horizon = self._horizon(kp_crop, g["background"])
            kind = spec.backgrounds[int(g["background"].integers(len(spec.backgrounds)))]
            backgrounds.append(background(g["background"], kind, (self.crop_size, self.crop_size), horizon))

        verts = torch.from_numpy(np.stack([f["vertices"] for f in fields]))
        rgb, alpha, mask = render_people(verts, torch.from_numpy(np.stack(focal_crop)).float(),
                                         torch.from_numpy(np.stack(principal_crop)).float(), self.model.faces,
                                         self.coords, looks, self.crop_size)
        result = []
        for b, (g, f, look) in enumerate(zip(gens, fields, looks)):
            image = compose(backgrounds[b], rgb[b], alpha[b], look.blur_sigma, look.noise_sigma, g["noise"])
            original = self._original_labels(f) if spec.renders_original else None
            result.append((Person(image=image, part_mask=mask[b].numpy(), original_labels=original, **f), g))
        return result

    def _original_labels(self, f: dict) -> np.ndarray:
        """(H0, W0) uint8 LSP-6 labels of one person at the original resolution (original camera)."""
        return render_original_labels(torch.from_numpy(f["vertices"]), torch.from_numpy(f["focal"]),
                                      torch.from_numpy(f["principal"]), tuple(int(v) for v in f["image_size"]),
                                      self.model.faces, self.coords.face_lsp6)

    def _horizon(self, kp_crop: np.ndarray, rng: np.random.Generator) -> float:
        """Row of the horizon in the crop: between the ankles and the head top (camera at body height)."""
        ankles = kp_crop[_ANKLES, 1].mean()
        top = kp_crop[_HEAD_TOP, 1]
        y = ankles + rng.uniform(*HORIZON) * (top - ankles)
        return float(np.clip(y, 0.1 * self.crop_size, 0.95 * self.crop_size))

    def samples(self, seed: int, spec: SourceSpec, indices: Sequence[int]) -> list[Sample]:
        """The samples ``indices`` of source ``spec`` (see :mod:`.sources` for what each keeps)."""
        return [build_sample(person, spec, sample_key(spec, i), g["labels"], g["detections"])
                for i, (person, g) in zip(indices, self.people(seed, spec, indices))]
