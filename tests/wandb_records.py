"""The history rows of an offline W&B run file (``run-<id>.wandb``), for tests.

wandb >= 0.18 writes and reads these files in its Go core only; the Python package keeps the record protobufs
(``wandb.proto.wandb_internal_pb2``) but no reader. The container is LevelDB's log format, as wandb's own
former Python ``datastore`` read it: a 7-byte file header (``:W&B``, magic 0xBEE1, version), then 32 KiB blocks
of chunks, each with a 7-byte header (CRC-32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    """The serialized records of a .wandb file, in order."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    out: list[bytes] = []
    pos, pending = 7, b""
    while pos + CHUNK_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER.size:                  # block trailer: zero padding
            pos += left
            continue
        _, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:                 # zeros: the end of what was written
            break
        body = data[pos + CHUNK_HEADER.size: pos + CHUNK_HEADER.size + length]
        pos += CHUNK_HEADER.size + length
        if kind == FULL:
            out.append(body)
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            out.append(pending + body)
            pending = b""
    return out


def history_rows(path: Path) -> list[dict]:
    """Every ``wandb.log`` row of the run file: {key: value}."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for raw in records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append({(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                         for item in record.history.item})
    return rows
