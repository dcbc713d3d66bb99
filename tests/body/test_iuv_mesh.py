"""The chart-split IUV mesh PyMAF's targets are rendered from: the suite's seam-split cylinder charts, the
15 coarse classes, DensePose's ``UV_Processed.mat`` (a stand-in in its structure) and the fallback note."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from body.densepose import DENSEPOSE_COARSE15, DensePoseFileError
from body.export import export_asset_set
from body.iuv_mesh import IUVChartNote, load_iuv_mesh
from body.joints import SMPL_JOINT_NAMES, SMPL_PARENTS
from body.model import BodyModel
from body.parts import COARSE15_NAMES, COARSE15_OF_PART
from body.raster import rasterize
from body.render import camera_view, face_iuv_map, screen_coordinates
from tests.body.standins import PERM, write_uv_processed


@pytest.fixture(scope="module")
def mesh(assets):
    return load_iuv_mesh(assets)


@pytest.fixture(scope="module")
def rest_joints(assets):
    return assets.J_regressor.astype(np.float64) @ assets.v_template.astype(np.float64)


def _majority(labels: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = labels[faces].T
    return np.where((a == b) | (a == c), a, np.where(b == c, b, a))


# ------------------------------------------------------------------ the suite's charts
def test_chart_mesh_is_the_body_mesh_cut_into_parts(assets, mesh):
    assert mesh.source == "charts"
    faces = assets.faces
    np.testing.assert_array_equal(mesh.vertex_map[mesh.faces], faces)        # same faces, same order
    np.testing.assert_array_equal(mesh.face_part, _majority(assets.part24, faces) + 1)
    assert mesh.uv.min() >= 0 and mesh.uv.max() <= 1
    # Every chart vertex lies in ONE part: all faces that use it have the same part.
    part_of_vertex = np.full(len(mesh.vertex_map), -1)
    for k in range(3):
        part_of_vertex[mesh.faces[:, k]] = mesh.face_part
    assert (part_of_vertex[mesh.faces] == mesh.face_part[:, None]).all()
    # Boundary vertices are duplicated: more chart vertices than body vertices, every body vertex used.
    assert len(mesh.vertex_map) > assets.num_vertices
    assert set(mesh.vertex_map.tolist()) == set(range(assets.num_vertices))
    for p in range(1, 25):   # each chart spans [0, 1] in U and V
        uv = mesh.uv[np.unique(mesh.faces[mesh.face_part == p])]
        np.testing.assert_allclose([uv.min(0), uv.max(0)], [[0, 0], [1, 1]], atol=1e-9)


LIMBS = ["left_hip", "right_hip", "left_knee", "right_knee", "left_shoulder", "right_shoulder",
         "left_elbow", "right_elbow"]


@pytest.mark.parametrize("limb", LIMBS)
def test_every_corner_takes_its_faces_chart(assets, mesh, rest_joints, limb):
    """U of every corner of a limb part's faces, including corners on vertices labelled with a neighbouring
    part, is one affine function of the position along the bone: the face's own chart, not the vertex's."""
    j = SMPL_JOINT_NAMES.index(limb)
    child = SMPL_PARENTS.index(j)
    faces = mesh.faces[mesh.face_part == j + 1]
    body_vertex = mesh.vertex_map[faces].reshape(-1)
    assert (assets.part24[body_vertex] != j).any()                    # some corners are other parts' vertices
    axis = rest_joints[child] - rest_joints[j]
    along = (assets.v_template[body_vertex].astype(np.float64) - rest_joints[j]) @ axis
    u = mesh.uv[faces.reshape(-1), 0]
    fit = np.polyfit(along, u, 1)
    np.testing.assert_allclose(np.polyval(fit, along), u, atol=1e-5)


def test_no_face_interpolates_across_a_chart_seam(assets, mesh):
    """The corners of a face are close in U and V: per-vertex charts put 9 % of the faces across two parts'
    charts and ~4 % across the V wrap (spreads up to 1); the chart-split mesh has none, but a handful of faces
    that are long for their chart (the short wrist parts) or sit at a cylinder's pole (a finger tip, where the
    azimuth turns quickly around the bone axis)."""
    def wide(uv_corners, limit=0.5):
        spread = uv_corners.max(1) - uv_corners.min(1)
        return (spread > limit).any(1)
    per_vertex = assets.iuv[:, 1:][assets.faces]
    assert wide(per_vertex).mean() > 0.03
    split = mesh.uv[mesh.faces]
    assert wide(split).mean() < 1e-3, np.flatnonzero(wide(split))
    # Across the V wrap specifically: corners of one face never sit on both ends of [0, 1].
    v = split[..., 1]
    assert ((v.max(1) > 0.9) & (v.min(1) < 0.1)).sum() == 0


def test_the_suites_coarse_classes_group_the_24_parts_by_meaning():
    def expected(name: str) -> str:
        if name in ("head", "neck"):
            return "head"
        side = name.split("_")[0] if name.startswith(("left_", "right_")) else None
        kind = {"hip": "upper_leg", "knee": "lower_leg", "ankle": "foot", "foot": "foot", "shoulder": "upper_arm",
                "elbow": "lower_arm", "wrist": "hand", "hand": "hand"}.get(name.split("_")[-1])
        return f"{side}_{kind}" if side and kind else "torso"     # pelvis, spines, collars

    assert COARSE15_OF_PART[0] == 0
    for j, name in enumerate(SMPL_JOINT_NAMES):
        assert COARSE15_NAMES[COARSE15_OF_PART[j + 1]] == expected(name), name
    assert set(COARSE15_OF_PART.tolist()) == set(range(15))


def test_densepose_coarse_classes_are_pymafs_index2mask():
    index2mask = [[0], [1, 2], [3], [4], [5], [6], [7, 9], [8, 10], [11, 13], [12, 14], [15, 17], [16, 18],
                  [19, 21], [20, 22], [23, 24]]
    for k, parts in enumerate(index2mask):
        assert all(DENSEPOSE_COARSE15[p] == k for p in parts)
    # The suite's coarse names follow DensePose's order (e.g. 2 right hand, 4 left foot, 14 head).
    assert COARSE15_NAMES[2] == "right_hand" and COARSE15_NAMES[4] == "left_foot" and COARSE15_NAMES[14] == "head"


# ------------------------------------------------------------------ rendering
def _posed_screen(model: BodyModel, size: int, yaw: float = 0.0):
    g = torch.Generator().manual_seed(3)
    pose = torch.randn(1, 72, generator=g) * 0.3
    pose[:, :3] = 0.0
    with torch.no_grad():
        verts = model(torch.zeros(1, 10), pose[:, 3:], pose[:, :3]).vertices
    return screen_coordinates(camera_view(verts, yaw), size, focal=size * 8.0 / 2.1)


def _render(model: BodyModel, screen: torch.Tensor, size: int):
    frags = rasterize(screen[:, model.iuv_vertex_map], model.iuv_faces, (size, size))
    return frags, face_iuv_map(frags, model.iuv_face_iuv)


@pytest.mark.parametrize("yaw", [0.0, 180.0])
def test_rendered_iuv_takes_each_pixels_face_chart(yaw):
    """Each foreground pixel shows its face's part and the mean of that face's corners in the face's chart
    (PyMAF's flat per-face IUV colour): the part is constant per face and U, V never mix two charts."""
    model = BodyModel.from_config("open")
    size = 160
    frags, iuv = _render(model, _posed_screen(model, size, yaw), size)
    fg = frags.pix_to_face[0] >= 0
    face = frags.pix_to_face[0][fg]
    corners = model.iuv_faces[face]                                     # (N, 3) chart vertices
    mesh = load_iuv_mesh(model._assets)
    part = torch.as_tensor(mesh.face_part)[face]
    np.testing.assert_array_equal(iuv[0, 0][fg].long().numpy(), part.numpy())
    uv_mean = torch.as_tensor(mesh.uv)[corners].mean(1).float()
    torch.testing.assert_close(iuv[0, 1:].permute(1, 2, 0)[fg], uv_mean, rtol=0, atol=1e-6)
    # Every corner of every visible face is a chart vertex of the face's own part.
    part_of_chart_vertex = torch.zeros(len(mesh.vertex_map), dtype=torch.long)
    part_of_chart_vertex[model.iuv_faces.reshape(-1)] = torch.as_tensor(mesh.face_part).repeat_interleave(3)
    assert torch.equal(part_of_chart_vertex[corners], part[:, None].expand(-1, 3))
    assert (iuv[0][:, ~fg] == 0).all()
    assert len(set(iuv[0, 0][fg].long().tolist())) >= 20


def test_all_24_parts_and_15_coarse_classes_show_front_and_back():
    model = BodyModel.from_config("open")
    size = 224
    seen = set()
    for yaw in (0.0, 180.0):
        _, iuv = _render(model, _posed_screen(model, size, yaw), size)
        seen |= set(iuv[0, 0].long().unique().tolist())
    assert seen == set(range(25))
    assert set(model.iuv_coarse_of_part[sorted(seen)].tolist()) == set(range(15))


# ------------------------------------------------------------------ DensePose's file
@pytest.fixture
def smpl_dir(assets, tmp_path):
    export_asset_set(assets, tmp_path)
    return tmp_path


@pytest.mark.parametrize("where", ["UV_Processed.mat", "UV_data/UV_Processed.mat"])
def test_smpl_with_uv_processed_renders_densepose_charts(assets, mesh, smpl_dir, where):
    write_uv_processed(smpl_dir / where, mesh)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IUVChartNote)
        dp = BodyModel.from_config("smpl", smpl_dir=str(smpl_dir))
    assert dp.iuv_source == "densepose"
    np.testing.assert_array_equal(dp.iuv_vertex_map.numpy(), mesh.vertex_map)
    np.testing.assert_array_equal(dp.iuv_faces.numpy(), mesh.faces)
    np.testing.assert_array_equal(dp.iuv_coarse_of_part.numpy(), DENSEPOSE_COARSE15)
    # Rendered: the file's parts, the file's U (mirrored here) and V, per face, at the same pixels.
    open_model = BodyModel.from_config("open")
    size = 128
    screen = _posed_screen(open_model, size)
    _, ref = _render(open_model, screen, size)
    _, got = _render(dp, screen, size)
    fg = ref[0, 0] > 0
    assert torch.equal(got[0, 0] > 0, fg)
    np.testing.assert_array_equal(got[0, 0][fg].long().numpy(), PERM[ref[0, 0][fg].long().numpy()])
    torch.testing.assert_close(got[0, 1][fg], 1.0 - ref[0, 1][fg], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[0, 2][fg], ref[0, 2][fg], rtol=0, atol=1e-6)


