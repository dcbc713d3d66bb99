"""Pseudo ground truth for the in-the-wild training sets: SMPL fits -> ``pose``, ``betas``, ``has_smpl``.

SPIN / PyMAF supervise LSP, LSPET, MPII, COCO and MPI-INF-3DHP with fits (PyMAF a5feca1 ``core/fits_dict.py``:
``data/final_fits/<set>.npz`` holds ``pose`` (N, 72), ``betas`` (N, 10) and ``valid_fit`` (N,), one row per
row of the set's SPIN npz, in the same order; the trainer supervises pose, shape and IUV where
``valid_fit | has_smpl``). Without them those samples carry no SMPL supervision at all. Sources read here:

- SPIN's final fits ``<set>.npz`` (``pose``, ``betas``, ``valid_fit``): row i belongs to npz row i;
- a ``.npy`` of (N, 82) = pose | betas, every row valid (PyMAF's ``final_fits/h36m.npy``);
- EFT's JSON (``{"ver", "data": [{"parm_pose": 24x3x3 rotation matrices, "parm_shape": 10, "bbox_center",
  "bbox_scale", "imageName"}, ...]}``): every entry is a fit; an entry belongs to the npz row whose
  image has its ``imageName`` (base names compared) and whose box centre is nearest its ``bbox_center``,
  within :data:`EFT_MATCH_RADIUS` x the row's box side (200 * scale px).

Rules (:func:`supervise`, per row):

- a row whose npz already holds SMPL ground truth (``has_smpl``) keeps it: the fit never replaces ground
  truth (SPIN's and PyMAF's trainer: ``opt_pose[has_smpl] = gt_pose[has_smpl]``);
- otherwise a valid fit becomes the row's ``pose`` / ``betas`` with ``has_smpl`` True, so the sample is
  supervised where ``valid_fit OR has_smpl``;
- ``extreme_betas="zero"`` (default): a fit with any |beta| > :data:`EXTREME_BETA` gets all ten betas set to 0
  (the trainer's "Replace extreme betas with zero betas"); ``"keep"`` leaves them, which is what a5feca1's
  supervision effectively does (its FitsDict also sets ``has_smpl = valid_fit``, so the trainer's next line
  ``opt_betas[has_smpl] = gt_betas[has_smpl]`` restores every valid fit's betas);
- a fit with NaN/inf values or an all-zero pose is treated as invalid (counted).
"""
from __future__ import annotations

import collections
import dataclasses
import os
import zipfile
from dataclasses import dataclass

import numpy as np
import roma
import torch

from datamodules.convert.spin_npz import SpinRecord, read_json_file
from runtime.errors import UserError

EXTREME_BETA: float = 3.0
EXTREME_BETAS_MODES: tuple[str, ...] = ("zero", "keep")
EFT_MATCH_RADIUS: float = 0.25   # an EFT box centre within 0.25 x the row's box side (our choice)


@dataclass
class Fits:
    """Fits aligned with the npz rows: ``pose`` (N, 72) axis-angle, ``betas`` (N, 10), ``valid`` (N,) bool;
    ``kind`` "spin_npz" | "npy" | "eft_json"; ``path``."""

    pose: np.ndarray
    betas: np.ndarray
    valid: np.ndarray
    kind: str
    path: str


def _rows_error(path: str, n_fit: int, n_rows: int) -> UserError:
    return UserError(f"--fits {path}: {n_fit} fits for an npz of {n_rows} rows; a final-fits file has one row per "
                     "row of the set's SPIN npz, in order (SPIN's data/final_fits/<set>.npz for <set>'s "
                     "dataset_extras npz): is this the fits file of this npz?")


def _load_spin_npz(path: str, n_rows: int) -> Fits:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("pose", "betas", "valid_fit") if k not in f.files]
            if missing:
                raise UserError(f"--fits {path} lacks key(s) {', '.join(missing)}: SPIN's final fits hold "
                                "pose (N, 72), betas (N, 10) and valid_fit (N,)")
            pose, betas, valid = (np.asarray(f[k], dtype=np.float64) for k in ("pose", "betas", "valid_fit"))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exn:
        raise UserError(f"--fits {path}: cannot read ({type(exn).__name__}: {exn})") from None
    pose = pose.reshape(len(pose), -1)
    if pose.shape[1] != 72 or betas.ndim != 2 or betas.shape[1] < 10 or valid.shape != (len(pose),) \
            or len(betas) != len(pose):
        raise UserError(f"--fits {path}: pose {pose.shape}, betas {betas.shape}, valid_fit {valid.shape}; expected "
                        "(N, 72), (N, 10) and (N,)")
    if len(pose) != n_rows:
        raise _rows_error(path, len(pose), n_rows)
    return Fits(pose, betas[:, :10], valid > 0, "spin_npz", path)


