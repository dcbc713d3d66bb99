"""The per-dataset quirk table: what each SPIN-format npz holds and how it was made.

One frozen :class:`DatasetSpec` per dataset. The facts come from the public preprocessing code that
wrote these files (SPIN ``datasets/preprocess/*.py``, GraphCMR ``datasets/preprocess/up_3d.py``) and
the code that reads them (SPIN / PyMAF ``datasets/base_dataset.py``, ``eval.py``); each quirk line
names its source. Only ``required`` and ``vertices_from_body_model`` change what the converter does;
the rest is for messages and documentation (``quirks`` is copied into every ``convert_report.json``).

Conventions shared by every dataset (SPIN ``datasets/base_dataset.py``):

- ``center`` (x, y) and ``scale`` in original pixels, box side = 200 * scale; most files enlarge the
  tight keypoint box by 1.2 (``scaleFactor``), H36M uses 0.9 of its mask box, MPII its own scale.
- ``part`` is the 24-joint ground-truth layout (``body.joints.SPIN24_GT_JOINT_NAMES``): each dataset
  fills only its own slots, the rest are zeros with visibility 0.
- ``openpose`` holds the OpenPose BODY_25 detection SPIN matched to the person
  (``read_openpose.py``: the closest detection with all 12 limb joints; zeros when none matched).
- ``S`` is 3D joints in metres, root-relative, camera axes, with a visibility column.
- ``pose`` / ``shape``: SMPL axis-angle (global orientation first) in the camera frame and 10 betas;
  ``has_smpl`` defaults to 1 wherever ``pose`` exists (SPIN and PyMAF ``base_dataset.py``).
- ``gender``: 'm' / 'f' (3DPW); SPIN maps 'm' -> 0 and anything else -> 1 (female).
"""
from __future__ import annotations

from dataclasses import dataclass, field

DATASET_NAMES: tuple[str, ...] = ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco", "up3d", "3dpw")
SPLITS: tuple[str, ...] = ("train", "test")
BASE_KEYS: tuple[str, ...] = ("imgname", "center", "scale")
ALL_KEYS: tuple[str, ...] = BASE_KEYS + ("part", "openpose", "S", "pose", "shape", "has_smpl", "gender",
                                         "maskname", "partname")

# H36M-17 (SPIN's J_regressor_h36m order, ``body.joints.H36M17_JOINT_NAMES``) -> slots of the 24-joint
# layout: SPIN's ``global_idx`` in preprocess/h36m.py and mpi_inf_3dhp.py (``joints_idx``). The pelvis
# goes to slot 14 ('pelvis_mpii'), thorax to 12 ('neck'), neck/nose to 17, head top to 18.
H36M17_TO_J24_SLOTS: list[int] = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's SPIN-format file and its quirks.

    Attributes:
        name: CLI name and the samples' ``source``.
        title: human-readable name.
        spin_files: the npz file names SPIN / PyMAF / GraphCMR use, per split (for messages).
        required: npz keys a file of this dataset must hold, per split (on top of imgname/center/scale).
        optional: keys used when present.
        vertices_from_body_model: ground-truth vertices and 3D joints come from the (gendered) body model
            driven by ``pose`` / ``shape`` (3DPW has no ``S``).
        quirks: documentation lines ("fact [source]").
    """

    name: str
    title: str
    spin_files: dict[str, str]
    required: dict[str, tuple[str, ...]]
    optional: tuple[str, ...]
    vertices_from_body_model: bool = False
    quirks: tuple[str, ...] = field(default_factory=tuple)

    def required_keys(self, split: str) -> tuple[str, ...]:
        """Every key the npz must hold for ``split``: imgname, center, scale + the dataset's own."""
        return BASE_KEYS + self.required.get(split, ())