def test_smpl_without_uv_processed_falls_back_with_a_one_line_note(smpl_dir):
    with pytest.warns(IUVChartNote) as record:
        model = BodyModel.from_config("smpl", smpl_dir=str(smpl_dir))
    notes = [str(r.message) for r in record if r.category is IUVChartNote]
    assert len(notes) == 1 and "\n" not in notes[0] and "UV_Processed.mat" in notes[0] and str(smpl_dir) in notes[0]
    assert model.iuv_source == "charts"
    np.testing.assert_array_equal(model.iuv_coarse_of_part.numpy(), COARSE15_OF_PART)


def test_uv_processed_of_another_mesh_is_a_one_line_error(mesh, smpl_dir):
    bad = mesh.vertex_map.copy()
    bad[0] = 7000                                         # beyond the 6,890 vertices
    write_uv_processed(smpl_dir / "UV_Processed.mat", type(mesh)(**{**mesh.__dict__, "vertex_map": bad}))
    with pytest.raises(DensePoseFileError) as err:
        BodyModel.from_config("smpl", smpl_dir=str(smpl_dir))
    assert "\n" not in str(err.value) and "UV_Processed.mat" in str(err.value)


def test_open_model_never_reads_densepose(assets, mesh):
    assert BodyModel.from_config("open").iuv_source == "charts"
