"""``ProtocolMetrics``: one evaluation set's metric collection and table row; validation and ``make eval``
both use it (``MeshRecoveryModule.validation_step``), so they report the same keys and values.

The row's columns are ``metrics.protocols.PROTOCOL_COLUMNS[protocol]`` (see there for the papers'
tables). 3D protocols use the decoder's ground-truth selection (``BodyDecoder.evaluation_targets``: joints
from the sample's 3D joints where it has them, 3DPW's from its gendered ground-truth mesh; PVE against
the stored mesh where there is one, else the body model's) and every mesh the model predicts
(``BodyDecoder.evaluated_meshes``: BiGraph's graph mesh ``np`` and body-model mesh ``p``, with the key
suffixes ``_np`` / ``_p``), plus PyMAF's Table 6 per-iteration errors: M0 the mean-parameter start, M1..MT
the feedback levels (HMR: its IEF iterations). LSP and COCO work in original-image pixels
(``metrics.protocols``). A model that takes 2D joints (BiGraph) also counts the detected joints it was given
and how many of them were missing (confidence 0, replaced by the model's own estimate): the row's
``detections`` entry, logged as ``detections_missing`` when not 0 (with ``missing_allowed``, the set's
``allow_missing_detections`` override). All state, counters included, lives in torchmetrics classes, so a row
accumulated on several ranks is the row of one process (COCO detections are ordered by a rank-independent key in
``metrics.KeypointAP`` and image ids do not depend on the rank).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from torchmetrics import SumMetric

from body.joints import SPIN49_TO_COCO17
from body.render import face_labels_image, vertex_labels_to_face_labels
from lightning_modules.decoding import BodyDecoder
from lightning_modules.prediction import Prediction
from metrics import MPJPE, PAMPJPE, PVE, KeypointAP, PerIterationMPJPE, SegmentationScores
from metrics.protocols import (PROTOCOL_COLUMNS, THREE_D_PROTOCOLS, coco_ground_truth_keypoints, input_box_in_image,
                               keypoints_in_image, lsp6_vertex_labels, lsp_targets, vertices_in_image)
from runtime.errors import UserError

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
    def from_json(cls, path: str, key: str = "annotations") -> "CocoAnnotations":
        """``key``: the config key that named the file (for the one-line errors)."""
        if not os.path.isfile(path):
            raise UserError(f"{key}={path}: no such file (COCO's person_keypoints_val2014.json, "
                            "from https://cocodataset.org/#download, 'Train/Val annotations')")
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise UserError(f"{key}={path}: not a COCO annotation file (needs 'images' and 'annotations')")
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


class ProtocolMetrics(nn.Module):
    """One evaluation set's metric collection and table row (module docstring).

    Args:
        decoder: the model's ``BodyDecoder`` (body model, input size, ground-truth selection).
        protocol: one of ``metrics.protocols.PROTOCOLS``.
        coco: official COCO annotations (COCO protocol only); without them the ground truth comes from
            the samples (keypoints, ``area``, the person box).
        takes_joints_2d: the model reads the batch's detected joints (``bigraph_joints_2d``): count them.
    ``missing_detections_allowed`` (set by the LightningModule from the data config) is recorded in the row.
    """

    def __init__(self, decoder: BodyDecoder, protocol: str, coco: CocoAnnotations | None = None,
                 takes_joints_2d: bool = False):
        super().__init__()
        if protocol not in PROTOCOL_COLUMNS:
            raise UserError(f"unknown protocol {protocol!r}: valid choices are {', '.join(PROTOCOL_COLUMNS)}")
        self.decoder, self.protocol, self.coco = decoder, protocol, coco if protocol == "coco" else None
        self.takes_joints_2d, self.missing_detections_allowed = bool(takes_joints_2d), False
        # Counters sum over ranks like the metrics (torchmetrics' SumMetric).
        self.counts = nn.ModuleDict({name: SumMetric() for name in ("samples", "evaluated", "unmatched_images",
                                                                    "detected_joints", "detected_joints_missing")})
        self.metrics = nn.ModuleDict()
        self.iteration_labels: list[str] = []
        self._face_lsp6: Tensor | None = None

    # ------------------------------------------------------------------------------------------
    def _metric(self, name: str) -> Any:
        """The metric of this name, made on first use (:meth:`_new_metric`)."""
        if name not in self.metrics:
            self.metrics[name] = self._new_metric(name).to(self.counts["samples"].device)
        return self.metrics[name]

    def _new_metric(self, name: str) -> Any:
        if name.endswith("_per_iteration"):
            return PerIterationMPJPE(len(self.iteration_labels), procrustes=name.startswith("pa_"))
        if name.startswith("pa_mpjpe"):
            return PAMPJPE()
        if name.startswith("mpjpe"):
            return MPJPE()
        if name.startswith("pve"):
            return PVE(alignment="none")
        return {"fb": lambda: SegmentationScores(2), "parts": lambda: SegmentationScores(NUM_LSP_CLASSES),
                "coco": KeypointAP}[name]()

    def _count(self, name: str, n: int) -> None:
        self.counts[name].update(torch.tensor(float(n), dtype=torch.float64, device=self.counts[name].device))

    @torch.no_grad()
    def update(self, batch: Mapping[str, Any], prediction: Prediction) -> None:
        """Add one batch and the model's ``Prediction`` on it."""
        self._count("samples", int(batch["img"].shape[0]))
        if self.takes_joints_2d:
            scores = batch["bigraph_joints_2d"][..., 2]
            self._count("detected_joints", scores.numel())
            self._count("detected_joints_missing", int((scores <= 0).sum()))
        if self.protocol in THREE_D_PROTOCOLS:
            self._update_3d(batch, prediction)
        elif self.protocol == "lsp":
            self._update_lsp(batch, prediction)
        else:
            self._update_coco(batch, prediction)

    def _update_3d(self, batch: Mapping[str, Any], prediction: Prediction) -> None:
        decoder = self.decoder
        targets = decoder.evaluation_targets(batch, joints_from_mesh=self.protocol == "3dpw")
        if targets is None:
            return
        index, gt_joints, smpl_index = targets["index"], targets["joints"], targets["smpl_index"]
        self._count("evaluated", int(index.numel()))
        for suffix, vertices in decoder.evaluated_meshes(prediction).items():
            joints = decoder.protocol_joints(vertices)[index]
            self._metric("mpjpe" + suffix).update(joints, gt_joints)
            self._metric("pa_mpjpe" + suffix).update(joints, gt_joints)
            if smpl_index.numel():
                self._metric("pve" + suffix).update(vertices[smpl_index], targets["vertices"])
        # PyMAF's Table 6: M0 (the mean-parameter start, where the network has one), M1 .. M_T the levels.
        first = 0 if prediction.initial is not None else 1
        estimates = ([prediction.initial] if first == 0 else []) + list(prediction.iterations)
        if len(estimates) > 1:
            self.iteration_labels = [f"M{first + t}" for t in range(len(estimates))]
            joints = [decoder.protocol_joints(decoder.decode(e)["vertices"])[index] for e in estimates]
            self._metric("mpjpe_per_iteration").update(joints, gt_joints)
            self._metric("pa_mpjpe_per_iteration").update(joints, gt_joints)

    def _update_lsp(self, batch: Mapping[str, Any], prediction: Prediction) -> None:
        n = int(batch["img"].shape[0])
        masks = batch.get("mask_original") or [None] * n
        silhouettes = batch.get("silhouette_original") or [None] * n
        if all(m is None and s is None for m, s in zip(masks, silhouettes)):
            return
        decoder, body = self.decoder, self.decoder.body
        pred = decoder.final(prediction)
        screen = vertices_in_image(pred["vertices"], pred["cam"], batch["input_to_image"].to(pred["cam"]),
                                   decoder.img_res)
        if self._face_lsp6 is None or self._face_lsp6.device != screen.device:
            self._face_lsp6 = vertex_labels_to_face_labels(lsp6_vertex_labels(body.vertex_part24),
                                                           body.faces).to(screen.device)
        fb, parts = self._metric("fb"), self._metric("parts")
        evaluated = 0
        for b, (gt_parts, gt_silhouette) in enumerate(zip(masks, silhouettes)):
            fb_gt, parts_gt = lsp_targets(*(None if m is None else m.to(screen.device).long()
                                            for m in (gt_parts, gt_silhouette)))
            if fb_gt is None:
                continue
            labels = face_labels_image(screen[b], body.faces.to(screen.device), self._face_lsp6,
                                       fb_gt.shape[0], fb_gt.shape[1])
            fb.update((labels > 0).long()[None], fb_gt[None])
            if parts_gt is not None:
                parts.update(labels[None], parts_gt[None])
            evaluated += 1
        self._count("evaluated", evaluated)

    def _image_id(self, name: str) -> int | None:
        if self.coco is not None:
            return self.coco.image_ids.get(os.path.basename(name))
        return stable_image_id(name)

    def _update_coco(self, batch: Mapping[str, Any], prediction: Prediction) -> None:
        decoder = self.decoder
        pred = decoder.final(prediction)
        to_image = batch["input_to_image"].to(pred["cam"])
        names = [i or k for i, k in zip(batch.get("image_id", batch["key"]), batch["key"])]
        ids = [self._image_id(n) for n in names]
        keep = [b for b, i in enumerate(ids) if i is not None]
        self._count("unmatched_images", len(ids) - len(keep))
        if not keep:
            return
        keep_t = torch.tensor(keep, device=to_image.device)
        det = keypoints_in_image(pred["keypoints_2d"][:, SPIN49_TO_COCO17].double(), to_image.double(),
                                 decoder.img_res)[keep_t]
        det_ids = torch.tensor([ids[b] for b in keep], dtype=torch.long)
        ap = self._metric("coco")
        self._count("evaluated", len(keep))
        if self.coco is not None:   # ground truth added once per image, in row()
            ap.update(det_ids, det, torch.ones(len(keep), dtype=torch.float64), **_no_ground_truth())
            return
        if not bool(batch["has_area"][keep_t].all()):
            raise UserError("COCO protocol: samples without 'area' (the person's segmentation area); set "
                            "data.eval.<set>.annotations=<person_keypoints_val2014.json> to read COCO's own ground truth")
        gt = coco_ground_truth_keypoints(batch["keypoints_2d"][:, SPIN49_TO_COCO17].to(to_image), to_image,
                                         decoder.img_res)[keep_t]
        ap.update(det_ids, det, torch.ones(len(keep), dtype=torch.float64), gt_image_ids=det_ids,
                  gt_keypoints=gt, gt_areas=batch["area"][keep_t].double(),
                  gt_boxes=input_box_in_image(to_image.double(), decoder.img_res)[keep_t])

    # ------------------------------------------------------------------------------------------
    def row(self) -> dict[str, Any]:
        """The table row, over all ranks (under DDP a collective call: every rank calls it and gets the row):
        ``samples``, ``evaluated``, ``columns`` (the protocol's, mm / [0, 1]; None where nothing was
        evaluated), plus ``per_iteration`` (3D, several estimates: metric -> {M0: .., M1: ..}) and ``details``.

        Every rank computes the same metrics in the same order (those any rank made), so that their
        synchronisation never waits for a rank without them."""
        with warnings.catch_warnings():   # a rank without updates computes too (its empty states sync)
            warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
            counts = {name: int(round(float(metric.compute()))) for name, metric in self.counts.items()}
            self._make_every_ranks_metrics()
            values = {name: self.metrics[name].compute() if counts["evaluated"] else None
                      for name in sorted(self.metrics) if name != "coco"}
            if self.protocol in THREE_D_PROTOCOLS:
                row = self._row_3d(values)
            elif self.protocol == "lsp":
                row = self._row_lsp(values)
            else:
                row = self._row_coco(counts["evaluated"])
                if counts["unmatched_images"]:
                    row["details"] = {"samples_without_annotation_image": counts["unmatched_images"]}
        if self.takes_joints_2d:
            row["detections"] = {"joints": counts["detected_joints"], "missing": counts["detected_joints_missing"],
                                 "missing_allowed": self.missing_detections_allowed}
        return {"samples": counts["samples"], "evaluated": counts["evaluated"], **row}

    def reset(self) -> None:
        for metric in list(self.counts.values()) + list(self.metrics.values()):
            metric.reset()

    def _make_every_ranks_metrics(self) -> None:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (sorted(self.metrics), self.iteration_labels))
        self.iteration_labels = max((labels for _, labels in gathered), key=len)
        for name in sorted({n for names, _ in gathered for n in names}):
            self._metric(name)

    def _suffixes(self) -> list[str]:
        return [s for s in ("", "_np", "_p") if "mpjpe" + s in self.metrics] or [""]

    def _row_3d(self, values: Mapping[str, Tensor | None]) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for column in PROTOCOL_COLUMNS[self.protocol]:
            metric = "pve" if column in ("pve", "mpve") else column
            for suffix in self._suffixes():
                value = values.get(metric + suffix)
                columns[column + suffix] = None if value is None else _number(value)
        result: dict[str, Any] = {"columns": columns}
        per_iteration = {}
        for name in ("mpjpe_per_iteration", "pa_mpjpe_per_iteration"):
            if values.get(name) is not None:
                per_iteration[name.removesuffix("_per_iteration")] = {
                    label: _number(v) for label, v in zip(self.iteration_labels, values[name])}
        if per_iteration:
            result["per_iteration"] = per_iteration
        return result

    def _row_lsp(self, values: Mapping[str, Any]) -> dict[str, Any]:
        if values.get("fb") is None:
            return {"columns": dict.fromkeys(PROTOCOL_COLUMNS["lsp"])}
        fb, parts = values["fb"], values["parts"]
        return {"columns": {"fb_acc": _number(fb["accuracy"]), "fb_f1": _number(fb["mean_f1"]),
                            "parts_acc": _number(parts["accuracy_ignored_as_background"]),
                            "parts_f1": _number(parts["mean_f1"])},
                "details": {"parts_acc_labelled_pixels": _number(parts["accuracy"]),
                            "parts_f1_per_class": [_number(v) for v in parts["per_class_f1"]],
                            "fb_f1_per_class": [_number(v) for v in fb["per_class_f1"]]}}

    def _row_coco(self, evaluated: int) -> dict[str, Any]:
        if not evaluated:
            return {"columns": dict.fromkeys(PROTOCOL_COLUMNS["coco"])}
        ap = self._metric("coco")
        if self.coco is not None:
            # Each image's official ground truth once: the images every rank saw, added on rank 0 only (the
            # metric's states are concatenated over ranks when it computes). So a row is asked for once,
            # then the metrics are reset (validation's epoch end does both).
            seen = _all_ranks_image_ids(ap.det_image_ids)
            if _rank() == 0:
                ap.update(*_no_detections(), **self.coco.ground_truth(seen))
        scores = ap.compute()
        names = {"ap": "AP", "ap50": "AP50", "ap75": "AP75", "apm": "APM", "apl": "APL"}
        return {"columns": {c: _number(scores[names[c]]) for c in PROTOCOL_COLUMNS["coco"]}}


