"""The phases after training: the delivered student, int8 quantisation, latency, the one test
scoring, and the cost account.

Each phase is metered; what it cost is a record (the int8 run) or an appended fact in the ledger's
cost log (latency, test scoring), so a rerun reads it back and reports it once. :func:`account`
turns the records and facts into the report's phases, whose sum is the total: what ran, each piece
once, plus the work an interrupted call lost (labelled as such).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from advisor.climb.compaction import student_to_keep
from advisor.data.task import TaskData, column
from advisor.metering.cost import Meter
from advisor.models.loading import load_for_classification
from advisor.runkey import RunKey
from advisor.training.train import quiet_libraries
from advisor.types import Cost, RunResult
from advisor.verdicts.stats import metric_interval
from distill.compress import INT8_WEIGHTS, model_latency, quantize_int8, save_int8, state_dict_bytes
from distill.config import DistillConfig
from distill.records import Runs
from distill.teacher import TeacherOutputs, pass_cost
from distill.trainer import evaluate

Progress = Callable[[str], None]


class Delivered(NamedTuple):
    """The student to deliver, and what was measured of it."""

    best: RunResult
    student: Any
    tokenizer: Any
    quantized: RunResult | None
    latency: dict[str, dict[str, float]]
    sizes: dict[str, int]
    students: list[RunResult]  # with the delivered one's test scores, when scored
    controls: list[RunResult]


def deliver(
    runs: Runs,
    config: DistillConfig,
    data: TaskData,
    teacher: tuple[Any, Any],
    students: list[RunResult],
    controls: list[RunResult],
    work_dir: Path,
    score_test: bool,
    say: Progress,
) -> Delivered:
    """The best student by the metric, loaded, quantised when asked, timed against ``teacher`` (a
    model and its tokenizer) and, with ``score_test``, scored on the test split.

    Without a distilled student (the cheaper path, or a control the budget stopped before its seed's
    student started) the control is the student: the small model trained directly.
    """
    teacher_model, tokenizer = teacher
    best = student_to_keep(students, controls, config.criteria.metric)
    with quiet_libraries():
        student, student_tok = load_for_classification(str(runs.folder(work_dir, best)), tuple(data.label_names))
    student.eval()
    teacher_model.cpu()
    sizes = {"teacher": state_dict_bytes(teacher_model), "student": state_dict_bytes(student)}
    q, quantized_run = quantize_phase(runs, config, data, best, student, student_tok, work_dir, sizes, say)
    models = {"teacher": (teacher_model, tokenizer), "student": (student, student_tok)}
    if q is not None:
        models["student_int8"] = (q, student_tok)
    latency = measure_latency(runs, config, best.run_id, models, column(data.validation, "text"), say)
    if score_test:
        best, quantized_run = score_test_once(runs, config, data, best, quantized_run, models, say)
        students = [best if r.run_id == best.run_id else r for r in students]
        controls = [best if r.run_id == best.run_id else r for r in controls]
    return Delivered(best, student, student_tok, quantized_run, latency, sizes, students, controls)


def quantize_phase(
    runs: Runs,
    config: DistillConfig,
    data: TaskData,
    best: RunResult,
    student: Any,
    student_tok: Any,
    work_dir: Path,
    sizes: dict[str, int],
    say: Progress,
) -> tuple[Any, RunResult | None]:
    """The int8 form of the saved student, its validation metrics re-measured (once per saved student)."""
    if not config.compress.quantize:
        return None, None
    q = quantize_int8(student)
    sizes["student_int8"] = state_dict_bytes(q)
    run = runs.get("student-int8")
    if run is not None and run.candidate.parent_run == best.run_id:
        return q, run
    say("quantising the student's Linear layers to int8 and re-measuring it")
    folder = work_dir / "runs" / "student-int8"
    with Meter(config.metering, phase="quantize") as m:
        texts, labels = column(data.validation, "text"), column(data.validation, "label")
        metrics, preds = evaluate(
            q, student_tok, texts, labels, tuple(data.label_names), max_length=config.distill.max_length, meter=m
        )
    folder.mkdir(parents=True, exist_ok=True)
    save_int8(q, folder / INT8_WEIGHTS)
    run = runs.put(
        RunResult(
            key=RunKey("quantized"),
            candidate=dataclasses.replace(best.candidate, name=f"{best.run_id}-int8", parent_run=best.run_id),
            hyperparameters={"quantization": "dynamic int8, nn.Linear"},
            status="ok",
            cost=m.cost,
            artifact=str((folder / INT8_WEIGHTS).relative_to(work_dir)),
            metrics=metrics,
            val_predictions=preds,
            details={"size_bytes": sizes["student_int8"]},
        )
    )
    return q, run


def measure_latency(
    runs: Runs,
    config: DistillConfig,
    saved: str,
    models: Mapping[str, tuple[Any, Any]],
    texts: Sequence[str],
    say: Progress,
) -> dict[str, dict[str, float]]:
    """Batch-1 CPU latency of each model on validation texts, measured once per saved student.

    ``models``: name -> (model, tokenizer). The values are kept in the ledger's metadata, the
    measurement's cost in its cost log.
    """
    recorded = runs.meta("latency")
    if recorded is not None and recorded.get("saved_run") == saved and set(recorded["latency"]) == set(models):
        return recorded["latency"]
    n = config.compress.latency_repeats
    say(f"measuring CPU latency (batch 1, p50/p95 over {n} calls)")
    with Meter(config.metering, phase="latency") as m:
        latency = {
            name: model_latency(model, tok, texts[:64], config.distill.max_length, n)
            for name, (model, tok) in models.items()
        }
    runs.log_cost("latency", m.cost, saved_run=saved)
    runs.set_meta("latency", {"saved_run": saved, "latency": latency})
    return latency


def score_test_once(
    runs: Runs,
    config: DistillConfig,
    data: TaskData,
    best: RunResult,
    quantized: RunResult | None,
    models: Mapping[str, tuple[Any, Any]],
    say: Progress,
) -> tuple[RunResult, RunResult | None]:
    """Score the test split once, for the delivered student and its int8 form; never to choose.

    The scores (with their intervals) are kept in the ledger's metadata and read back on a rerun.
    Returns the two records with ``test_metrics``, ``test_predictions`` and ``intervals["test"]``.
    """
    forms = {"student": best, **({"student_int8": quantized} if quantized is not None else {})}
    recorded = runs.meta("test") or {}
    if recorded.get("saved_run") != best.run_id or set(recorded.get("forms", {})) != set(forms):
        texts, labels = column(data.test, "text"), column(data.test, "label")
        say(f"scoring the test split ({len(texts)} rows) once, for the delivered student")
        scored: dict[str, Any] = {}
        with Meter(config.metering, phase="test") as m:
            for name in forms:
                model, tok = models[name]
                metrics, preds = evaluate(
                    model, tok, texts, labels, tuple(data.label_names), max_length=config.distill.max_length, meter=m
                )
                level, k = config.criteria.confidence, len(data.label_names)
                intervals = {key: metric_interval(key, labels, preds, k, level).to_dict() for key in metrics}
                scored[name] = {"metrics": metrics, "predictions": list(preds), "intervals": intervals}
        runs.log_cost("test", m.cost, saved_run=best.run_id)
        recorded = {"saved_run": best.run_id, "forms": scored}
        runs.set_meta("test", recorded)

    def with_test(run: RunResult, name: str) -> RunResult:
        got = recorded["forms"][name]
        return dataclasses.replace(
            run,
            test_metrics=got["metrics"],
            test_predictions=tuple(got["predictions"]),
            intervals={**run.intervals, "test": got["intervals"]},
        )

    return with_test(best, "student"), with_test(quantized, "student_int8") if quantized is not None else None


@dataclass(frozen=True)
class Account:
    """The report's cost figures: phases (summed into the total), notes, costs shown but not counted."""

    phases: dict[str, Cost]
    notes: dict[str, str]
    reused: dict[str, Cost]
    lost: tuple[dict[str, Any], ...]


