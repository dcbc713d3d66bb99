"""Byte encodings of the sample format's parts: numeric arrays (msgpack maps), the JPEG crop, PNG label maps.

Split out of :mod:`datamodules.shards` (which re-exports every public name here). Arrays are stored as
``{"dtype", "shape", "bytes"}`` maps with a little-endian dtype from a short allow-list and decoded with
``numpy.frombuffer`` only (never a pickle); images are Pillow JPEG (RGB) and 8-bit grayscale PNG.
"""
from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image

from datamodules.schema import CorruptSampleError

JPEG_QUALITY: int = 95
_ALLOWED_DTYPES: frozenset[str] = frozenset({"<f4", "<f8", "<i4", "<i8", "|u1", "|b1"})
_ARRAY_KEYS: frozenset[str] = frozenset({"dtype", "shape", "bytes"})


def pack_array(array: np.ndarray) -> dict[str, Any]:
    """``{"dtype", "shape", "bytes"}`` of a numeric array: little-endian, C order."""
    array = np.asarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    dtype = array.dtype.str
    if dtype not in _ALLOWED_DTYPES:
        raise TypeError(f"pack_array: dtype {array.dtype} not in {sorted(_ALLOWED_DTYPES)}")
    return {"dtype": dtype, "shape": list(array.shape), "bytes": np.ascontiguousarray(array).tobytes()}


def unpack_array(obj: Any, field: str = "array") -> np.ndarray:
    """Inverse of :func:`pack_array` (``numpy.frombuffer``; the result is a writable copy)."""
    if not isinstance(obj, dict) or set(obj) != _ARRAY_KEYS:
        raise CorruptSampleError(field, "bad array encoding", "expected a map with keys dtype, shape, bytes")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["bytes"]
    if dtype not in _ALLOWED_DTYPES:
        raise CorruptSampleError(field, "bad array encoding", f"dtype {dtype!r} not allowed")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise CorruptSampleError(field, "bad array encoding", f"bad shape {shape!r}")
    if not isinstance(data, bytes):
        raise CorruptSampleError(field, "bad array encoding", "bytes is not a binary string")
    dt = np.dtype(dtype)
    if len(data) != math.prod(shape) * dt.itemsize:
        raise CorruptSampleError(field, "bad array encoding",
                                 f"{len(data)} bytes for shape {tuple(shape)} of {dtype}")
    return np.frombuffer(data, dtype=dt).reshape(shape).copy()


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB image (Pillow, default chroma subsampling)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes, field: str = "jpg") -> np.ndarray:
    """(H, W, 3) uint8 RGB from JPEG bytes; a truncated or non-JPEG payload is a CorruptSampleError."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise CorruptSampleError(field, "bad JPEG", f"is {im.format}, not JPEG")
            im.load()  # decodes everything: raises on truncated data
            return np.array(im.convert("RGB"))
    except CorruptSampleError:
        raise
    except Exception as exn:
        raise CorruptSampleError(field, "bad JPEG", f"cannot decode JPEG ({type(exn).__name__}: {exn})") from None


def encode_png(mask: np.ndarray) -> bytes:
    """Lossless 8-bit grayscale PNG bytes of an (H, W) uint8 label map."""
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes, field: str = "mask.png") -> np.ndarray:
    """(H, W) uint8 from 8-bit grayscale PNG bytes; anything else is a CorruptSampleError naming ``field``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG" or im.mode != "L":
                raise CorruptSampleError(field, "bad PNG", f"must be an 8-bit grayscale PNG, got {im.format} {im.mode}")
            im.load()
            return np.array(im)
    except CorruptSampleError:
        raise
    except Exception as exn:
        raise CorruptSampleError(field, "bad PNG", f"cannot decode PNG ({type(exn).__name__}: {exn})") from None
