"""From a rendered person's full ground truth to a :class:`datamodules.sample.Sample` of one source.

The person (:class:`Person`) knows everything; the source's :class:`.sources.SourceSpec` decides what the
sample keeps (see the table in :mod:`.sources`). Projections are computed from the values as stored
(float32 keypoints, camera and ``crop_to_image``) in float64, so that re-projecting the stored 3D data
with the stored camera and the inverse of ``crop_to_image`` lands on ``keypoints_2d`` to ~1e-4 px.

Every sample's ``image_id`` is its key (one person per synthetic image). A person rendered at the
original resolution (``original_labels``, evaluation sets) gives ``area``, its foreground pixel count
there, and for a source with ``original_mask`` the label map itself as ``mask_original`` and its
foreground (label > 0) as ``silhouette_original``. ``bigraph_joints_from`` is ``synthetic`` (the simulated
detector of :mod:`.detections`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from body.joints import SPIN49_NUM_OPENPOSE, SPIN49_TO_BIGRAPH12
from datamodules.sample import CROP_CONTEXT, Sample
from datamodules.synthetic.detections import detect_joints
from datamodules.synthetic.placement import image_to_crop, in_crop, project
from datamodules.synthetic.sources import SourceSpec


@dataclass
class Person:
    """The full ground truth of one rendered person (camera frame: x right, y down, z forward; metres).

    pose (72,) float32 axis-angle, global orientation first (camera frame); betas (10,) float32;
    transl (3,) float32, the translation added to the body model's output; keypoints3d (49, 3) float32
    SPIN-49 keypoints; vertices (V, 3) float32; image (H, W, 3) uint8 crop; part_mask (H, W) uint8
    LSP-6 labels (0 background); focal (2,) and principal (2,) float32 original intrinsics; image_size
    (2,) original (width, height); center (2,) float32 and scale of the SPIN box; crop_to_image (2, 3)
    float32; original_labels (H0, W0) uint8 LSP-6 labels rendered at the original resolution with the
    original camera (H0, W0 = image_size height, width), or None when not rendered (training sources).
    """

    pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    keypoints3d: np.ndarray
    vertices: np.ndarray
    image: np.ndarray
    part_mask: np.ndarray
    focal: np.ndarray
    principal: np.ndarray
    image_size: np.ndarray
    center: np.ndarray
    scale: float
    crop_to_image: np.ndarray
    original_labels: np.ndarray | None = None

    def keypoints_crop(self) -> np.ndarray:
        """(49, 2) float64 crop pixels of the 49 keypoints: projected with the original camera, then mapped
        with the inverse of ``crop_to_image``."""
        return image_to_crop(project(self.keypoints3d, self.focal, self.principal), self.crop_to_image)

    def person_box_side(self) -> float:
        """Side of the person box in crop pixels (``Sample.person_box``)."""
        return min(self.image.shape[:2]) / CROP_CONTEXT


def keypoint_confidence(spec: SourceSpec, visible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(49,) confidences: 1 on the slots the source annotates, inside the crop, and not dropped.

    Args:
        visible: (49,) bool, inside the crop.
        rng: draws the drops (one uniform per keypoint, always drawn: the stream does not depend on the
            source's table).
    """
    labelled = np.zeros(49, dtype=bool)
    labelled[[SPIN49_NUM_OPENPOSE + j for j in spec.slots_2d]] = True
    if spec.openpose_2d:
        labelled[:SPIN49_NUM_OPENPOSE] = True
    kept = rng.random(49) >= spec.drop_rate
    return (labelled & visible & kept).astype(np.float64)


def joints_3d_field(spec: SourceSpec, keypoints3d: np.ndarray) -> np.ndarray:
    """(24, 4) ``joints_3d``: SPIN's 24 ground-truth joints (keypoints 25..48) with confidence 1 on the
    source's 3D slots; all zeros for a source without 3D."""
    out = np.zeros((24, 4), dtype=np.float32)
    if spec.has_3d:
        slots = list(spec.slots_3d)
        out[slots, :3] = keypoints3d[SPIN49_NUM_OPENPOSE:][slots]
        out[slots, 3] = 1.0
    return out


def build_sample(person: Person, spec: SourceSpec, key: str, rng_labels: np.random.Generator,
                 rng_detect: np.random.Generator) -> Sample:
    """The sample of ``person`` as source ``spec`` records it (see :mod:`.sources`)."""
    kp = person.keypoints_crop()
    conf = keypoint_confidence(spec, in_crop(kp, person.image.shape[1]), rng_labels)
    keypoints_2d = np.concatenate([kp * conf[:, None], conf[:, None]], axis=1)
    detected, _ = detect_joints(kp[SPIN49_TO_BIGRAPH12], person.person_box_side(), rng_detect)
    fields = dict(
        keypoints_2d=keypoints_2d, joints_3d=joints_3d_field(spec, person.keypoints3d),
        has_3d=spec.has_3d, has_smpl=spec.has_smpl, has_mask=spec.has_mask,
        bigraph_joints_2d=detected, bigraph_joints_from="synthetic", gender="neutral",
        camera={"focal_length": person.focal, "principal_point": person.principal},
        center=person.center, scale=person.scale, crop_context=CROP_CONTEXT, image_id=key,
    )
    if spec.has_smpl:
        fields.update(pose=person.pose, betas=person.betas)
    if spec.has_mask:
        fields["mask"] = person.part_mask
    if spec.vertices:
        fields.update(vertices=person.vertices, transl=person.transl)
    if person.original_labels is not None:
        area = int(np.count_nonzero(person.original_labels))
        if area > 0:  # 0 only for a person entirely outside the original image
            fields["area"] = float(area)
        if spec.original_mask:
            fields["mask_original"] = person.original_labels
            fields["silhouette_original"] = (person.original_labels > 0).astype(np.uint8)
    return Sample.build(image=person.image, source=spec.name, image_size=person.image_size,
                        crop_to_image=person.crop_to_image, key=key, **fields)
