"""Distillation: a fine-tuned MiniLM-L6 teacher into a half-depth student and into MiniLM-L3.

One teacher is fine-tuned once (metered) and distilled into two students through the distill
package's Python API (``distill.distill_models``): its own layers 0, 2, 4 (half depth, as
DistilBERT did), and the smaller ladder checkpoint MiniLM-L3 (same vocabulary). Each student is
also trained without the teacher (same seed, budget and initialisation) as the control.

Reported per student: retention (student test accuracy / teacher's), fp32 and int8 CPU speed-ups
at batch 1 (teacher and students interleaved call by call, median of the paired ratios), the gain of KD
over the no-teacher control, and the compute saved by caching the teacher's logits: without the
cache the teacher would run over the training set in every epoch of every seed; with it, once.

    python benchmarks/distill_bench.py --quick
    python benchmarks/distill_bench.py --quick --data "my data/reviews.csv" --out /tmp/results

Issue 22's question (does the teacher add anything over the student trained without it, over
seeds, with a transfer set and a stronger cross-family teacher?) is ``distill_transfer.py``'s.

Each student's row is printed and appended to ``<out>/<name>.jsonl`` as soon as it is measured;
``<name>`` comes from the data's slug (file stem + content hash), never from the raw path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    add_distill_options,
    benchmark_parser,
    data_slug,
    markdown_table,
    median,
    open_results,
    run_cli,
    say,
    split_for,
)


def build_parser() -> argparse.ArgumentParser:
    p = benchmark_parser(__doc__, "bbc-news", "built-in dataset name, a file or a folder")
    p.add_argument("--teacher", default="minilm-l6", help="ladder rung (or folder) fine-tuned as the teacher")
    p.add_argument("--small", default="minilm-l3", help="smaller ladder checkpoint used as the second student")
    p.add_argument("--train-rows", type=int, default=None, help="training rows (default 800; quick 300)")
    p.add_argument("--eval-rows", type=int, default=None, help="validation and test rows each (default 300; quick 150)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved batches of 32 for throughput (median taken)")
    p.add_argument("--repeats", type=int, default=100, help="batch-1 texts timed per model, interleaved")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--quick", action="store_true", help="small subset, 64 tokens, 2 epochs: a few minutes")
    add_distill_options(p, seeds="0")  # student seeds
    return p


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    args.slug = data_slug(args.data)  # before anything is trained: a missing file fails here
    if args.quick:
        args.train_rows = args.train_rows or 300
        args.eval_rows = args.eval_rows or 150
        args.max_length = 64
        args.teacher_epochs = 2.0 if args.teacher_epochs == 3.0 else args.teacher_epochs
        args.epochs = 2.0 if args.epochs == 3.0 else args.epochs
        args.rounds = min(args.rounds, 3)
        args.repeats = min(args.repeats, 60)
    else:
        # sized to finish inside 30 minutes on 2 cores: the whole of bbc-news at 128 tokens does not
        args.train_rows = args.train_rows or 800
        args.eval_rows = args.eval_rows or 300
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    return args


def _source(name: str) -> str:
    from advisor.models.sources import resolve_source
    from advisor.offline.builtin_models import BUILTIN_SOURCES

    return str(resolve_source(f"pypi:{name}" if f"pypi:{name}" in BUILTIN_SOURCES else name, progress=say))


def _config(args: argparse.Namespace, folder: Path, work: Path, student: dict[str, Any]) -> Any:
    from distill.config import build_distill_config

    return build_distill_config(
        extra={
            "teacher": args.teacher,
            "data": {"source": str(folder), "split_seed": args.seed},
            "teacher_train": {"epochs": args.teacher_epochs, "max_length": args.max_length, "seed": args.seed},
            "student": student,
            "distill": {"epochs": args.epochs, "max_length": args.max_length, "seeds": args.seed_list},
            # the pipeline's own latency pass is kept minimal: this script measures the models interleaved
            "compress": {"quantize": True, "latency_repeats": 1},
            "out": str(work),
            "cache_dir": str(work / "cache"),
        }
    )


def interleaved_latency(
    models: dict[str, Any], tokenizers: dict[str, Any], texts: list[str], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Batch-1 latency with the models interleaved call by call, and batch-32 throughput likewise.

    On a shared machine a burst of load slows whichever model is running; timing the models on the
    same text one right after the other (order rotating) spreads such bursts evenly, and the
    speed-up is taken as the median of the per-text ratios (paired), not a ratio of medians.
    """
    import torch

    def batch_of(name: str, rows: list[str]) -> Any:
        # tokenised ahead of the timing: this table times the models alone (each with its own tokenizer)
        return tokenizers[name](rows, truncation=True, max_length=args.max_length, padding=True, return_tensors="pt")

    names = list(models)
    times: dict[str, list[float]] = {k: [] for k in names}
    warmup = 3
    with torch.inference_mode():
        for i in range(warmup + args.repeats):
            singles = {name: batch_of(name, [texts[i % len(texts)]]) for name in names}
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                models[name](**singles[name])
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1000.0)
        big = [[texts[(b * 32 + j) % len(texts)] for j in range(32)] for b in range(args.rounds + 1)]
        for name in names:
            models[name](**batch_of(name, big[0]))
        batch_s: dict[str, list[float]] = {k: [] for k in names}
        for b, rows in enumerate(big[1:]):
            shift = b % len(names)
            encoded = {name: batch_of(name, rows) for name in names}
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                models[name](**encoded[name])
                batch_s[name].append(time.perf_counter() - start)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        out[name] = {
            "p50_ms": median(times[name]),
            "throughput_per_s": 32 / median(batch_s[name]),
            "speedup_paired": median([t / s for t, s in zip(times["teacher"], times[name], strict=True)]),
        }
    return out


