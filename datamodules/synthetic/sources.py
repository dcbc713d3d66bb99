"""What each synthetic source annotates: the tables that make a rendered person look like a real data set.

Every rendered person has full ground truth; a :class:`SourceSpec` says which part of it the sample
keeps, mirroring the SPIN-format files of the real data set (fields it lacks are stored as zeros with
their ``has_*`` flag False, so nothing leaks as supervision):

========  =====  ======  =====  ====  ================================================================
source    3D     SMPL    mask   vert  2D keypoints (slots of the 24 ground-truth joints, SPIN-49 25..48)
========  =====  ======  =====  ====  ================================================================
h36m      yes    yes     no     no    the 17 Human3.6M joints (SPIN's h36m ``part``/``S``: LSP 0-12,
                                      pelvis 14, spine 16, jaw 17, head 18; no head top 13)
up3d      no     yes     no     no    the 14 LSP joints (UP-3D's annotations are LSP's)
lsp       no     no      yes    no    the 14 LSP joints; 6-part mask (``body.parts`` LSP-6 labels)
coco      no     no      no     no    COCO's 17 (limbs 0-11, face 19-23); ~10 % of them unlabelled
mpii      no     no      no     no    the 16 MPII joints (LSP 0-13, pelvis 14, thorax 15)
========  =====  ======  =====  ====  ================================================================

OpenPose slots (0..24 of the 49) are zero for every training source, as in SPIN's ground-truth files.
``joints_3d`` of h36m has confidence 1 on its 17 slots only. Evaluation sets (``3dpw``, ``h36m``,
``up3d``, ``lsp``, ``coco``, the papers' protocols) keep everything: 3D (all 24 joints), SMPL, vertices,
the 6-part mask and all 49 keypoints. For every source, a keypoint whose projection falls outside the
crop has confidence 0, and every sample carries BiGraph's detected joints, the camera, center/scale,
and ``image_id`` = its key (one person per synthetic image).

Evaluation fields at the original image's resolution (the protocols score there): every evaluation set
renders its person once more with the original camera (``focal``, ``principal``, ``image_size``; same
rasteriser, LSP-6 labels and pixel convention as the crop, see ``renderer.render_original_labels``) and
stores ``area`` = the rendered person's pixel count inside the original image (COCO's OKS scale). Only
the sets with ``original_mask`` (the ``lsp`` evaluation set, for the LSP segmentation protocol) also store
that label map as ``mask_original`` and its foreground as ``silhouette_original``:

==========  ======  =============  ================================================================
set         area    mask_original  what scores it
==========  ======  =============  ================================================================
eval lsp    yes     yes            LSP-6 parts / foreground (silhouette) at original resolution
other eval  yes     no             (area: COCO keypoint AP's OKS scale; unused elsewhere)
training    no      no             -
==========  ======  =============  ================================================================

The remaining columns shape the pictures (a little of each data set's flavour): ``library`` the share
of poses from the hand-written library (the rest are random within the joint limits), ``spread`` how far
random poses go from the relaxed pose (0..1), ``truncation`` the share of crops that cut the person,
``backgrounds`` the procedural background kinds drawn from (see :mod:`.backgrounds`).
"""
from __future__ import annotations

from dataclasses import dataclass

ALL_J24: tuple[int, ...] = tuple(range(24))
LSP14_SLOTS: tuple[int, ...] = tuple(range(14))
H36M17_SLOTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 17, 18)
MPII16_SLOTS: tuple[int, ...] = tuple(range(16))
COCO17_SLOTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 19, 20, 21, 22, 23)

ALL_BACKGROUNDS: tuple[str, ...] = ("room", "outdoor", "noise", "gradient", "pattern", "blobs")