def metric_values(row: Mapping[str, Any]) -> dict[str, float]:
    """A row's numbers under the keys validation logs them by (``val/<set>/<key>``): its columns, the
    per-iteration errors as ``<metric>_<M label>`` (``mpjpe_M0`` ..) and, for a model reading detected joints
    when some were missing, ``detections_missing`` (the joints it was given with confidence 0; the row's
    ``detections`` always holds the counts); entries without a value are left out."""
    values = {k: v for k, v in row["columns"].items() if v is not None}
    for metric, per_label in row.get("per_iteration", {}).items():
        values.update({f"{metric}_{label}": v for label, v in per_label.items() if v is not None})
    if row.get("detections", {}).get("missing"):
        values["detections_missing"] = float(row["detections"]["missing"])
    return values


def primary_metric(protocol: str, mesh_suffix: str = "") -> tuple[str, str]:
    """The key (as :func:`metric_values` names it) and mode best checkpoints are chosen by: PA-MPJPE (min)
    for the 3D protocols (MPVE for UP-3D), parts F1 for LSP, AP for COCO (max)."""
    if protocol in THREE_D_PROTOCOLS:
        return ("mpve" if protocol == "up3d" else "pa_mpjpe") + mesh_suffix, "min"
    return ("parts_f1", "max") if protocol == "lsp" else ("ap", "max")


def stable_image_id(name: str) -> int:
    """A 48-bit id of an image name (exact in float64), the same on every rank (COCO protocol without official annotations)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:6], "big")


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _all_ranks_image_ids(parts: list[Tensor]) -> list[int]:
    local = sorted({int(i) for part in parts for i in part.tolist()})
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return sorted({i for ids in gathered for i in ids})


def _number(x: Tensor) -> float | None:
    v = float(x)
    return None if math.isnan(v) else round(v, 4)


def _no_ground_truth() -> dict[str, Tensor]:
    return {"gt_image_ids": torch.zeros(0, dtype=torch.long), "gt_keypoints": torch.zeros(0, 17, 3, dtype=torch.float64),
            "gt_areas": torch.zeros(0, dtype=torch.float64), "gt_boxes": torch.zeros(0, 4, dtype=torch.float64)}


def _no_detections() -> tuple[Tensor, Tensor, Tensor]:
    return torch.zeros(0, dtype=torch.long), torch.zeros(0, 17, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
