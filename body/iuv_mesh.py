"""The surface PyMAF's IUV targets are rendered from: the body mesh cut into part charts (``IUVMesh``).

Every face belongs to one surface part and carries that part's chart coordinates at its three corners; a
body vertex shared by faces of different charts (a part boundary, or a cylinder chart's V seam) becomes
one IUV-mesh vertex per chart, at the same place (``vertex_map``). Rendering then never blends two charts.
PyMAF renders each face with one colour, (part / 24, mean U, mean V) of its corners (``IUVMesh.face_iuv``;
its ``utils/renderer.py`` ``IUV_Renderer``, texture size 1).

Two sources (``load_iuv_mesh``):
- ``"densepose"``: DensePose's charts of SMPL (``body.densepose``), for ``body=smpl`` when
  ``UV_Processed.mat`` lies beside the SMPL files; DensePose's 24 surface parts, coarse classes by PyMAF's
  ``Index2mask``.
- ``"charts"``: the suite's own cylinder charts (``body.parts``), for ``body=open`` and for ``body=smpl``
  without that file (one note says so); the 24 skinning parts, coarse classes ``body.parts.COARSE15_OF_PART``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from body.densepose import DENSEPOSE_COARSE15, SEARCHED, find_uv_processed, read_uv_processed
from body.parts import COARSE15_OF_PART, face_chart_uv, face_parts

SOURCES = ("densepose", "charts")


class IUVChartNote(UserWarning):
    """The IUV targets fall back to the suite's charts (DensePose's ``UV_Processed.mat`` was not found)."""


@dataclass(frozen=True)
class IUVMesh:
    """A chart-split copy of the body mesh. V' chart vertices, F' faces.

    vertex_map (V',) int64: body-model vertex of each chart vertex; faces (F', 3) int64 into the chart
    vertices; face_part (F',) int64 1..24; uv (V', 2) float in [0, 1]; coarse_of_part (25,) int64 part index
    (0 = background) -> coarse class 0..14; source: "densepose" | "charts".
    """

    vertex_map: np.ndarray
    faces: np.ndarray
    face_part: np.ndarray
    uv: np.ndarray
    coarse_of_part: np.ndarray
    source: str

    def face_iuv(self) -> np.ndarray:
        """(F', 3) float64 per-face (I, U, V): the part and the mean chart coordinates of its corners, the
        colour PyMAF's IUV renderer gives each face (I kept as the part number, not divided by 24)."""
        return np.concatenate([self.face_part[:, None].astype(np.float64), self.uv[self.faces].mean(1)], axis=1)


def split_corners(faces: np.ndarray, face_part: np.ndarray, corner_uv: np.ndarray) -> dict[str, np.ndarray]:
    """Duplicate vertices per chart: one chart vertex per distinct (body vertex, part, U, V) among the corners.

    Args:
        faces: (F, 3) body-model faces; face_part: (F,) part of each face; corner_uv: (F, 3, 2) the chart
            coordinates of each face corner.
    Returns:
        ``vertex_map`` (V',), ``faces`` (F, 3) into the chart vertices (face order kept), ``uv`` (V', 2).
    """
    faces = np.asarray(faces, dtype=np.int64)
    keys = np.concatenate([faces.reshape(-1, 1).astype(np.float64),
                           np.repeat(np.asarray(face_part, np.float64), 3)[:, None],
                           np.asarray(corner_uv, np.float64).reshape(-1, 2)], axis=1)    # (3F, 4)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return {"vertex_map": unique[:, 0].astype(np.int64), "faces": inverse.reshape(-1, 3).astype(np.int64),
            "uv": unique[:, 2:]}


def chart_iuv_mesh(v_template: np.ndarray, faces: np.ndarray, J_regressor: np.ndarray, parents: np.ndarray,
                   part24: np.ndarray) -> IUVMesh:
    """The suite's cylinder charts, seam-split (``body.parts.face_chart_uv``) on the rest template.

    Args:
        v_template: (V, 3); faces: (F, 3); J_regressor: (24, V); parents: (24,); part24: (V,) 0..23.
    """
    v = np.asarray(v_template, dtype=np.float64)
    joints = np.asarray(J_regressor, dtype=np.float64) @ v
    part = face_parts(part24, faces)
    split = split_corners(faces, part + 1, face_chart_uv(v, faces, joints, np.asarray(parents), part))
    return IUVMesh(face_part=part.astype(np.int64) + 1, coarse_of_part=COARSE15_OF_PART.copy(), source="charts",
                   **split)


def densepose_iuv_mesh(path, num_vertices: int) -> IUVMesh:
    """DensePose's charts from ``UV_Processed.mat`` (``body.densepose.read_uv_processed``)."""
    return IUVMesh(coarse_of_part=DENSEPOSE_COARSE15.copy(), source="densepose",
                   **read_uv_processed(path, num_vertices))


def load_iuv_mesh(assets) -> IUVMesh:
    """The IUV mesh of an asset set (``body.assets.AssetSet``): DensePose's for ``smpl`` with
    ``UV_Processed.mat`` beside the SMPL files, else the suite's charts (``smpl``: with a one-line note)."""
    from body.assets import SMPL_PARENTS

    if assets.name == "smpl":
        path = find_uv_processed(assets.root)
        if path is not None:
            return densepose_iuv_mesh(path, assets.num_vertices)
        warnings.warn(f"note: no DensePose {' or '.join(SEARCHED)} in {assets.root}: PyMAF's IUV targets use the "
                      "suite's own part charts", IUVChartNote, stacklevel=2)
    return chart_iuv_mesh(assets.v_template, assets.faces, assets.J_regressor, SMPL_PARENTS, assets.part24)
