"""Does the teacher earn its name? Students against their no-teacher control, over seeds, with a transfer set.

Issue 22's measurement. For each dataset and seed, the training rows are split (stratified, by
the seed) into a labelled part and a transfer set whose labels are withheld. On the labelled part
only, two teachers are fine-tuned (metered): a same-family one (MiniLM-L6, the student's
vocabulary) and a stronger cross-family one (mpnet-base, its own tokenizer). The student
(MiniLM-L3, a pre-trained checkpoint) is then trained three ways from the same initialisation and
seed: on the labels alone (the control, the cheap path), and distilled from each teacher on the
labelled rows plus the teacher's logits on the transfer set (which the control cannot use). With
``--augment N`` a further arm replaces the withheld texts by N perturbed copies of each labelled text
(``distill.augment``), the stronger teacher's logits on them: what a user without unlabelled text gets.

Reported per seed: test accuracy of every model, each distilled student against the control as a
paired bootstrap interval on the same test rows (``advisor.verdicts.stats.paired_gain``, with McNemar's
p), the decide-first check (teacher against control on validation, ``distill.decide``), and the
compute each arm spent (teacher fine-tune, teacher logits, student training; FLOPs analytic, time
measured). Pooled over seeds: the paired interval over all (seed, test row) pairs, and a t interval
over the per-seed differences (seeds are few: read it as wide).

    python benchmarks/distill_transfer.py --data spamassassin,uncertainty --labelled 500 --unlabeled 2000 --seeds 0,1,2
    python benchmarks/distill_transfer.py --quick      # the smallest run that exercises every arm

The per-seed table is appended row by row to ``<out>/distill_transfer-<slugs>.jsonl`` and written
as ``.md`` / ``.json`` at the end (``benchmarks/results/`` by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    add_distill_options,
    benchmark_parser,
    data_slug,
    fixed_split,
    markdown_table,
    open_results,
    run_cli,
    say,
)

#: distilled arm -> (the option naming its teacher, whether it learns from the withheld transfer set);
#: "kd-augment" runs with --augment N only: the strong teacher, N perturbed copies of each labelled
#: text instead of the withheld texts (``distill.augment``)
ARMS = {
    "kd-same-family": ("same_teacher", True),
    "kd-cross-family": ("strong_teacher", True),
    "kd-augment": ("strong_teacher", False),
}


def build_parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, "spamassassin,uncertainty", "comma-separated built-in names or files")
    p.add_argument("--student", default="minilm-l3", help="the student checkpoint (offline rung or folder)")
    p.add_argument("--same-teacher", default="minilm-l6", help="teacher of the student's family (same vocabulary)")
    p.add_argument("--strong-teacher", default="mpnet-base", help="stronger teacher of another family")
    p.add_argument("--labelled", type=int, default=500, help="training rows that keep their labels")
    p.add_argument("--unlabeled", type=int, default=2000, help="training rows whose labels are withheld (capped)")
    p.add_argument("--eval-rows", type=int, default=300, help="validation and test rows each (fixed over seeds)")
    p.add_argument(
        "--arms", default=None, help=f"comma-separated distilled arms to run (default all: {', '.join(ARMS)})"
    )
    p.add_argument("--augment", type=int, default=0, help="also the kd-augment arm, with N copies per labelled text")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 epoch, 32 tokens: proves every arm runs")
    add_distill_options(p, seeds="0,1,2")  # each seed draws its own labelled / withheld split
    return p


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    args.datasets = [d for d in args.data.split(",") if d]
    args.slugs = [data_slug(d) for d in args.datasets]  # a missing file fails before any training
    if args.quick:
        args.labelled, args.unlabeled, args.eval_rows, args.max_length = 40, 40, 40, 32
        args.teacher_epochs = args.epochs = 1.0
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    unknown = set(args.arms.split(",")) - set(ARMS) if args.arms else set()
    if unknown:
        raise SystemExit(f"error: --arms: unknown arm(s) {', '.join(sorted(unknown))}; choose from {', '.join(ARMS)}")
    return args


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    quick = "-quick" if args.quick else ""
    only = f"-{'_'.join(args.arms.split(','))}" if args.arms else ""  # a subset never overwrites the full run
    name = f"distill_transfer-{'_'.join(args.slugs)}{only}{quick}"
    return (
        name,
        f"Distillation with a transfer set on {', '.join(args.slugs)}: students against the no-teacher control"
        + (" (quick)" if args.quick else ""),
    )


def _source(name: str) -> str:
    from advisor.models.sources import resolve_source
    from advisor.offline.builtin_models import BUILTIN_SOURCES

    return str(resolve_source(f"pypi:{name}" if f"pypi:{name}" in BUILTIN_SOURCES else name, progress=say))


def withhold(data: Any, labelled: int, unlabeled: int, seed: int) -> tuple[Any, list[str]]:
    """``data`` with ``labelled`` training rows (stratified, by ``seed``) and the texts of up to
    ``unlabeled`` of the rest, their labels withheld (the transfer set)."""
    from sklearn.model_selection import train_test_split

    idx = list(range(data.train.num_rows))
    keep, rest = train_test_split(idx, train_size=labelled, stratify=data.train["label"], random_state=seed)
    texts = list(data.train.select(sorted(rest))["text"])[:unlabeled]
    return dataclasses.replace(data, train=data.train.select(sorted(keep))), texts


def _config(
    args: argparse.Namespace, teacher: str, student: str, seed: int, work: Path, control: bool, augment: int = 0
) -> Any:
    from distill.config import build_distill_config

    return build_distill_config(
        extra={
            "teacher": teacher,
            "teacher_train": {"epochs": args.teacher_epochs, "max_length": args.max_length, "seed": seed},
            "student": {"checkpoint": student},
            "distill": {
                "epochs": args.epochs,
                "max_length": args.max_length,
                "seeds": [seed],
                "control": control,
                "augment": augment,
            },  # fmt: skip
            "compress": {"latency_repeats": 1},  # latency is not this benchmark's question
            "metering": {"codecarbon": False},
            "out": str(work),
        }
    )


def test_predictions(run: Any, work: Path, data: Any, max_length: int) -> tuple[int, ...]:
    """The saved model's predicted label per test row (the pipeline keeps validation predictions only)."""
    from advisor.models.loading import load_for_classification
    from distill.trainer import evaluate

    model, tok = load_for_classification(str(work / str(run.artifact)), tuple(data.label_names))
    _, preds = evaluate(
        model.eval(), tok, list(data.test["text"]), list(data.test["label"]), data.label_names, max_length=max_length
    )
    return preds