def account(
    runs: Runs,
    teacher: RunResult,
    students: Sequence[RunResult],
    controls: Sequence[RunResult],
    quantized: RunResult | None,
    outputs: TeacherOutputs | None,
) -> Account:
    """Every phase's cost, each spent once and counted once.

    A cache of teacher logits made by this folder's own pass (in its cost log) is counted at the
    cost of that pass, whether this call ran it or read it back; one another run made (a shared
    ``cache_dir``) is shown at its recorded cost but left out of the total: it was spent, and is
    counted, there. Work lost to a kill or a crash is a phase of its own, ``lost``.
    """
    phases: dict[str, Cost] = {"teacher": teacher.cost}
    notes: dict[str, str] = {}
    reused: dict[str, Cost] = {}
    made_here = runs.spent("teacher_logits")
    if made_here is not None:
        phases["teacher_logits"] = made_here
        if outputs is not None and outputs.cache_hit:
            notes["teacher_logits"] = "read from the cache: the cost of the pass that made it, counted once"
    elif outputs is not None and outputs.cache_hit:
        made = pass_cost(outputs)
        reused["teacher_logits"] = made if made is not None else Cost()
        notes["teacher_logits"] = "read from a cache another run made: its cost is counted there, not in this total" + (
            "" if made is not None else " (and was not recorded beside the cache)"
        )
    if controls:
        phases["control"] = sum((r.cost for r in controls), Cost())
    phases["distill"] = sum((r.cost for r in students), Cost())
    if quantized is not None:
        phases["quantize"] = quantized.cost
    for phase in ("test", "latency"):
        spent = runs.spent(phase)
        if spent is not None:
            phases[phase] = spent
    lost = tuple(runs.costs("lost", "lost"))
    if lost:
        phases["lost"] = sum((Cost.from_dict(f["cost"]) for f in lost), Cost())
        notes["lost"] = "; ".join(f"{f['run']} stopped at {f['where']}" for f in lost)
    return Account(phases, notes, reused, lost)
