"""Reading a SPIN-format annotation npz into typed, validated per-sample records.

Keys (SPIN's ``data/dataset_extras/*.npz``, also PyMAF's and GraphCMR's), N = number of people:

=========  ============  =====================================================================
key        shape         meaning
=========  ============  =====================================================================
imgname    (N,) str      image path relative to the image root
center     (N, 2)        box centre (x, y), original pixels
scale      (N,)          box side / 200 px
part       (N, 24, 3)    ground-truth 2D joints (SPIN-24 order), pixel indices + visibility
openpose   (N, 25, 3)    OpenPose BODY_25 detection, pixel indices + confidence
S          (N, 24, 4)    3D joints, metres, root-relative, camera axes + visibility
pose       (N, 72)       SMPL axis-angle, global orientation (camera frame) first
shape      (N, >=10)     SMPL betas (the first 10 are used)
has_smpl   (N,)          pose/shape are a valid fit (default 1 where pose exists)
gender     (N,) str      'm' / 'f'
maskname   (N,) str      silhouette PNG path (relative to the mask root)
partname   (N,) str      part-label PNG path (relative to the mask root)
=========  ============  =====================================================================

Problems with the file as a whole (a missing key, a wrong shape, millimetres) are one-line
``UserError``s naming the key and the dataset; problems of single rows (NaN joints, an all-zero pose
flagged ``has_smpl``) are repaired in the record and counted in :attr:`SpinNpz.notes`.
"""
from __future__ import annotations

import collections
import zipfile
from dataclasses import dataclass

import numpy as np

from datamodules.convert.datasets import ALL_KEYS, DatasetSpec
from datamodules.convert.keypoints import clean_confidence_rows
from runtime.errors import UserError

# A root-relative human skeleton stays well within this many metres; beyond it S is millimetres.
S_MILLIMETRE_THRESHOLD: float = 10.0
_SHAPES: dict[str, tuple[int, ...]] = {"center": (2,), "scale": (), "part": (24, 3), "openpose": (25, 3),
                                       "S": (24, 4), "pose": (72,), "has_smpl": (), "gender": (),
                                       "imgname": (), "maskname": (), "partname": ()}


@dataclass(frozen=True)
class SpinRecord:
    """One person of a SPIN-format file, cleaned (float64 arrays; absent data is None).

    index: row in the npz; imgname / maskname / partname: relative paths; center (2,); scale;
    part (24, 3) and openpose (25, 3): pixel indices + confidence in [0, 1] (unusable rows zeroed);
    S (24, 4): metres + visibility; pose (72,); betas (10,); has_smpl; gender: 'male' | 'female' |
    'neutral'.
    """

    index: int
    imgname: str
    center: np.ndarray
    scale: float
    part: np.ndarray | None
    openpose: np.ndarray | None
    S: np.ndarray | None
    pose: np.ndarray | None
    betas: np.ndarray | None
    has_smpl: bool
    gender: str
    maskname: str | None
    partname: str | None