def teacher_test_predictions(teacher: Any, tok: Any, data: Any, max_length: int) -> tuple[int, ...]:
    """The (fine-tuned) teacher's predicted label per test row: ``distill`` scores the test split for
    the delivered student only; this benchmark compares every arm on it."""
    from distill.trainer import evaluate

    texts, labels = list(data.test["text"]), list(data.test["label"])
    return evaluate(teacher.eval(), tok, texts, labels, data.label_names, max_length=max_length)[1]


def _accuracy(preds: Any, labels: Any) -> float:
    return sum(int(p == y) for p, y in zip(preds, labels, strict=True)) / len(labels)


def arms(args: argparse.Namespace) -> list[str]:
    """The distilled arms this run trains: those ``--arms`` names (all by default), kd-augment only
    with ``--augment``."""
    wanted = set(args.arms.split(",")) if args.arms else set(ARMS)
    return [a for a in ARMS if a in wanted and (a != "kd-augment" or args.augment > 0)]


def one_seed(args: argparse.Namespace, dataset: str, data: Any, seed: int, work: Path) -> dict[str, Any]:
    """Both teachers, the control and both distilled students on one seed's split; one table row."""
    from advisor.verdicts.stats import paired_gain
    from distill.decide import teacher_vs_control
    from distill.pipeline import distill_models
    from distill.teacher import load_teacher

    seeded, transfer = withhold(data, args.labelled, args.unlabeled, seed)
    labels = list(data.test["label"])
    k = len(data.label_names)
    row: dict[str, Any] = {
        "dataset": dataset, "seed": seed, "labelled": seeded.train.num_rows, "unlabeled": len(transfer),
        "test_rows": len(labels), "arms": {},
    }  # fmt: skip
    control_run, control_preds = None, None
    for arm in arms(args):
        option, withheld = ARMS[arm]
        name = getattr(args, option)
        say(f"== {dataset} seed {seed}: {arm} (teacher {name}, fine-tuned on the {args.labelled} labelled rows)")
        teacher, tok, _ = load_teacher(args.sources[name], tuple(data.label_names), seed=seed)  # its new head seeded
        folder = work / f"seed{seed}-{arm}"
        first = control_run is None  # the control is the same for every arm: trained once, with the first
        augment = 0 if withheld else args.augment
        config = _config(args, name, args.sources[args.student], seed, folder, control=first, augment=augment)
        started = time.perf_counter()
        report, _, _ = distill_models(
            teacher, tok, seeded, config, work_dir=folder, teacher_needs_finetune=True,
            unlabeled=transfer if withheld else (), progress=say,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if first:
            control_run = report.controls[0]
            control_preds = test_predictions(control_run, folder, data, args.max_length)
            row["arms"]["control"] = {
                "test_accuracy": _accuracy(control_preds, labels),
                "training": training(control_run),
                "cost": {"student": control_run.cost.to_dict()},
            }
        student = report.students[0]
        preds = test_predictions(student, folder, data, args.max_length)
        gain = paired_gain("accuracy", labels, preds, control_preds, k, 0.95, seed=seed)
        check = teacher_vs_control(
            report.teacher.val_predictions, control_run.val_predictions, list(data.validation["label"])
        )
        row["arms"][arm] = {
            "teacher": name,
            "teacher_test_accuracy": _accuracy(teacher_test_predictions(teacher, tok, data, args.max_length), labels),
            "test_accuracy": _accuracy(preds, labels),
            "training": training(student),
            "gain_over_control": gain.to_dict(),
            "transfer_rows": report.summary.get("unlabeled_rows", 0) + report.summary.get("augmented_rows", 0),
            "correct": [int(p == y) for p, y in zip(preds, labels, strict=True)],
            "teacher_vs_control": check.to_dict(),
            "cost": {
                "teacher_finetune": report.phases["teacher"].to_dict(),
                "teacher_logits": report.phases["teacher_logits"].to_dict(),
                "student": report.phases["distill"].to_dict(),
            },
            "wall_s": wall,
        }
    row["arms"]["control"]["correct"] = [int(p == y) for p, y in zip(control_preds, labels, strict=True)]
    return row


def pooled(rows: list[dict[str, Any]], arm: str) -> dict[str, Any]:
    """The arm's gain over the control pooled over seeds: a paired bootstrap over every (seed, test row)
    pair, and a t interval over the per-seed differences (Student 1908)."""
    import numpy as np
    from scipy import stats

    from advisor.verdicts.stats import paired_gain

    a = [c for r in rows for c in r["arms"][arm]["correct"]]
    b = [c for r in rows for c in r["arms"]["control"]["correct"]]
    # correctness as predictions against an all-ones truth: accuracy of a minus accuracy of b, paired by row
    gain = paired_gain("accuracy", [1] * len(a), a, b, 2, 0.95)
    per_seed = [r["arms"][arm]["gain_over_control"]["points"] for r in rows]
    mean = statistics.fmean(per_seed)
    if len(per_seed) > 1:
        half = stats.t.ppf(0.975, len(per_seed) - 1) * statistics.stdev(per_seed) / np.sqrt(len(per_seed))
    else:
        half = float("nan")
    return {"rows": gain.to_dict(), "seed_mean": mean, "seed_t_low": mean - half, "seed_t_high": mean + half}


def training(run: Any) -> dict[str, Any]:
    """How a student's training ended: its status, steps, and the health rule that stopped it, if one did."""
    rule = run.details.get("rule") or {}
    return {"status": run.status, "steps": run.details.get("steps"), "total_steps": run.details.get("total_steps"),
            "rule": rule.get("rule")}  # fmt: skip


def _acc(arm: dict[str, Any]) -> str:
    t = arm.get("training") or {}
    stopped = f" (stopped by {t['rule']} at step {t['steps']} of {t['total_steps']})" if t.get("rule") else ""
    return f"{arm['test_accuracy']:.3g}{stopped}"


def _pts(g: dict[str, Any]) -> str:
    return f"{g['points']:+.1f} [{g['low']:+.1f}, {g['high']:+.1f}], p={g['p_value']:.2g}"


def _flops(cost: dict[str, dict[str, Any]]) -> str:
    parts = {k: v["flops"] for k, v in cost.items()}
    return " + ".join(f"{k} {v:.2g}" for k, v in parts.items()) + f" = {sum(parts.values()):.3g}"


def tables(rows: list[dict[str, Any]]) -> list[str]:
    per_seed = []
    for r in rows:
        c = r["arms"]["control"]
        per_seed.append([r["dataset"], r["seed"], r["labelled"], 0, "control (labels only)", "—",
                         _acc(c), "—", "—", _flops(c["cost"])])  # fmt: skip
        for arm in [a for a in ARMS if a in r["arms"]]:
            x = r["arms"][arm]
            check = x["teacher_vs_control"]
            per_seed.append([
                r["dataset"], r["seed"], r["labelled"], x.get("transfer_rows", r["unlabeled"]), f"{arm} ({x['teacher']})",
                x["teacher_test_accuracy"], _acc(x), _pts(x["gain_over_control"]),
                f"{check['verdict']} ({100 * check['difference']:+.1f})", _flops(x["cost"]),
            ])  # fmt: skip
    headers = ["dataset", "seed", "labelled", "transfer rows", "arm", "teacher test acc", "student test acc",
               "gain over control, points [95% paired], McNemar p", "decide-first (val)", "FLOPs spent"]  # fmt: skip
    out = [markdown_table(headers, per_seed)]
    pooled_rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        for arm in [a for a in ARMS if a in mine[0]["arms"]]:
            p = pooled(mine, arm)
            pooled_rows.append([dataset, arm, len(mine), _pts(p["rows"]),
                                f"{p['seed_mean']:+.1f} [{p['seed_t_low']:+.1f}, {p['seed_t_high']:+.1f}]"])  # fmt: skip
    out.append(
        markdown_table(
            ["dataset", "arm", "seeds", "pooled paired gain (all seed x row pairs)", "mean of per-seed gains, 95% t"],
            pooled_rows,
        )
    )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return resolve_args(build_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("distill_transfer.py", argv, args, result_name, "seed's row")
    started = time.perf_counter()
    args.sources = {n: _source(n) for n in (args.student, args.same_teacher, args.strong_teacher)}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="greenladder-distill-transfer-") as tmp:
        for dataset, slug in zip(args.datasets, args.slugs, strict=True):
            # validation and test fixed over seeds; each seed draws its own labelled / withheld split
            data, _ = fixed_split(
                dataset, f"distill-transfer-{slug}", train_rows=args.labelled + args.unlabeled,
                eval_rows=args.eval_rows, seed=0, progress=say,
            )  # fmt: skip
            for seed in args.seed_list:
                rows.append(one_seed(args, dataset, data, seed, Path(tmp) / slug))
                writer.record(f"{dataset} seed {seed}", rows[-1])
                writer.show(f"{title}: after {dataset} seed {seed}", tables(rows))
    elapsed = time.perf_counter() - started
    notes = [
        f"Student {args.student} (pre-trained checkpoint, its own tokenizer); teachers {args.same_teacher} (same "
        f"family) and {args.strong_teacher} (cross-family), each fine-tuned on the labelled rows only for "
        f"{args.teacher_epochs:g} epochs. Students: {args.epochs:g} epochs, KD defaults of `distill` (alpha 0.5, "
        f"T 2), {args.max_length} tokens; the control is the same student, seed and initialisation on the labels alone.",
        "Transfer rows: texts the student learned from through the teacher's logits only (the withheld "
        "training texts; for kd-augment, perturbed copies of the labelled texts, `distill.augment`).",
        "Gains are on the test split (fixed over seeds); the decide-first column is the teacher against the control "
        "on validation (`distill.decide`). FLOPs analytic (the advisor's formulas), per phase.",
        f"Whole benchmark: {elapsed:.0f} s on {args.threads} thread(s).",
    ]
    writer.finish(title, tables(rows), notes, {"args": {k: v for k, v in vars(args).items()}, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
