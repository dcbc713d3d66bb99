"""What the processes of a distributed run share."""
from __future__ import annotations

from typing import Any


def gather_from_ranks(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order; ``[obj]`` outside a distributed run. A collective under DDP: call it
    where every rank runs (e.g. while saving a checkpoint: Lightning saves on all ranks)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def close_process_group() -> None:
    """End the distributed run's process group, if any, before the entry point returns: left to the interpreter's
    exit, gloo's threads were sometimes torn down while running, and the process aborted ("terminate called without
    an active exception", exit -6) after its work was done. Call it where every rank has finished its collectives."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
