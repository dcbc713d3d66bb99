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
