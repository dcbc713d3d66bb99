"""Stand-ins for the licensed body files, in their real formats, made from the bundled open model (no download).

- ``write_uv_processed``: DensePose's ``UV_Processed.mat`` (1-based, column vectors) from a chart mesh, with the
  parts renumbered (``PERM``) and U mirrored, so that whatever is rendered from it can only come from the file.
- ``write_licensed_smpl_folder``: what a user's ``SMPL_DIR`` holds: ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl``, SPIN's
  regressors and mean parameters, GraphCMR's ``mesh_downsampling.npz`` (``python -m cli.export_body``), and a
  ``UV_Processed.mat``. The male and female bodies are the open template scaled about its centroid
  (``GENDER_SCALE``): a different body for the same pose and betas, which is what a gendered model is to the
  protocols.
- ``smplx_mesh``: a folder's body posed by ``smplx`` (not by the suite): the independent reference of tests.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from scipy.io import savemat

PERM = np.array([0] + list(range(24, 0, -1)))   # stand-in part numbering: suite part p -> 25 - p
GENDER_SCALE = {"male": (1.06, 1.09, 1.06), "female": (0.94, 0.92, 0.97)}   # x, y (height), z


def write_uv_processed(path: Path, mesh) -> None:
    """``mesh``: a ``body.iuv_mesh`` chart mesh (vertex_map, faces, face_part, uv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {
        "All_vertices": (mesh.vertex_map + 1)[None].astype(np.float64),
        "All_Faces": (mesh.faces + 1).astype(np.float64),
        "All_FaceIndices": PERM[mesh.face_part][:, None].astype(np.float64),
        "All_U_norm": (1.0 - mesh.uv[:, :1]),
        "All_V_norm": mesh.uv[:, 1:],
    })


def write_licensed_smpl_folder(out: Path) -> Path:
    """Fill ``out`` as a licensed SMPL folder (module docstring); returns ``out``."""
    from body.assets import load_asset_set
    from body.iuv_mesh import load_iuv_mesh
    from cli import export_body

    export_body.main(["--asset-set", "open", "--out", str(out)])
    with open(out / "SMPL_NEUTRAL.pkl", "rb") as fh:
        neutral = pickle.load(fh)
    v = np.asarray(neutral["v_template"], dtype=np.float64)
    centre = v.mean(0)
    for gender, scale in GENDER_SCALE.items():
        gendered = {**neutral, "v_template": (centre + (v - centre) * np.array(scale)).astype(v.dtype)}
        with open(out / f"SMPL_{gender.upper()}.pkl", "wb") as fh:
            pickle.dump(gendered, fh, protocol=2)
    write_uv_processed(out / "UV_Processed.mat", load_iuv_mesh(load_asset_set("open")))
    return out


def smplx_mesh(folder: Path, gender: str, rotmat=None, betas=None, pose=None):
    """(B, 6890, 3) vertices of ``folder``'s ``SMPL_<GENDER>.pkl`` read and posed by smplx: from rotation matrices
    ``rotmat`` (B, 24, 3, 3) or axis-angle ``pose`` (B, 72), with ``betas`` (B, 10)."""
    import smplx
    import torch

    body = smplx.SMPL(model_path=str(folder), gender=gender)
    with torch.no_grad():
        if pose is not None:
            pose = torch.as_tensor(pose, dtype=torch.float32)
            return body(betas=torch.as_tensor(betas, dtype=torch.float32), body_pose=pose[:, 3:],
                        global_orient=pose[:, :3]).vertices
        return body(betas=betas, body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1], pose2rot=False).vertices
