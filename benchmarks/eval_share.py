"""What share of a training run's FLOPs goes to evaluation, on the demo's split, per ``train.eval_rows``?

Trains one rung (default MiniLM-L3) on the embedded demo's data exactly as the demo's climb splits
it (configs/demo.yaml at floor 0.75: 1,478 training and 1,035 validation sentences), once per
``--eval-rows`` value, and prints the FLOPs of training and of evaluation (the sampled evaluations
during training, the pass that scores the kept weights on the whole split, the latency passes),
the evaluation share, and the judged validation accuracy. FLOPs are analytic from the tokens each
forward pass computed (padding included), so a busy machine changes the wall time, not the table.

    python benchmarks/eval_share.py                     # eval_rows 64 (the default) and 0 (all rows)
    python benchmarks/eval_share.py --eval-rows 64,128
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fmt, markdown_table, say, set_threads, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-rows", default="64,0", help="comma-separated train.eval_rows values (0: all rows)")
    p.add_argument("--rung", default="minilm-l3")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    set_threads(args.threads)
    from advisor.config.settings import CONFIG_DIR, build_config
    from advisor.data.task import load_task_data
    from advisor.models.ladder import candidate_for, load_ladder, materialise
    from advisor.runkey import RunKey
    from advisor.training.train import train_run

    rows, raw = [], []
    work = Path(tempfile.mkdtemp(prefix="greenladder-eval-share-"))
    for n in (int(x) for x in args.eval_rows.split(",")):
        config = build_config(
            [CONFIG_DIR / "demo.yaml"],
            overrides=[
                "criteria.floor=0.75",
                "metering.codecarbon=false",
                f"train.eval_rows={n}",
                f"output.out={work}",
            ],
        )
        data = load_task_data(config.data, validation_rows=10**9)  # capped at the demo's 35 %, as the climb does
        rung = {r.name: r for r in load_ladder("offline")}[args.rung]
        say(f"{args.rung}, eval_rows {n}: {len(data.train)} training, {len(data.validation)} validation rows")
        run = train_run(
            candidate_for(rung),
            str(materialise(rung, None)),
            data,
            config,
            work,
            RunKey("trial", args.rung, n),
            save_model=True,
        )
        c = run.cost
        share = c.eval_flops / (c.train_flops + c.eval_flops)
        history = [round(e.value, 3) for e in run.evaluations if e.value is not None]
        rows.append(
            [
                n or "all",
                fmt(c.train_flops / 1e15),
                fmt(c.eval_flops / 1e15),
                f"{100 * share:.1f} %",
                f"{run.metrics.get('accuracy', float('nan')):.3f}",
                run.details.get("best_step"),
                history,
            ]
        )
        raw.append({"eval_rows": n, "cost": c.to_dict(), "metrics": run.metrics, "details": run.details})
    headers = ["eval_rows", "train PFLOPs", "eval PFLOPs", "eval share", "val acc (all rows)", "best at", "sample accs"]
    table = markdown_table(headers, rows)
    notes = [
        "Evaluation = the sampled evaluations during training, one pass over the whole validation split with "
        "the kept weights, and the latency passes; the test split is not scored here.",
        "The climb's share is the same ratio: every transformer run in it has the same training and "
        "validation tokens per row, and the TF-IDF baseline has no counted FLOPs.",
    ]
    command = "python benchmarks/eval_share.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results("eval_share", "Evaluation share of a run's FLOPs on the demo's split", command, [table], notes, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