_3D_SLOTS = ("S: 17 joints placed at the 24-joint slots [14,3,4,5,2,1,0,16,12,17,18,9,10,11,8,7,6] "
             "(H36M-17 order -> SPIN's global_idx), visibility 1, others 0 [SPIN preprocess]")

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec(
        "h36m", "Human3.6M",
        {"train": "h36m_train.npz (MoSh fits, not public) / h36m_mosh_train.npz (PyMAF)",
         "test": "h36m_valid_protocol1.npz / h36m_valid_protocol2.npz"},
        required={"train": ("part", "S"), "test": ("S",)},
        optional=("openpose", "pose", "shape", "has_smpl"),
        quirks=(
            "S: metres (D3_Positions_mono / 1000), camera axes, ROOT-RELATIVE: the pelvis is subtracted "
            "(S17 -= S17[0]) and sits at slot 14 as (0, 0, 0) with visibility 1 [SPIN preprocess/h36m.py]",
            _3D_SLOTS,
            "part: the 17 H36M 2D joints (D2_Positions) at the same slots, visibility 1 [SPIN preprocess/h36m_train.py]",
            "box: ground-truth bounding-box mask, scale = 0.9 * max side / 200 (tight) [SPIN preprocess/h36m.py]",
            "frames: every 5th; protocol 2 keeps camera 60457274 only [SPIN preprocess/h36m.py]",
            "test files have no part and no openpose: keypoints_2d is zeros with confidence 0, and so is "
            "bigraph_joints_2d unless --detections gives a detector's output (BiGraph refuses a set without any)",
            "pose/shape (when present) are MoSh fits with the global orientation in the camera frame",
        )),
    DatasetSpec(
        "mpi_inf_3dhp", "MPI-INF-3DHP",
        {"train": "mpi_inf_3dhp_train.npz", "test": "mpi_inf_3dhp_test.npz"},
        required={"train": ("part", "S"), "test": ("part", "S")},
        optional=("openpose", "pose", "shape", "has_smpl"),
        quirks=(
            "S: metres (annot3 / 1000), root-relative (minus the pelvis); train uses camera-frame annot3, "
            "test uses univ_annot3 (the height-normalised 'universal' skeleton) [SPIN preprocess/mpi_inf_3dhp.py]",
            _3D_SLOTS,
            "train: every 10th frame with all 17 joints inside the 2048 x 2048 frame; test: valid_frame only "
            "[SPIN preprocess/mpi_inf_3dhp.py]",
            "train pose/shape/has_smpl come from SPIN's multi-view static fits (mpi-inf-3dhp_mview_fits.npz); "
            "has_smpl 0 marks a rejected fit [SPIN preprocess/mpi_inf_3dhp.py]; --fits final_fits/mpi-inf-3dhp.npz "
            "supervises the rows without (PyMAF replaces these fits by the final ones; we keep has_smpl rows' own)",
            "box: 1.2 x the 2D keypoint box [SPIN preprocess/mpi_inf_3dhp.py]",
        )),
    DatasetSpec(
        "lsp", "Leeds Sports Pose",
        {"train": "lsp_dataset_original_train.npz (SPIN's 'lsp-orig': LSP original, im0001-im1000)",
         "test": "lsp_dataset_test.npz (SPIN's 'lsp': lsp_dataset, im1001-im2000)"},
        required={"train": ("part",), "test": ("part", "maskname", "partname")},
        optional=("openpose",),
        quirks=(
            "part: the 14 LSP joints (joints.mat) at slots 0-13, every visibility set to 1 (the file's own "
            "visibility is ignored) [SPIN preprocess/lsp_dataset*.py]",
            "test maskname/partname are UP-S1h annotations 'data/lsp/im%04d_segmentation.png' / "
            "'_part_segmentation.png', resolved against the upi-s1h folder, not the LSP images [SPIN eval.py: "
            "annot_path = DATASET_FOLDERS['upi-s1h']]: pass --masks",
            "part PNG = label image read as grayscale: 0 background, 1 head, 2 torso, 3 right arm, 4 left arm, "
            "5 right leg, 6 left leg, 255 ignore [SPIN eval.py compares == c for c in 0..6; order from UP "
            "up_tools/model.py six_region_groups; evaluate_segmentation.py --as_nolr merges 4->3, 6->5]",
            "silhouette PNG: foreground = value > 0 [SPIN eval.py: cv2.imread(maskname, 0) > 0]; a test split "
            "keeps it apart from the parts (silhouette_original: foreground/background is scored on it, the six "
            "parts on partname's mask_original) [SPIN / PyMAF eval.py]",
            "train: no SMPL; --fits final_fits/lsp-orig.npz (SPIN's final fits) supervises where valid_fit "
            "[PyMAF a5feca1 core/fits_dict.py]",
            "box: 1.2 x the keypoint box [SPIN preprocess/lsp_dataset*.py]",
        )),
    DatasetSpec(
        "lspet", "LSP Extended (HR-LSPET)",
        {"train": "hr-lspet_train.npz"},
        required={"train": ("part",), "test": ("part",)},
        optional=("openpose", "pose", "shape", "has_smpl"),
        quirks=(
            "imgname is the bare PNG file name (relative to the hr-lspet folder) [SPIN preprocess/hr_lspet.py]",
            "part: the 14 LSP joints at slots 0-13, every visibility set to 1 [SPIN preprocess/hr_lspet.py]",
            "2D only: has_smpl is False unless fits are given (--fits final_fits/hr-lspet.npz: SPIN's final "
            "fits, supervised where valid_fit [PyMAF a5feca1 core/fits_dict.py])",
        )),
    DatasetSpec(
        "mpii", "MPII Human Pose",
        {"train": "mpii_train.npz"},
        required={"train": ("part",), "test": ("part",)},
        optional=("openpose", "pose", "shape", "has_smpl"),
        quirks=(
            "part: 16 MPII joints at slots [0,1,2,3,4,5,14,15,12,13,6,7,8,9,10,11] (pelvis -> 14, thorax -> 15, "
            "upper neck -> 12, head top -> 13), visibility 1; only people with all 16 annotated "
            "[SPIN preprocess/mpii.py]",
            "center/scale are MPII's own (scale = person height / 200), not a 1.2 x keypoint box "
            "[SPIN preprocess/mpii.py]",
            "OpenPose matching threshold 30 px [SPIN preprocess/read_openpose.py]",
            "2D only: has_smpl is False unless fits are given (--fits final_fits/mpii.npz) [PyMAF a5feca1 "
            "core/fits_dict.py]",
        )),
    DatasetSpec(
        "coco", "COCO 2014",
        {"train": "coco_2014_train.npz", "test": "coco_2014_val.npz (PyMAF)"},
        required={"train": ("part",), "test": ("part",)},
        optional=("openpose", "pose", "shape", "has_smpl"),
        quirks=(
            "part: COCO-17 at slots [19,20,21,22,23,9,8,10,7,11,6,3,2,4,1,5,0]; COCO hips go to the LSP hip "
            "slots although they sit elsewhere anatomically [SPIN preprocess/coco.py]",
            "visibility: COCO v > 0 -> 1 (occluded-but-labelled counts as visible); only people with all 12 "
            "limb joints labelled [SPIN preprocess/coco.py]",
            "box: COCO bbox, scale = 1.2 * max(w, h) / 200 [SPIN preprocess/coco.py]",
            "2D only: has_smpl is False unless fits are given (--fits final_fits/coco.npz, or EFT's JSON) "
            "[PyMAF a5feca1 core/fits_dict.py]",
        )),
    DatasetSpec(
        "up3d", "UP-3D",
        {"train": "up_3d_trainval.npz (GraphCMR)", "test": "up_3d_lsp_test.npz (GraphCMR)"},
        required={"train": ("part", "pose", "shape"), "test": ("part", "pose", "shape")},
        optional=("openpose", "has_smpl", "maskname", "partname"),
        quirks=(
            "imgname '%05d_image.png'; part: 14 LSP joints from '%05d_joints.npy' with UP's own visibility "
            "(0/1) [GraphCMR preprocess/up_3d.py]",
            "pose/shape: UP-3D's SMPLify fits ('_body.pkl'), camera-frame global orientation; has_smpl "
            "defaults to 1 [GraphCMR preprocess/up_3d.py, base_dataset.py]",
            "box: 1.2 x the box of the rendered fit's non-white pixels ('_render_light.png') "
            "[GraphCMR preprocess/up_3d.py]",
            "the lsp_test split is UP-3D's subset of LSP test images (data/namesUPlsp.txt) [GraphCMR]",
        )),
    DatasetSpec(
        "3dpw", "3D Poses in the Wild",
        {"train": "3dpw_train.npz", "test": "3dpw_test.npz"},
        required={"train": ("pose", "shape"), "test": ("pose", "shape")},
        optional=("gender", "part", "openpose", "has_smpl"),
        vertices_from_body_model=True,
        quirks=(
            "no S: ground-truth vertices and 3D joints come from the GENDERED body model driven by pose/shape "
            "[SPIN/PyMAF eval.py: smpl_male / smpl_female by gender, J_regressor_h36m on the vertices]",
            "pose: the global orientation is rotated into the camera frame with cam_poses "
            "[SPIN preprocess/pw3d.py]; shape: the person's first 10 betas",
            "gender 'm' / 'f' per person [SPIN preprocess/pw3d.py]",
            "only frames with campose_valid; box: 1.2 x the box of the visible 2D pose; SPIN's file has no "
            "part, so keypoints_2d / bigraph_joints_2d are zeros there [SPIN preprocess/pw3d.py]",
            "vertices: camera axes, NO translation (3DPW's trans is dropped): origin = the body model's origin "
            "(the mesh as SMPL returns it for transl = 0, not pelvis-centred), as SPIN/PyMAF compare PVE",
            "joints_3d: H36M-17 regressed from those vertices, minus their pelvis, at the H36M slots of the "
            "24-joint layout (so MPJPE reads them like H36M's S)",
        )),
]}

