"""Write an asset set in the formats other codebases read; the command is :mod:`cli.export_body`
(``make export-body``, ``python -m cli.export_body --asset-set open --out DIR``):

- ``SMPL_NEUTRAL.pkl``: plain numpy/scipy contents (no chumpy) that ``smplx.SMPL(model_path=DIR)`` loads.
- ``mesh_downsampling.npz``: GraphCMR's layout (object arrays ``A`` (3), ``U`` (2), ``D`` (2) of scipy
  sparse matrices, plus ``F``, the faces of each level). It holds pickled scipy objects because that
  is what GraphCMR/PyMAF read (``np.load(..., allow_pickle=True)``); our own files never do.
- ``vertex_ids.json``: the vertices of smplx's 21 extra joints (nose, eyes, ears, toes, heels, fingertips)
  on this mesh. smplx defaults to SMPL's own vertex ids, which are wrong for any other mesh: pass these,
  ``smplx.SMPL(model_path=DIR, vertex_ids=json.load(open(DIR/'vertex_ids.json')))``, when the extra
  joints matter (SPIN/PyMAF read their OpenPose keypoints from them).
- SPIN's ``J_regressor_extra.npy`` (9, V), ``J_regressor_h36m.npy`` (17, V), ``smpl_mean_params.npz``
  (``pose`` (144,) 6D, ``shape`` (10,), ``cam`` (3,)).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from body.assets import AssetSet


def smpl_pickle_dict(assets: AssetSet) -> dict:
    """The SMPL pickle's keys, as plain numpy/scipy objects."""
    struct = assets.smplx_struct()
    return {
        "v_template": np.asarray(struct.v_template, dtype=np.float64),
        "shapedirs": np.asarray(struct.shapedirs, dtype=np.float64),
        "posedirs": np.asarray(struct.posedirs, dtype=np.float64),
        "J_regressor": sp.csc_matrix(np.asarray(struct.J_regressor, dtype=np.float64)),
        "weights": np.asarray(struct.weights, dtype=np.float64),
        "kintree_table": np.asarray(struct.kintree_table, dtype=np.int64),
        "f": np.asarray(struct.f, dtype=np.uint32),
        "J": np.asarray(struct.J_regressor, dtype=np.float64) @ np.asarray(struct.v_template, dtype=np.float64),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
        **({"vert_sym_idxs": np.asarray(assets.mirror, dtype=np.int64)} if assets.mirror is not None else {}),
    }


def export_asset_set(assets: AssetSet, out_dir: str | Path) -> list[Path]:
    """Write every interoperability file for ``assets`` into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    pkl = out / f"SMPL_{assets.gender.upper()}.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump(smpl_pickle_dict(assets), fh, protocol=2)
    written.append(pkl)
    h = assets.hierarchy
    obj = lambda items: np.array(list(items) + [None], dtype=object)[:-1]  # noqa: E731  (1-D object array)
    ds = out / "mesh_downsampling.npz"
    np.savez(ds, A=obj(sp.csc_matrix(a) for a in h.adjacency), U=obj(sp.csc_matrix(u) for u in h.up),
             D=obj(sp.csc_matrix(d) for d in h.down), F=obj(np.asarray(f, dtype=np.int64) for f in h.faces))
    written.append(ds)
    for name, arr in (("J_regressor_extra.npy", assets.J_regressor_extra), ("J_regressor_h36m.npy", assets.J_regressor_h36m)):
        np.save(out / name, np.asarray(arr, dtype=np.float64))
        written.append(out / name)
    vid = out / "vertex_ids.json"
    vid.write_text(json.dumps({k: int(v) for k, v in assets.vertex_ids.items()}, indent=2) + "\n")
    written.append(vid)
    mp = out / "smpl_mean_params.npz"
    np.savez(mp, pose=np.asarray(assets.mean_pose, np.float64), shape=np.asarray(assets.mean_shape, np.float64),
             cam=np.asarray(assets.mean_cam, np.float64))
    written.append(mp)
    return written

