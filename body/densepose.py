"""DensePose's surface charts of SMPL (``UV_Processed.mat``, licensed with the DensePose data), read as arrays.

The file (DensePose's ``UV_data``; PyMAF's ``utils/densepose_methods.py`` reads it) describes SMPL's surface cut
into 24 parts, each flattened to a chart, with the vertices on chart boundaries duplicated per chart:
    All_vertices    (1, V')  1-based SMPL vertex of each DensePose vertex (V' = 7,829 for SMPL)
    All_Faces       (F', 3)  1-based DensePose vertices of each face (F' = 13,774)
    All_FaceIndices (F', 1)  surface part 1..24 of each face
    All_U_norm, All_V_norm (V', 1)  chart coordinates in [0, 1]
DensePose's parts: 1, 2 torso; 3 right hand; 4 left hand; 5 left foot; 6 right foot; 7, 9 right upper leg;
8, 10 left upper leg; 11, 13 right lower leg; 12, 14 left lower leg; 15, 17 left upper arm; 16, 18 right
upper arm; 19, 21 left lower arm; 20, 22 right lower arm; 23, 24 head. ``DENSEPOSE_COARSE15`` groups them
into DensePose's 14 coarse parts + background as PyMAF's ``Index2mask`` does (``utils/iuvmap.py``).

The suite looks for the file beside the licensed SMPL files (``body.smpl_dir`` / ``$SMPL_DIR``), as
``UV_Processed.mat`` or ``UV_data/UV_Processed.mat`` (PyMAF's ``data/UV_data`` layout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from body.assets import BodyAssetError

UV_PROCESSED = "UV_Processed.mat"
SEARCHED = (UV_PROCESSED, f"UV_data/{UV_PROCESSED}")

# PyMAF's Index2mask: coarse class k <- DensePose parts INDEX2MASK[k].
INDEX2MASK = ((0,), (1, 2), (3,), (4,), (5,), (6,), (7, 9), (8, 10), (11, 13), (12, 14), (15, 17), (16, 18),
              (19, 21), (20, 22), (23, 24))


def _coarse_table() -> np.ndarray:
    table = np.zeros(25, dtype=np.int64)
    for k, parts in enumerate(INDEX2MASK):
        table[list(parts)] = k
    return table


DENSEPOSE_COARSE15 = _coarse_table()   # (25,) DensePose part 0..24 -> coarse class 0..14


class DensePoseFileError(BodyAssetError):
    """``UV_Processed.mat`` is present but does not fit the body model. The message is one line."""


def find_uv_processed(root: str | Path) -> Path | None:
    """The first of ``root/UV_Processed.mat``, ``root/UV_data/UV_Processed.mat`` that exists, else None."""
    for rel in SEARCHED:
        path = Path(root) / rel
        if path.is_file():
            return path
    return None


def read_uv_processed(path: str | Path, num_vertices: int) -> dict[str, np.ndarray]:
    """DensePose's charts as 0-based arrays.

    Args:
        path: ``UV_Processed.mat``.
        num_vertices: V of the body model the file must describe.
    Returns:
        ``vertex_map`` (V',) int64 body-model vertex of each chart vertex, ``faces`` (F', 3) int64 into the
        chart vertices, ``face_part`` (F',) int64 1..24, ``uv`` (V', 2) float64.
    Raises:
        DensePoseFileError: a field is missing or the indices do not fit.
    """
    from scipy.io import loadmat

    d = loadmat(str(path))
    need = ("All_vertices", "All_Faces", "All_FaceIndices", "All_U_norm", "All_V_norm")
    missing = [k for k in need if k not in d]
    if missing:
        raise DensePoseFileError(f"{path} lacks {', '.join(missing)}: use DensePose's UV_Processed.mat "
                                 "(DensePose's UV_data bundle)")
    vertex_map = np.asarray(d["All_vertices"]).reshape(-1).astype(np.int64) - 1
    faces = np.asarray(d["All_Faces"]).astype(np.int64).reshape(-1, 3) - 1
    face_part = np.asarray(d["All_FaceIndices"]).reshape(-1).astype(np.int64)
    uv = np.stack([np.asarray(d["All_U_norm"], np.float64).reshape(-1),
                   np.asarray(d["All_V_norm"], np.float64).reshape(-1)], axis=1)
    n = len(vertex_map)
    if vertex_map.min() < 0 or vertex_map.max() >= num_vertices:
        raise DensePoseFileError(f"{path} indexes vertices up to {vertex_map.max() + 1}, but the body model has "
                                 f"{num_vertices}: it belongs to another mesh (move it away to use the suite's charts)")
    if len(uv) != n or faces.min() < 0 or faces.max() >= n or len(face_part) != len(faces) \
            or face_part.min() < 1 or face_part.max() > 24:
        raise DensePoseFileError(f"{path} is inconsistent (faces, parts 1..24 and U / V must fit its "
                                 f"{n} vertices): use DensePose's UV_Processed.mat")
    return {"vertex_map": vertex_map, "faces": faces, "face_part": face_part, "uv": uv}