@dataclass(frozen=True)
class SourceSpec:
    """One synthetic source: its annotations (what a sample keeps) and its scene flavour.

    Attributes:
        name: the data-set name written to ``Sample.source``.
        split: ``"train"`` or ``"eval"``.
        count: samples at ``--size 1``.
        has_3d, has_smpl, has_mask: the sample's flags (and whether the data behind them is kept).
        vertices: store the camera-frame mesh (evaluation sets only: 83 KB a sample).
        slots_2d: ground-truth slots (0..23 of SPIN's 24) whose 2D position is annotated.
        openpose_2d: the 25 OpenPose slots are annotated too (evaluation sets).
        slots_3d: slots of ``joints_3d`` with confidence 1 when ``has_3d``.
        drop_rate: share of the annotated 2D joints left unlabelled (confidence 0), drawn per joint.
        library, spread, truncation, backgrounds: scene flavour (module docstring).
        original_mask: store ``mask_original``, the LSP-6 labels rendered at the original resolution
            (the ``lsp`` evaluation set only; module docstring).
        h36m_joints: the 17 Human3.6M slots of the 24 ground-truth joints (2D and 3D) hold the body model's
            H36M-regressed joints (``BodyModel.h36m17``), what motion capture puts in a real H36M file's
            ``S`` and ``part``; the H36M protocol scores ``S`` with that regressor's joints of the prediction
            (the ``h36m`` evaluation set only; else they are the body model's SPIN keypoints).
    """

    name: str
    split: str
    count: int
    has_3d: bool
    has_smpl: bool
    has_mask: bool
    vertices: bool
    slots_2d: tuple[int, ...]
    openpose_2d: bool = False
    slots_3d: tuple[int, ...] = ()
    drop_rate: float = 0.0
    library: float = 0.5
    spread: float = 0.6
    truncation: float = 0.1
    backgrounds: tuple[str, ...] = ALL_BACKGROUNDS
    original_mask: bool = False
    h36m_joints: bool = False

    @property
    def renders_original(self) -> bool:
        """The person is also rendered at the original resolution (``area``; ``mask_original``)."""
        return self.split == "eval" or self.original_mask


TRAIN_SOURCES: dict[str, SourceSpec] = {s.name: s for s in [
    SourceSpec("h36m", "train", 1000, has_3d=True, has_smpl=True, has_mask=False, vertices=False,
               slots_2d=H36M17_SLOTS, slots_3d=H36M17_SLOTS, library=0.7, spread=0.45, truncation=0.03,
               backgrounds=("room",)),
    SourceSpec("up3d", "train", 1000, has_3d=False, has_smpl=True, has_mask=False, vertices=False,
               slots_2d=LSP14_SLOTS, library=0.5, spread=0.6, truncation=0.05),
    SourceSpec("lsp", "train", 1000, has_3d=False, has_smpl=False, has_mask=True, vertices=False,
               slots_2d=LSP14_SLOTS, library=0.35, spread=0.8, truncation=0.05,
               backgrounds=("outdoor", "noise", "blobs", "gradient")),
    SourceSpec("coco", "train", 1000, has_3d=False, has_smpl=False, has_mask=False, vertices=False,
               slots_2d=COCO17_SLOTS, drop_rate=0.1, library=0.5, spread=0.6, truncation=0.2),
    SourceSpec("mpii", "train", 1000, has_3d=False, has_smpl=False, has_mask=False, vertices=False,
               slots_2d=MPII16_SLOTS, library=0.5, spread=0.65, truncation=0.1),
]}


def _eval(name: str, **flavour) -> SourceSpec:
    return SourceSpec(name, "eval", 100, has_3d=True, has_smpl=True, has_mask=True, vertices=True,
                      slots_2d=ALL_J24, openpose_2d=True, slots_3d=ALL_J24, **flavour)


EVAL_SETS: dict[str, SourceSpec] = {s.name: s for s in [
    _eval("3dpw", library=0.7, spread=0.45, truncation=0.05, backgrounds=("outdoor", "noise", "blobs", "room")),
    _eval("h36m", library=0.7, spread=0.45, truncation=0.03, backgrounds=("room",), h36m_joints=True),
    _eval("up3d", library=0.5, spread=0.6, truncation=0.05),
    _eval("lsp", library=0.35, spread=0.8, truncation=0.05, backgrounds=("outdoor", "noise", "blobs", "gradient"),
          original_mask=True),
    _eval("coco", library=0.5, spread=0.6, truncation=0.2),
]}

SPLITS: dict[str, dict[str, SourceSpec]] = {"train": TRAIN_SOURCES, "eval": EVAL_SETS}


def scaled_count(spec: SourceSpec, size: float) -> int:
    """Samples of a source for a ``--size`` multiplier: round(count * size), at least 1."""
    return max(1, int(round(spec.count * size)))