def test_scores(
    report: Any, work: Path, data: Any, teacher: Any, tok: Any, best: Any, best_tok: Any, max_length: int
) -> dict[str, Any]:
    """Test accuracy of the teacher, the students and controls (means over seeds) and the int8 student.

    ``distill`` scores the test split once, for the delivered student; this benchmark compares every
    model on it, so it scores them here.
    """
    from statistics import fmean

    from advisor.models.loading import load_for_classification
    from distill.compress import quantize_int8
    from distill.trainer import evaluate

    texts, labels, names = list(data.test["text"]), list(data.test["label"]), tuple(data.label_names)

    def acc(model: Any, tokenizer: Any) -> float:
        return evaluate(model.eval(), tokenizer, texts, labels, names, max_length=max_length)[0]["accuracy"]

    def mean(runs: Any) -> float | None:
        loaded = [load_for_classification(str(work / str(r.artifact)), names) for r in runs]
        return fmean(acc(m, t) for m, t in loaded) if loaded else None

    out = {"teacher": acc(teacher.cpu(), tok), "student": mean(report.students), "control": mean(report.controls)}
    out["student_int8"] = acc(quantize_int8(best), best_tok)
    return out


def student_row(
    label: str, report: Any, t: dict[str, Any], teacher_pass_flops: float, lat: dict[str, dict[str, float]],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    s = report.summary
    t_acc = t["teacher"]
    distill_flops = report.phases["distill"].flops
    passes_avoided = args.epochs * len(args.seed_list) - 1  # the cache runs the teacher once instead
    without_cache = teacher_pass_flops * args.epochs * len(args.seed_list) + distill_flops
    with_cache = teacher_pass_flops + distill_flops
    gain = t["student"] - t["control"] if t["student"] is not None and t["control"] is not None else None
    return {
        "student": label,
        "params": s["params_student"],
        "teacher_test_accuracy": t_acc,
        "student_test_accuracy": t["student"],
        "control_test_accuracy": t["control"],
        "int8_test_accuracy": t["student_int8"],
        "retention": t["student"] / t_acc if t["student"] is not None and t_acc else None,
        "retention_int8": t["student_int8"] / t_acc if t_acc else None,
        "kd_gain_points": 100 * gain if gain is not None else None,
        "speedup_fp32": lat["student"]["speedup_paired"],
        "speedup_int8": lat["student_int8"]["speedup_paired"],
        "throughput_speedup_fp32": lat["student"]["throughput_per_s"] / lat["teacher"]["throughput_per_s"],
        "throughput_speedup_int8": lat["student_int8"]["throughput_per_s"] / lat["teacher"]["throughput_per_s"],
        "latency": lat,
        "teacher_pass_flops": teacher_pass_flops,
        "distill_flops": distill_flops,
        "distill_compute_with_cache": with_cache,
        "distill_compute_without_cache": without_cache,
        "cache_saving": (without_cache - with_cache) / without_cache if without_cache else None,
        "teacher_passes_avoided": passes_avoided,
        "distill_kwh": report.phases["distill"].energy_kwh,
        "phases": {k: v.to_dict() for k, v in report.phases.items()},
        "summary": dict(s),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return resolve_args(build_parser().parse_args(argv))


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    """File name and title of the results, from the data's slug."""
    quick = "-quick" if args.quick else ""
    return f"distill-{args.slug}{quick}", f"Distillation on {args.slug}" + (" (quick)" if args.quick else "")


def split_name(args: argparse.Namespace) -> str:
    """The name of the temporary folder holding the split (see ``fixed_split``)."""
    return f"distill-{args.slug}"


def tables(rows: list[dict[str, Any]]) -> list[str]:
    """The students' table, the targets (once the half-depth student is in) and the latency table."""
    headers = [
        "student",
        "params",
        "test acc (teacher → student)",
        "retention",
        "fp32 speed-up (p50, batch 1)",
        "int8 retention",
        "int8 speed-up",
        "no-teacher control acc",
        "KD gain (points)",
        "teacher-logit cache saves",
    ]
    body = [
        [
            r["student"],
            r["params"],
            f"{r['teacher_test_accuracy']:.3f} → {r['student_test_accuracy']:.3f}",
            r["retention"],
            r["speedup_fp32"],
            r["retention_int8"],
            r["speedup_int8"],
            r["control_test_accuracy"],
            r["kd_gain_points"],
            f"{100 * r['cache_saving']:.0f}% of {r['distill_compute_without_cache']:.3g} FLOPs",
        ]
        for r in rows
    ]
    out = [markdown_table(headers, body)]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    if rows:
        half = rows[0]
        targets = [
            ["half-depth retention ≥ 0.98", half["retention"], verdict(half["retention"] >= 0.98)],
            ["half-depth fp32 speed-up ≥ 1.9x", half["speedup_fp32"], verdict(half["speedup_fp32"] >= 1.9)],
            ["int8 retention ≥ 0.97", half["retention_int8"], verdict((half["retention_int8"] or 0) >= 0.97)],
            ["int8 speed-up ≥ 3x", half["speedup_int8"], verdict(half["speedup_int8"] >= 3.0)],
            ["teacher-logit caching saves ≥ 35%", half["cache_saving"], verdict((half["cache_saving"] or 0) >= 0.35)],
            ["KD beats the no-teacher control", half["kd_gain_points"], verdict((half["kd_gain_points"] or 0) > 0)],
        ]
        out.append(markdown_table(["target (issue 7), half-depth student", "measured", "verdict"], targets))
    lat_rows = [
        [r["student"], m, v["p50_ms"], v["speedup_paired"], v["throughput_per_s"]]
        for r in rows
        for m, v in r["latency"].items()
    ]
    out.append(
        markdown_table(
            ["student run", "model", "p50 ms, batch 1", "speed-up (median of paired ratios)", "texts/s at batch 32"],
            lat_rows,
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("distill_bench.py", argv, args, result_name, "student's row")
    import torch

    from distill.compress import quantize_int8
    from distill.pipeline import distill_models
    from distill.teacher import load_teacher

    started = time.perf_counter()
    data, folder = split_for(args, split_name(args))
    small = _source(args.small)
    teacher, tok, _ = load_teacher(_source(args.teacher), tuple(data.label_names))  # a new head, seeded
    rows = []
    teacher_pass_flops = 0.0
    teacher_cost = None
    with tempfile.TemporaryDirectory(prefix="greenladder-distill-") as tmp:
        work = Path(tmp)
        students = [("half depth (teacher layers 0,2,4)", {}), (f"{args.small} checkpoint", {"checkpoint": small})]
        for i, (label, student) in enumerate(students):
            say(f"== student: {label}")
            config = _config(args, folder, work, student)
            # the first call fine-tunes the teacher in place; the second reuses it and its cached logits
            report, best, best_tok = distill_models(
                teacher, tok, data, config, work_dir=work / f"student{i}", teacher_needs_finetune=(i == 0), progress=say
            )
            if i == 0:
                teacher_pass_flops = report.phases["teacher_logits"].flops
                teacher_cost = report.phases.get("teacher")
            say("latency: teacher, student and int8 student interleaved call by call")
            models = {
                "teacher": teacher.cpu().eval(),
                "student": best.cpu().eval(),
                "student_int8": quantize_int8(best),
            }
            texts = list(data.test["text"])[:64]
            tokenizers = {"teacher": tok, "student": best_tok, "student_int8": best_tok}
            with torch.inference_mode():
                lat = interleaved_latency(models, tokenizers, texts, args)
            scores = test_scores(report, work / f"student{i}", data, teacher, tok, best, best_tok, args.max_length)
            rows.append(student_row(label, report, scores, teacher_pass_flops, lat, args))
            writer.record(label, rows[-1])
            writer.show(f"{title}: after {label}", tables(rows))
    elapsed = time.perf_counter() - started

    tcost = teacher_cost.to_dict() if teacher_cost is not None else {}
    notes = [
        f"Data: `{args.data}`, train {data.train.num_rows} / validation {data.validation.num_rows} / test "
        f"{data.test.num_rows} rows (stratified, split seed {args.seed}), {args.max_length} tokens.",
        f"Teacher: {args.teacher} fine-tuned here for {args.teacher_epochs:g} epochs and evaluated "
        f"({tcost.get('flops', 0):.3g} FLOPs, {tcost.get('wall_s', 0):.0f} s), once, shared by both students. "
        f"Students: {args.epochs:g} epochs, seeds {args.seed_list}, KD defaults of `distill` (alpha 0.5, T 2).",
        "Accuracies are on the test split; retention = student ÷ teacher; KD gain = student − no-teacher control "
        "(same seed, initialisation and budget). With a test split this small one example is "
        f"{100 / max(1, data.test.num_rows):.2f} points: read sub-point differences as noise.",
        "Speed-ups at batch 1 on the CPU (the serving case): the teacher and the students run on the same test "
        f"text one right after the other (order rotating), {args.repeats} texts; the speed-up is the median of the "
        f"per-text ratios. Throughput: median of {args.rounds} interleaved batches of 32. int8 = dynamic "
        "quantisation of the student's Linear layers.",
        "Cache saving: without the cache the teacher runs over the training set in every epoch of every seed "
        f"({args.epochs:g} × {len(args.seed_list)} passes), with it once; the share is of teacher passes + student "
        "training FLOPs (analytic). The second student reuses the first one's cached logits (same teacher and texts).",
        f"Whole benchmark: {elapsed:.0f} s.",
    ]
    raw = {"args": vars(args), "rows": rows, "teacher_cost": tcost, "elapsed_s": elapsed}
    writer.finish(title, tables(rows), notes, raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
