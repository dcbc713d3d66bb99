"""Evaluation metrics: torchmetrics classes (DDP-synced) over the pure functions in ``metrics.functional``.

3D inputs are metres, 3D results millimetres. See ``metrics.functional`` for the protocols.
"""
from metrics.classes import MPJPE, PAMPJPE, PVE, KeypointAP, PerIterationMPJPE, SegmentationScores

__all__ = ["MPJPE", "PAMPJPE", "PVE", "KeypointAP", "PerIterationMPJPE", "SegmentationScores"]
