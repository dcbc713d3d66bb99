"""SPIN-format converters: annotation npz + image root -> WebDataset shards of our sample format.

    python -m cli.convert h36m --npz data/dataset_extras/h36m_train.npz --images /data/h36m --out shards/h36m

One module per job: :mod:`.datasets` (the per-dataset quirk table, with sources), :mod:`.spin_npz`
(reading and validating the npz into per-person records), :mod:`.keypoints` (pixel conventions and
joint index maps), :mod:`.masks` (UP-3D part labels -> ours), :mod:`.crop` (images and crops),
:mod:`.body_gt` (3DPW's ground truth from the gendered body model), :mod:`.fits` (SMPL pseudo ground
truth: SPIN's final fits or EFT's), :mod:`.detections` (BiGraph's 2D joints from OpenPose JSON or COCO
keypoint results), :mod:`.pipeline` (the conversion and its report). The command line is :mod:`cli.convert` (``make convert``).
"""
from datamodules.convert.datasets import DATASET_NAMES, DATASETS, DatasetSpec
from datamodules.convert.pipeline import ConvertSettings, build_sample, convert

__all__ = ["DATASET_NAMES", "DATASETS", "DatasetSpec", "ConvertSettings", "build_sample", "convert"]
