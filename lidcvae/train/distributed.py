"""DistributedDataParallel plumbing: one process per GPU (or per CPU worker under gloo) via torchrun.

Outside torchrun everything here degrades to a single process, so the trainer has one code path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "ProcessGroup", "setup_process_group", "teardown_process_group", "all_reduce_sum", "gather_objects",
    "process_count", "relaunch_under_torchrun",
]


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits: ``rank`` of ``world_size``, and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes metrics and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_process_group(device: torch.device) -> ProcessGroup:
    """Join torchrun's process group (NCCL on GPU, gloo on CPU) when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), device)


def teardown_process_group(group: ProcessGroup) -> None:
    """Leave the process group, if one was joined."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """Sum a tensor over ranks (identity in a single process)."""
    if group.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_objects(value: Any, group: ProcessGroup) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not group.distributed:
        return [value]
    gathered: list[Any] = [None] * group.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def process_count(gpus: int, cpu_processes: int) -> int:
    """Training processes a run asks for: one per GPU, else ``cpu_processes`` (gloo), at least one."""
    return max(1, gpus if gpus > 0 else cpu_processes)


def relaunch_under_torchrun(script: str | os.PathLike, script_args: Sequence[str], processes: int) -> int:
    """Run ``script`` with ``script_args`` in ``processes`` ranks under ``torchrun --standalone``; its exit status.

    Rank 0 logs and checkpoints. Give the script's options in full (``--log-file``, not ``--log``):
    torchrun's own parser would take an abbreviation of one of its options as its own.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(Path(script)), *map(str, script_args)]
    return subprocess.call(command)
