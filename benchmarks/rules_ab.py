"""Training-health rules on and off: does any rule cost a rung accuracy, and what does evaluation cost?

For each dataset and each offline rung, one training with the shipped defaults
(``advisor.training.train.train_run``, lr 1e-4, 3 epochs, batch 32, same seed) with the rules on (broken-run
rules and early stopping on the criterion metric) and off. Both keep the best weights by the
metric; the "last eval" column is what judging the last weights instead would have scored. Each
pair is compared on the same validation and test rows. Then two runs that really are broken
(learning rate 1e8: NaN; learning rate 0: nothing learned) show the rules still stop them.

Evaluation share = evaluation FLOPs / (training + evaluation FLOPs) of each training, analytic
from the tokens each forward pass saw (latency passes and the test pass not included).

    python benchmarks/rules_ab.py --quick      # 350 train / 75 validation / 75 test rows per dataset
    python benchmarks/rules_ab.py              # 1400 / 300 / 300
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import fixed_split, markdown_table, say, set_threads, write_results

DATASETS = "uncertainty,spamassassin,drug-reviews-binary"
RUNGS = "minilm-l3,minilm-l6"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DATASETS, help=f"comma-separated built-in datasets (default {DATASETS})")
    p.add_argument("--rungs", default=RUNGS, help=f"comma-separated offline rungs (default {RUNGS})")
    p.add_argument("--quick", action="store_true", help="350/75/75 rows per dataset (the demo's 70:15:15 shares)")
    p.add_argument("--train-rows", type=int, default=None)
    p.add_argument("--eval-rows", type=int, default=None)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-broken", action="store_true", help="skip the two broken runs")
    return p


def _interval(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _acc(preds: Any, labels: Any) -> dict[str, Any]:
    k = int(sum(int(p == y) for p, y in zip(preds, labels, strict=True)))
    n = len(labels)
    lo, hi = _interval(k, n)
    return {"value": k / n, "low": lo, "high": hi, "n": n}


def _cell(m: dict[str, Any]) -> str:
    return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}], n={m['n']}"


def one_run(source: str, data: Any, folder: Path, work: Path, rung: str, rules: bool, hp: dict[str, Any], args: Any):
    """Train one rung once; validation and test accuracy of the kept weights, compute, timings."""
    from advisor.config.settings import build_config
    from advisor.data.task import column
    from advisor.models.ladder import load_ladder, materialise
    from advisor.models.loading import load_for_classification
    from advisor.runkey import RunKey
    from advisor.training.inference import predict_labels
    from advisor.training.train import train_run
    from advisor.types import Candidate

    config = build_config(
        extra={
            "data": {"source": str(folder), "split_seed": args.seed},
            "train": {"max_length": args.max_length, "seed": args.seed},
            "metering": {"codecarbon": False},
            "rules": {"enabled": rules},
            "output": {"out": str(work)},
        }
    )
    spec = {r.name: r for r in load_ladder(config.ladder.name)}[rung]
    model_dir = str(materialise(spec, config.ladder.cache_dir, progress=say))
    key = RunKey("trial", f"{rung}-{'on' if rules else 'off'}", abs(hash(tuple(sorted(hp.items())))) % 10_000)
    run_id = key.run_id
    began = time.perf_counter()
    run = train_run(
        Candidate(name=rung, kind="finetune", source=source), model_dir, data, config, work, key, hp, progress=say
    )
    wall = time.perf_counter() - began
    row: dict[str, Any] = {
        "rung": rung,
        "rules": "on" if rules else "off",
        "hp": hp,
        "status": run.status,
        "message": run.message,
        "steps": run.details.get("steps"),
        "total_steps": run.details.get("total_steps"),
        "best_step": run.details.get("best_step"),
        "early_stop": run.details.get("early_stop"),
        "train_flops": run.cost.train_flops,
        "eval_flops": run.cost.eval_flops,
        "wall_s": wall,
        "eval_history": [e.to_dict() for e in run.evaluations],
    }
    labels_val = list(column(data.validation, "label"))
    if run.val_predictions:
        row["val"] = _acc(run.val_predictions, labels_val)
        last = run.evaluations[-1].value if run.evaluations else None
        row["val_last_eval"] = last
    if run.artifact:
        model, tok = load_for_classification(str(work / run.artifact), data.label_names)
        preds = predict_labels(model, tok, column(data.test, "text"), args.max_length)
        row["test"] = _acc(list(preds), list(column(data.test, "label")))
        row["_val_preds"], row["_test_preds"] = list(run.val_predictions), [int(p) for p in preds]
        shutil.rmtree(work / "runs" / run_id, ignore_errors=True)
    return row


def _share(row: dict[str, Any]) -> float:
    total = row["train_flops"] + row["eval_flops"]
    return row["eval_flops"] / total if total else float("nan")


def _paired(a: list[int], b: list[int], labels: list[int]) -> str:
    """Rows only one of the two got right (on, off): the McNemar discordant counts and exact p."""
    from scipy.stats import binomtest

    only_a = sum(int(x == y and z != y) for x, z, y in zip(a, b, labels, strict=True))
    only_b = sum(int(z == y and x != y) for x, z, y in zip(a, b, labels, strict=True))
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return f"{only_a} vs {only_b} (p={p:.2f})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    from advisor.data.task import column

    train_rows = args.train_rows or (350 if args.quick else 1400)
    eval_rows = args.eval_rows or (75 if args.quick else 300)
    command = "python benchmarks/rules_ab.py " + " ".join(argv if argv is not None else sys.argv[1:])
    default_hp = {"learning_rate": 1e-4, "epochs": 3.0, "batch_size": 32, "warmup_ratio": 0.1}
    rows: list[dict[str, Any]] = []
    pairs: list[list[Any]] = []
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="greenladder-rules-ab-"))
    try:
        for source in args.data.split(","):
            data, folder = fixed_split(
                source, f"rules-ab-{source}", train_rows=train_rows, eval_rows=eval_rows, seed=args.seed, progress=say
            )
            for rung in args.rungs.split(","):
                pair = {}
                for rules in (True, False):
                    say(f"== {source} {rung} rules {'on' if rules else 'off'}")
                    pair[rules] = {"data": source, **one_run(source, data, folder, work, rung, rules, default_hp, args)}
                    rows.append(pair[rules])
                on, off = pair[True], pair[False]
                if "val" in on and "val" in off and "test" in on and "test" in off:
                    pairs.append(
                        [
                            source,
                            rung,
                            100 * (on["val"]["value"] - off["val"]["value"]),
                            100 * (on["test"]["value"] - off["test"]["value"]),
                            _paired(on["_test_preds"], off["_test_preds"], list(column(data.test, "label"))),
                            on["train_flops"] + on["eval_flops"],
                            off["train_flops"] + off["eval_flops"],
                        ]
                    )
            if not args.no_broken and source == args.data.split(",")[0]:
                rung = args.rungs.split(",")[0]
                for lr in (1e8, 0.0):
                    say(f"== {source} {rung} broken on purpose: lr {lr:g}")
                    rows.append(
                        {
                            "data": source,
                            **one_run(
                                source, data, folder, work, rung, True, {**default_hp, "learning_rate": lr}, args
                            ),
                        }
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    for r in rows:
        r.pop("_val_preds", None)
        r.pop("_test_preds", None)
    runs_table = markdown_table(
        [
            "data",
            "rung",
            "lr",
            "rules",
            "status",
            "steps",
            "best at",
            "val acc (best kept)",
            "val acc last eval",
            "test acc",
            "train PFLOP",
            "eval PFLOP",
            "eval share",
            "wall s",
        ],
        [
            [
                r["data"],
                r["rung"],
                f"{r['hp']['learning_rate']:g}",
                r["rules"],
                r["status"],
                f"{r['steps']}/{r['total_steps']}",
                r["best_step"],
                _cell(r["val"]) if "val" in r else None,
                r.get("val_last_eval"),
                _cell(r["test"]) if "test" in r else None,
                r["train_flops"] / 1e15,
                r["eval_flops"] / 1e15,
                f"{100 * _share(r):.1f}%",
                r["wall_s"],
            ]
            for r in rows
        ],
    )
    diffs = markdown_table(
        [
            "data",
            "rung",
            "val on − off (points)",
            "test on − off (points)",
            "test rows only on / only off right",
            "PFLOP on",
            "PFLOP off",
        ],
        [[a, b, f"{c:+.2f}", f"{d:+.2f}", e, f / 1e15, g / 1e15] for a, b, c, d, e, f, g in pairs],
    )
    mean_test = sum(p[3] for p in pairs) / len(pairs) if pairs else float("nan")
    worst_val = min((p[2] for p in pairs), default=float("nan"))
    ab = [r for r in rows if r["hp"]["learning_rate"] == 1e-4]
    first = args.data.split(",")[0]
    demo_rows = [r for r in ab if r["data"] == first and r["rules"] == "on"]
    demo_eval = sum(r["eval_flops"] for r in demo_rows)
    demo_total = sum(r["train_flops"] + r["eval_flops"] for r in demo_rows)
    notes = [
        f"Rows per dataset: train {train_rows}, validation {eval_rows}, test {eval_rows} (stratified, seed {args.seed}); "
        f"max length {args.max_length} tokens; defaults lr 1e-4, 3 epochs, batch 32, warm-up 0.1, "
        f"{1} evaluation per epoch (train.evals_per_epoch); one training seed: an anecdote per pair, not a claim.",
        f"Worst validation difference (rules on − off): {worst_val:+.2f} points; mean test difference over "
        f"{len(pairs)} rung×dataset pairs: {mean_test:+.2f} points.",
        f"Evaluation share on `{first}` with the rules on, all rungs summed (one trial each, as the demo's search): "
        f"{100 * demo_eval / demo_total:.1f}% of {demo_total / 1e15:.3g} PFLOP."
        if demo_total
        else "no demo rows",
        "Intervals: Wilson 95% for accuracy. Paired comparison on the same test rows: counts of rows only one setting "
        "got right, exact binomial (McNemar) p-value.",
        "val acc last eval: the validation accuracy of the last evaluation, i.e. what judging the last weights "
        "(the old behaviour) would have reported; test accuracy is always of the kept (best) weights.",
        f"Whole benchmark: {elapsed:.0f} s.",
    ]
    name = "rules_ab-quick" if args.quick else "rules_ab"
    if args.data != DATASETS or args.rungs != RUNGS:  # a partial run does not overwrite the full one's tables
        name += (
            "-" + "-".join(args.data.split(",")) + ("" if args.rungs == RUNGS else "-" + args.rungs.replace(",", "-"))
        )
    write_results(
        name, "Rules on vs off, same seed", command, [runs_table, diffs], notes, {"rows": rows, "pairs": pairs}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