def _text(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    return str(value)


def normalise_gender(value) -> str | None:
    """'m'/'male' -> 'male', 'f'/'female' -> 'female', anything else -> None (unknown)."""
    g = _text(value).strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(g)


class SpinNpz:
    """A loaded, validated SPIN-format npz.

    Args:
        path: the npz file.
        spec: the dataset it should be (its required keys are checked).
        split: "train" | "test".
        s_units: "m" (SPIN's; millimetre-looking S is an error) or "mm" (S is divided by 1000).
        allow_pickle: allow object arrays (pickles); off by default, since unpickling runs code.
    """

    def __init__(self, path: str, spec: DatasetSpec, split: str, s_units: str = "m", allow_pickle: bool = False):
        self.path, self.spec, self.split = path, spec, split
        self.notes: collections.Counter = collections.Counter()
        where = f"{spec.name} npz {path}"
        try:
            with np.load(path, allow_pickle=allow_pickle) as npz:
                keys = set(npz.files)
                missing = [k for k in spec.required_keys(split) if k not in keys]
                if missing:
                    raise UserError(
                        f"{where} lacks key(s) {', '.join(missing)}: a SPIN-format {spec.name} {split} file "
                        f"({spec.spin_files.get(split, 'npz')}) has {', '.join(spec.required_keys(split))} "
                        f"(optional: {', '.join(spec.optional)}); is this the right file and --split?")
                data = {k: npz[k] for k in ALL_KEYS if k in keys}
        except UserError:
            raise
        except ValueError as exn:
            if "allow_pickle" in str(exn):
                raise UserError(f"{where} stores object arrays (pickles); re-save it with plain arrays, or pass "
                                "--allow-pickle if you trust the file") from None
            raise UserError(f"{where}: cannot read ({exn})") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exn:
            raise UserError(f"{where}: cannot read ({type(exn).__name__}: {exn})") from None
        self.keys: tuple[str, ...] = tuple(k for k in ALL_KEYS if k in data)
        self.ignored_keys: tuple[str, ...] = tuple(sorted(keys - set(ALL_KEYS)))
        self._check_shapes(data, where)
        self.data = data
        self.num_rows = len(data["imgname"])
        self.s_max_abs = self._check_units(s_units, where) if "S" in data else None
        if ("pose" in data) != ("shape" in data) or ("has_smpl" in data and "pose" not in data):
            self.notes["SMPL keys incomplete (need pose and shape): has_smpl False"] = self.num_rows

    def _check_shapes(self, data: dict, where: str) -> None:
        n = len(data["imgname"])
        if "scale" in data and data["scale"].ndim == 2 and data["scale"].shape[1] == 1:
            data["scale"] = data["scale"][:, 0]
        if "pose" in data and data["pose"].ndim == 3:
            data["pose"] = data["pose"].reshape(len(data["pose"]), -1)
        for key, arr in data.items():
            want = _SHAPES.get(key)
            if key == "shape":
                ok = arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] >= 10
                want_s = "(N, >=10)"
            else:
                ok = arr.shape == (n,) + want
                want_s = str((n,) + want).replace(f"({n},", "(N,")
            if not ok:
                raise UserError(f"{where}: key {key!r} has shape {arr.shape}, expected {want_s} with N = {n} "
                                "(the length of imgname)")
            if key in ("center", "scale", "part", "openpose", "S", "pose", "shape", "has_smpl") \
                    and arr.dtype.kind not in "fiub":
                raise UserError(f"{where}: key {key!r} must be numeric, got dtype {arr.dtype}")

    def _check_units(self, s_units: str, where: str) -> float:
        S = np.asarray(self.data["S"], dtype=np.float64)
        xyz = S[..., :3]
        usable = np.isfinite(S).all(-1) & (np.nan_to_num(S[..., 3]) > 0)
        max_abs = float(np.abs(xyz[usable]).max()) if usable.any() else 0.0
        if s_units == "m" and max_abs > S_MILLIMETRE_THRESHOLD:
            raise UserError(f"{where}: S looks like millimetres (max |coordinate| {max_abs:g} > "
                            f"{S_MILLIMETRE_THRESHOLD:g}; SPIN stores root-relative metres): pass --s-units mm "
                            "to convert")
        if s_units == "mm":
            if usable.any() and max_abs <= S_MILLIMETRE_THRESHOLD:
                raise UserError(f"{where}: --s-units mm given but S already looks like metres (max |coordinate| "
                                f"{max_abs:g}); drop --s-units mm")
            S = S.copy()
            S[..., :3] /= 1000.0
            self.data["S"] = S
            max_abs /= 1000.0
        return max_abs

    def genders(self) -> set[str]:
        """The normalised genders of the file's persons ('neutral' for unknown or absent)."""
        if "gender" not in self.data:
            return {"neutral"}
        return {normalise_gender(g) or "neutral" for g in np.unique(self.data["gender"])}

    def __len__(self) -> int:
        return self.num_rows

    def record(self, i: int) -> SpinRecord:
        """Row ``i`` as a cleaned :class:`SpinRecord` (repairs counted in :attr:`notes`)."""
        d = self.data

        def points(key: str) -> np.ndarray | None:
            if key not in d:
                return None
            clean, n_bad = clean_confidence_rows(d[key][i])
            if n_bad:
                self.notes[f"{key}: rows with NaN/inf zeroed"] += n_bad
            return clean

        pose = betas = None
        has_smpl = False
        if "pose" in d and "shape" in d:
            pose = np.asarray(d["pose"][i], dtype=np.float64)
            betas = np.asarray(d["shape"][i][:10], dtype=np.float64)
            has_smpl = bool(d["has_smpl"][i]) if "has_smpl" in d else True
            if not (np.isfinite(pose).all() and np.isfinite(betas).all()):
                if has_smpl:
                    self.notes["has_smpl set False: pose/shape not finite"] += 1
                pose, betas, has_smpl = np.zeros(72), np.zeros(10), False
            elif has_smpl and not pose.any():
                self.notes["has_smpl set False: pose all zeros (a placeholder)"] += 1
                has_smpl = False
        gender = "neutral"
        if "gender" in d:
            g = normalise_gender(d["gender"][i])
            if g is None:
                self.notes[f"gender {_text(d['gender'][i])!r} -> neutral"] += 1
            gender = g or "neutral"
        return SpinRecord(
            index=i, imgname=_text(d["imgname"][i]),
            center=np.asarray(d["center"][i], dtype=np.float64), scale=float(d["scale"][i]),
            part=points("part"), openpose=points("openpose"), S=points("S"), pose=pose, betas=betas,
            has_smpl=has_smpl, gender=gender,
            maskname=_text(d["maskname"][i]) if "maskname" in d else None,
            partname=_text(d["partname"][i]) if "partname" in d else None,
        )


def read_json_file(path: str, what: str):
    """The parsed JSON of an input file given by a converter option; an unreadable or malformed file is a
    one-line ``UserError`` naming the option (``what``, e.g. "--detections") and the file."""
    import json

    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exn:
        raise UserError(f"{what} {path}: cannot read it as JSON ({type(exn).__name__}: {exn})") from None
