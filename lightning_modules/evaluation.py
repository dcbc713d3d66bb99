"""``ProtocolEvaluator``: one evaluation set's table row for a trained ``MeshRecoveryModule``.

The row's columns are ``metrics.protocols.PROTOCOL_COLUMNS[protocol]`` (see there for the papers'
tables). 3D protocols use the module's own ground-truth selection (``MeshRecoveryModule.evaluation_targets``:
SMPL ground truth where the sample has it, else its 3D joints) and every mesh the model predicts
(``evaluated_meshes``: BiGraph's graph mesh ``np`` and body-model mesh ``p``). LSP and COCO work in
original-image pixels (``metrics.protocols``). State lives in the torchmetrics classes, so rows
accumulated on several ranks sync like the validation metrics.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from body.errors import UserError
from body.joints import SPIN49_TO_COCO17
from body.render import face_labels_image, vertex_labels_to_face_labels
from metrics import MPJPE, PAMPJPE, PVE, KeypointAP, PerIterationMPJPE, SegmentationScores
from metrics.protocols import (PROTOCOL_COLUMNS, THREE_D_PROTOCOLS, coco_ground_truth_keypoints, foreground_of,
                               input_box_in_image, keypoints_in_image, vertices_in_image)

NUM_LSP_CLASSES: int = 7   # background + 6 parts (body.parts.LSP6_PART_NAMES)


@dataclass
class CocoAnnotations:
    """COCO person-keypoint ground truth read from an official annotation file (``person_keypoints_*.json``).

    ``image_ids`` maps an image's file name (base name) to its id; ``by_image`` holds each image's
    annotations as COCO writes them (``keypoints`` 51 numbers, ``area``, ``bbox``, ``iscrowd``,
    ``num_keypoints``).
    """

    image_ids: dict[str, int]
    by_image: dict[int, list[dict]]

    @classmethod
    def from_json(cls, path: str) -> "CocoAnnotations":
        if not os.path.isfile(path):
            raise UserError(f"coco_annotations={path}: no such file (COCO's person_keypoints_val2014.json, "
                            "from https://cocodataset.org/#download, 'Train/Val annotations')")
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise UserError(f"coco_annotations={path}: not a COCO annotation file (needs 'images' and 'annotations')")
        image_ids = {os.path.basename(im["file_name"]): int(im["id"]) for im in data["images"]}
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if int(ann.get("category_id", 1)) == 1:
                by_image.setdefault(int(ann["image_id"]), []).append(ann)
        return cls(image_ids, by_image)

    def ground_truth(self, image_ids: list[int]) -> dict[str, Tensor]:
        """The ``KeypointAP.update`` ground-truth arguments of these images (all their people, crowds included)."""
        anns = [(i, a) for i in image_ids for a in self.by_image.get(i, [])]
        return {
            "gt_image_ids": torch.tensor([i for i, _ in anns], dtype=torch.long),
            "gt_keypoints": torch.tensor([a["keypoints"] for _, a in anns], dtype=torch.float64).reshape(-1, 17, 3),
            "gt_areas": torch.tensor([float(a["area"]) for _, a in anns], dtype=torch.float64),
            "gt_boxes": torch.tensor([a["bbox"] for _, a in anns], dtype=torch.float64).reshape(-1, 4),
            "gt_iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for _, a in anns], dtype=torch.long),
            "gt_num_keypoints": torch.tensor([int(a.get("num_keypoints", sum(v > 0 for v in a["keypoints"][2::3])))
                                              for _, a in anns], dtype=torch.long),
        }


class ProtocolEvaluator:
    """Accumulates one evaluation set's row (module docstring).

    Args:
        module: the trained model (its ``body``, ``img_res`` and evaluation hooks are used).
        protocol: one of ``metrics.protocols.PROTOCOLS``.
        coco: official COCO annotations (COCO protocol only); without them the ground truth comes from
            the samples (keypoints, ``area``, the person box).
    """

    def __init__(self, module, protocol: str, coco: CocoAnnotations | None = None):
        if protocol not in PROTOCOL_COLUMNS:
            raise UserError(f"unknown protocol {protocol!r}: valid choices are {', '.join(PROTOCOL_COLUMNS)}")
        self.module, self.protocol, self.coco = module, protocol, coco
        self.metrics: dict[str, Any] = {}
        self.samples = 0
        self.evaluated = 0
        self.coco_images: dict[str, int] = {}
        self.unmatched_images = 0
        self._face_lsp6: Tensor | None = None
        self._coco_ground_truth_added = False

    # ------------------------------------------------------------------------------------------
    def _metric(self, name: str, factory) -> Any:
        if name not in self.metrics:
            self.metrics[name] = factory().to(self.module.device)
        return self.metrics[name]

    @torch.no_grad()
    def update(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        """Add one batch: ``out`` is ``module.run_network(batch)`` on the same batch."""
        self.samples += int(batch["img"].shape[0])
        if self.protocol in THREE_D_PROTOCOLS:
            self._update_3d(batch, out)
        elif self.protocol == "lsp":
            self._update_lsp(batch, out)
        else:
            self._update_coco(batch, out)

    def _update_3d(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        module = self.module
        targets = module.evaluation_targets(batch)
        if targets is None:
            return
        index, gt_joints, smpl_index = targets["index"], targets["joints"], targets["smpl_index"]
        self.evaluated += int(index.numel())
        for suffix, vertices in module.evaluated_meshes(out).items():
            joints = module.protocol_joints(vertices)[index]
            self._metric("mpjpe" + suffix, MPJPE).update(joints, gt_joints)
            self._metric("pa_mpjpe" + suffix, PAMPJPE).update(joints, gt_joints)
            if smpl_index.numel():
                self._metric("pve" + suffix, lambda: PVE(alignment="none")).update(vertices[smpl_index],
                                                                                    targets["vertices"])
        # PyMAF's Table 6: M0 (the initial, mean-parameter estimate, when the network returns it) .. M_T
        estimates = ([out["initial"]] if "initial" in out else []) + list(out.get("iterations", []))
        if len(estimates) > 1:
            joints = [module.protocol_joints(module.decode(e)["vertices"])[index] for e in estimates]
            self._metric("mpjpe_per_iteration", lambda: PerIterationMPJPE(len(estimates))).update(joints, gt_joints)
            self._metric("pa_mpjpe_per_iteration",
                         lambda: PerIterationMPJPE(len(estimates), procrustes=True)).update(joints, gt_joints)

    def _update_lsp(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        masks = batch.get("mask_original")
        if masks is None or all(m is None for m in masks):
            return
        module = self.module
        pred = module.final_prediction(out)
        screen = vertices_in_image(pred["vertices"], pred["cam"], batch["input_to_image"].to(pred["cam"]),
                                   module.img_res)
        if self._face_lsp6 is None:
            labels = torch.as_tensor(module.body.assets.part_lsp6, dtype=torch.long)
            self._face_lsp6 = vertex_labels_to_face_labels(labels, module.body.faces.cpu()).to(screen.device)
        fb = self._metric("fb", lambda: SegmentationScores(2))
        parts = self._metric("parts", lambda: SegmentationScores(NUM_LSP_CLASSES))
        for b, gt in enumerate(masks):
            if gt is None:
                continue
            gt = gt.to(screen.device).long()
            labels = face_labels_image(screen[b], module.body.faces.to(screen.device), self._face_lsp6,
                                       gt.shape[0], gt.shape[1])
            fb.update(foreground_of(labels)[None], foreground_of(gt)[None])
            parts.update(labels[None], gt[None])
            self.evaluated += 1

    def _image_id(self, name: str) -> int | None:
        if self.coco is not None:
            return self.coco.image_ids.get(os.path.basename(name))
        return self.coco_images.setdefault(name, len(self.coco_images))

    def _update_coco(self, batch: Mapping[str, Any], out: Mapping[str, Any]) -> None:
        module = self.module
        pred = module.final_prediction(out)
        to_image = batch["input_to_image"].to(pred["cam"])
        names = [i or k for i, k in zip(batch.get("image_id", batch["key"]), batch["key"])]
        ids = [self._image_id(n) for n in names]
        keep = [b for b, i in enumerate(ids) if i is not None]
        self.unmatched_images += len(ids) - len(keep)
        if not keep:
            return
        keep_t = torch.tensor(keep, device=to_image.device)
        det = keypoints_in_image(pred["keypoints_2d"][:, SPIN49_TO_COCO17].double(), to_image.double(),
                                 module.img_res)[keep_t]
        det_ids = torch.tensor([ids[b] for b in keep], dtype=torch.long)
        ap = self._metric("coco", KeypointAP)
        self.evaluated += len(keep)
        if self.coco is not None:   # ground truth added once per image, in row()
            ap.update(det_ids, det, torch.ones(len(keep), dtype=torch.float64), **_no_ground_truth())
            return
        if not bool(batch["has_area"][keep_t].all()):
            raise UserError("COCO protocol: samples without 'area' (the person's segmentation area); pass "
                            "coco_annotations=<person_keypoints_val2014.json> to read COCO's own ground truth")
        gt = coco_ground_truth_keypoints(batch["keypoints_2d"][:, SPIN49_TO_COCO17].to(to_image), to_image,
                                         module.img_res)[keep_t]
        ap.update(det_ids, det, torch.ones(len(keep), dtype=torch.float64), gt_image_ids=det_ids,
                  gt_keypoints=gt, gt_areas=batch["area"][keep_t].double(),
                  gt_boxes=input_box_in_image(to_image.double(), module.img_res)[keep_t])

    # ------------------------------------------------------------------------------------------
    def row(self) -> dict[str, Any]:
        """The table row: the protocol's columns (mm / [0, 1]; None where nothing was evaluated), plus
        ``per_iteration`` (3D, several estimates) and ``details`` (per-class F1 and so on)."""
        if self.protocol in THREE_D_PROTOCOLS:
            return self._row_3d()
        if self.protocol == "lsp":
            return self._row_lsp()
        return self._row_coco()

    def _value(self, name: str) -> float | None:
        metric = self.metrics.get(name)
        if metric is None or not metric.update_called:
            return None
        return _number(metric.compute())

    def _row_3d(self) -> dict[str, Any]:
        suffixes = list(self.module.EVALUATED_MESHES)
        columns: dict[str, Any] = {}
        for column in PROTOCOL_COLUMNS[self.protocol]:
            metric = "pve" if column in ("pve", "mpve") else column
            for suffix in suffixes:
                columns[column + suffix] = self._value(metric + suffix)
        result: dict[str, Any] = {"columns": columns}
        per_iteration = {}
        for name in ("mpjpe_per_iteration", "pa_mpjpe_per_iteration"):
            metric = self.metrics.get(name)
            if metric is not None and metric.update_called:
                per_iteration[name.removesuffix("_per_iteration")] = [_number(v) for v in metric.compute()]
        if per_iteration:
            result["per_iteration"] = per_iteration
        return result

    def _row_lsp(self) -> dict[str, Any]:
        if "fb" not in self.metrics:
            return {"columns": dict.fromkeys(PROTOCOL_COLUMNS["lsp"])}
        fb, parts = self.metrics["fb"].compute(), self.metrics["parts"].compute()
        return {"columns": {"fb_acc": _number(fb["accuracy"]), "fb_f1": _number(fb["mean_f1"]),
                            "parts_acc": _number(parts["accuracy_ignored_as_background"]),
                            "parts_f1": _number(parts["mean_f1"])},
                "details": {"parts_acc_labelled_pixels": _number(parts["accuracy"]),
                            "parts_f1_per_class": [_number(v) for v in parts["per_class_f1"]],
                            "fb_f1_per_class": [_number(v) for v in fb["per_class_f1"]]}}

    def _row_coco(self) -> dict[str, Any]:
        ap = self.metrics.get("coco")
        if ap is None:
            return {"columns": dict.fromkeys(PROTOCOL_COLUMNS["coco"])}
        if self.coco is not None and not self._coco_ground_truth_added:   # once, however often row() is called
            seen = sorted({int(i) for part in ap.det_image_ids for i in part.tolist()})
            ap.update(*_no_detections(), **self.coco.ground_truth(seen))
            self._coco_ground_truth_added = True
        scores = ap.compute()
        names = {"ap": "AP", "ap50": "AP50", "ap75": "AP75", "apm": "APM", "apl": "APL"}
        result = {"columns": {c: _number(scores[names[c]]) for c in PROTOCOL_COLUMNS["coco"]}}
        if self.unmatched_images:
            result["details"] = {"samples_without_annotation_image": self.unmatched_images}
        return result


def _number(x: Tensor) -> float | None:
    v = float(x)
    return None if math.isnan(v) else round(v, 4)


def _no_ground_truth() -> dict[str, Tensor]:
    return {"gt_image_ids": torch.zeros(0, dtype=torch.long), "gt_keypoints": torch.zeros(0, 17, 3, dtype=torch.float64),
            "gt_areas": torch.zeros(0, dtype=torch.float64), "gt_boxes": torch.zeros(0, 4, dtype=torch.float64)}


def _no_detections() -> tuple[Tensor, Tensor, Tensor]:
    return torch.zeros(0, dtype=torch.long), torch.zeros(0, 17, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