def _load_npy(path: str, n_rows: int) -> Fits:
    try:
        params = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError) as exn:
        raise UserError(f"--fits {path}: cannot read ({type(exn).__name__}: {exn})") from None
    if params.ndim != 2 or params.shape[1] != 82:
        raise UserError(f"--fits {path}: shape {params.shape}, expected (N, 82) = pose (72) | betas (10)")
    if len(params) != n_rows:
        raise _rows_error(path, len(params), n_rows)
    return Fits(params[:, :72], params[:, 72:], np.ones(len(params), dtype=bool), "npy", path)


def _rotmat_to_axis_angle(rotmats: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3); rounding off SO(3) is projected away first (``roma.special_procrustes``)."""
    r = roma.special_procrustes(torch.as_tensor(rotmats, dtype=torch.float64))
    return roma.rotmat_to_rotvec(r).numpy()


def _load_eft(path: str, imgnames: np.ndarray, centers: np.ndarray, scales: np.ndarray,
              notes: collections.Counter) -> Fits:
    data = read_json_file(path, "--fits")
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"--fits {path}: not an EFT fitting file (a JSON object with a 'data' list of fits)")
    n = len(imgnames)
    pose, betas, valid = np.zeros((n, 72)), np.zeros((n, 10)), np.zeros(n, dtype=bool)
    best = np.full(n, np.inf)
    rows_of: dict[str, list[int]] = collections.defaultdict(list)
    for i, name in enumerate(imgnames):
        rows_of[os.path.basename(str(name))].append(i)
    for k, e in enumerate(entries):
        try:
            name = os.path.basename(str(e["imageName"]))
            rot = np.asarray(e["parm_pose"], dtype=np.float64).reshape(24, 3, 3)
            shape = np.asarray(e["parm_shape"], dtype=np.float64).reshape(-1)[:10]
            center = np.asarray(e["bbox_center"], dtype=np.float64).reshape(2)
        except (KeyError, TypeError, ValueError) as exn:
            raise UserError(f"--fits {path}: entry {k} is not an EFT fit (needs imageName, parm_pose 24x3x3, "
                            f"parm_shape, bbox_center): {type(exn).__name__}: {exn}") from None
        rows = rows_of.get(name, [])
        dist = [float(np.linalg.norm(centers[i] - center)) for i in rows]
        near = [(d, i) for d, i in zip(dist, rows) if d <= EFT_MATCH_RADIUS * 200.0 * scales[i]]
        if not near:
            notes["fits: EFT entries matching no npz row"] += 1
            continue
        d, i = min(near)
        if valid[i]:   # two entries for one row: the nearer one stays
            notes["fits: EFT entries dropped (another entry nearer the same row)"] += 1
            if d >= best[i]:
                continue
        best[i], valid[i] = d, True
        pose[i], betas[i] = _rotmat_to_axis_angle(rot).reshape(72), 0.0
        betas[i, :len(shape)] = shape
    return Fits(pose, betas, valid, "eft_json", path)


def load_fits(path: str, imgnames: np.ndarray, centers: np.ndarray, scales: np.ndarray,
              notes: collections.Counter) -> Fits:
    """The fits of an npz's rows (module docstring), by file type: ``.npz`` SPIN, ``.npy`` (N, 82), ``.json`` EFT.

    Args:
        imgnames (N,), centers (N, 2), scales (N,): the npz's rows (EFT entries are matched to them).
        notes: counts of what happened (EFT matching).
    """
    if not os.path.isfile(path):
        raise UserError(f"--fits {path}: no such file (SPIN's data/final_fits/<set>.npz, or an EFT .json)")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return _load_spin_npz(path, len(imgnames))
    if ext == ".npy":
        return _load_npy(path, len(imgnames))
    if ext == ".json":
        return _load_eft(path, imgnames, np.asarray(centers, dtype=np.float64), np.asarray(scales, dtype=np.float64),
                         notes)
    raise UserError(f"--fits {path}: unknown file type {ext or '(none)'}: give SPIN's final fits (.npz: pose, betas, "
                    "valid_fit), a (N, 82) .npy, or an EFT fitting file (.json)")


def supervise(record: SpinRecord, fits: Fits, extreme_betas: str, notes: collections.Counter) -> SpinRecord:
    """The record with its row's fit as SMPL supervision where it has no ground truth (module docstring)."""
    i = record.index
    if record.has_smpl:
        notes["fits: rows keeping their ground-truth SMPL"] += 1
        return record
    if not fits.valid[i]:
        notes["fits: rows without a valid fit"] += 1
        return record
    pose, betas = fits.pose[i].copy(), fits.betas[i].copy()
    if not (np.isfinite(pose).all() and np.isfinite(betas).all()) or not pose.any():
        notes["fits: valid_fit rows with NaN/inf or all-zero pose, not used"] += 1
        return record
    if extreme_betas == "zero" and (np.abs(betas) > EXTREME_BETA).any():
        betas[:] = 0.0
        notes[f"fits: betas zeroed (some |beta| > {EXTREME_BETA:g})"] += 1
    notes["fits: rows supervised by a fit"] += 1
    return dataclasses.replace(record, pose=pose, betas=betas, has_smpl=True)
