"""Functional cores of the evaluation metrics: pure, batched, device-agnostic torch functions.

Units: 3D inputs are in METRES, 3D errors are returned in MILLIMETRES (the tables' unit).
The ``Metric`` classes in ``metrics.classes`` only accumulate what these functions return.

Protocols (README, "Evaluation"), with the facts they follow from the public SPIN / PyMAF ``eval.py``:

- MPJPE / PA-MPJPE (H36M P1/P2, 3DPW): 17 joints from the H36M regressor, the 14 LSP joints taken
  with ``H36M_TO_LSP14``, minus the root. The published code subtracts the regressor's *pelvis*
  (H36M joint 0) from both prediction and ground truth: ``protocol_joints(j17)`` does this by
  default; ``root="hips"`` centres on the LSP hip midpoint instead. PA = per-sample similarity
  Procrustes (``body.procrustes``; scale, proper rotation, translation).
- PVE (3DPW): mean vertex distance between the body model's vertices without camera translation,
  no further alignment (``alignment="none"``, the published code); ``"pelvis"`` and ``"procrustes"``
  are the other protocols in use.
- LSP segmentation (UP-3D annotations): confusion matrix over the pixels whose label is not 255;
  accuracy and per-class F1 = 2TP / (2TP + FP + FN), mean F1 over *all* classes, background included.
- COCO keypoints: ``keypoint_ap`` reproduces ``pycocotools.COCOeval(iouType="keypoints")``.
"""
from metrics.functional.errors3d import (M_TO_MM, PVE_ALIGNMENTS, lsp14_from_h36m17, mpjpe, pa_mpjpe,
                                        protocol_joints, pve, root_of)
from metrics.functional.keypoint_ap import (AREA_RANGES, keypoint_ap, keypoint_det_areas, oks, oks_thresholds,
                                            recall_thresholds)
from metrics.functional.segmentation import ignored_prediction_counts, segmentation_confusion, segmentation_scores

__all__ = ["M_TO_MM", "PVE_ALIGNMENTS", "lsp14_from_h36m17", "mpjpe", "pa_mpjpe", "protocol_joints", "pve", "root_of",
           "AREA_RANGES", "keypoint_ap", "keypoint_det_areas", "oks", "oks_thresholds", "recall_thresholds",
           "ignored_prediction_counts", "segmentation_confusion", "segmentation_scores"]
