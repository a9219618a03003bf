"""Render a DistillReport: JSON, Markdown, and the saved student's model card. No decisions here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from advisor.report.card import co2_eq_emissions
from advisor.types import Cost, RunResult
from advisor.verdicts.criteria import fmt_num

_PHASE_NAMES = {
    "teacher": "teacher (fine-tune if needed, validation)",
    "teacher_logits": "teacher logits (cached once)",
    "control": "no-teacher control (all seeds)",
    "distill": "distillation (all seeds)",
    "quantize": "int8 quantisation + re-evaluation",
    "test": "test split, scored once (delivered student)",
    "latency": "latency measurement",
    "lost": "lost to interruption (done again since)",
}
TEACHER_SAW_THE_ROWS = (
    "A teacher fine-tuned on this same file before `distill` has already seen the validation and test rows "
    "distill holds out: its scores, the retention and the verdict are then inflated. Fine-tune it on the "
    "train split only, or let `distill` fine-tune it (a teacher without a head is fine-tuned on train)."
)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _gain(g: Mapping[str, Any] | None) -> str:
    """A paired gain as ``+1.2 [-0.4, +2.9] pts, n=240 (McNemar p=0.21)``."""
    if not g:
        return "n/a"
    p = f", McNemar p={g['p_value']:.3g}" if g.get("p_value") is not None else ""
    note = "" if g["distinguishable"] else "; not distinguishable from 0"
    return f"{g['points']:+.1f} [{g['low']:+.1f}, {g['high']:+.1f}] pts, n={g['n']}{p}{note}"


def _interval(iv: Mapping[str, Any] | None) -> str:
    return "n/a" if not iv else f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]"


def verdict_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line per delivered form: its verdict, the floor's source and every reason (the CLI prints these)."""
    verdicts = summary.get("verdicts")
    if not verdicts:
        return [
            "no acceptance criteria were set (--target, --min-retention, --max-latency-ms, --max-size-mb): no verdict"
        ]
    return [
        f"{name}: {v['state'].upper()} ({v['floor_source']}): {'; '.join(v['reasons'])}" for name, v in verdicts.items()
    ]


def _per_unit(s: Mapping[str, Any]) -> str:
    units = s.get("gain_per_unit") or {}
    parts = []
    for key, unit, label in (("per_pflop", "PFLOP", "PFLOPs"), ("per_kwh", "kWh", "kWh")):
        u = units.get(key)
        if u is None:
            parts.append(f"per {unit}: n/a ({label} not measured)")
        else:
            parts.append(
                f"{fmt_num(u['value'])} [{fmt_num(u['low'])}, {fmt_num(u['high'])}] pts per {unit}, over the whole "
                f"distillation's {fmt_num(u['denominator'])} {label} ({u['provenance']})"
            )
    return "; ".join(parts)


def _cost_row(name: str, c: Cost, note: str = "") -> str:
    prov = c.provenance
    return (
        f"| {name} | {fmt_num(c.wall_s)} | {fmt_num(c.flops / 1e15)} ({prov.get('flops', '?')}) | "
        f"{fmt_num(c.energy_kwh * 1000)} ({prov.get('energy', '?')}) | {fmt_num(c.emissions_g)} | {note} |"
    )


def _headline(report: Any) -> list[str]:
    s = report.summary
    metric = s["metric"]
    lines = [f"- **Verdict** (criteria.metric {metric}, validation): " + " / ".join(verdict_lines(s))]
    lines.append(
        f"- **Retention** (student / teacher validation {metric}): {_pct(s.get('retention'))} "
        f"(teacher {_num(s.get('teacher_score'))}, student {_num(s.get('student_score'))})"
        + (f"; int8: {_pct(s.get('retention_int8'))}" if "retention_int8" in s else "")
    )
    seeds = s.get("gain_per_seed") or {}
    lines.append(
        "- **Gain over the no-teacher control** (same student, seed and data; paired bootstrap on the same "
        f"validation rows): {_gain(s.get('gain_over_control'))}"
        + (f" (per seed: {', '.join(f'{k}: {_gain(v)}' for k, v in seeds.items())})" if len(seeds) > 1 else "")
    )
    if len(seeds) > 1:
        lines.append(
            "  The delivered student is the best of the seeds on these rows, so its own gain is optimistic; "
            "the per-seed gains are not."
        )
    if s.get("gain_over_control"):
        lines.append(f"- **Gain per unit of compute**: {_per_unit(s)}")
    test = report.delivered.intervals.get("test", {}).get(metric)
    if test:
        lines.append(
            f"- **Test split** (scored once, for the delivered student): {metric} {_interval(test)}, n={test['n']}"
            + (
                f"; int8: {_interval(report.quantized.intervals['test'][metric])}"
                if report.quantized is not None and "test" in report.quantized.intervals
                else ""
            )
        )
    lines.append(
        f"- **Speed-up** at batch 1 (p50): {_num(s.get('speedup_p50_student'), '.2f')}x"
        + (f"; int8: {_num(s.get('speedup_p50_student_int8'), '.2f')}x" if "speedup_p50_student_int8" in s else "")
    )
    lines.append(
        f"- **Parameters**: teacher {s.get('params_teacher') or 0:,}, student {s.get('params_student') or 0:,}"
    )
    return lines


def _context(report: Any) -> list[str]:
    s = report.summary
    lines = []
    if s.get("teacher_vs_control_text"):
        lines.append(f"- **Does the teacher add anything?** {s['teacher_vs_control_text']}")
    if s.get("cheaper_path"):
        lines.append(
            "- **Cheaper path taken** (distill.decide_first): no distilled student was trained; the saved "
            "student is the control, the small model trained on the labels alone."
        )
    if s.get("augmented_rows"):
        lines.append(
            f"- **Augmented transfer set** (distill.augment): {s['augmented_rows']:,} perturbed copies of the "
            "labelled texts, learned from the teacher's logits only; the control cannot use them either."
        )
    if s.get("unlabeled_rows"):
        lines.append(
            f"- **Transfer set**: the student also learned from the teacher's logits on {s['unlabeled_rows']:,} "
            "unlabelled texts; the no-teacher control cannot use them (it trains on the labelled rows only)."
        )
    folder = s.get("folder")
    if folder:
        deleted = folder["deleted"]
        lines.append(
            f"- **What the folder holds**: {', '.join(folder['kept'])}; each model once. "
            + (
                f"Deleting the {len(deleted)} model(s) not delivered ({', '.join(deleted)}) freed "
                f"{fmt_num(folder['freed_mb'])} MB."
                if deleted
                else "Nothing was deleted."
            )
        )
    if not report.teacher.details.get("fine_tuned_here"):
        lines.append(f"- **A teacher trained on these rows?** {TEACHER_SAW_THE_ROWS}")
    return lines


def _models_table(report: Any) -> list[str]:
    s = report.summary
    metric, intervals, sizes = s["metric"], s.get("validation_intervals", {}), s.get("size_mb", {})
    lines = [
        "",
        f"## Models (validation, n={s.get('validation_rows')})",
        "",
        f"| model | params | size MB | {metric} [interval] | accuracy | macro-F1 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows: list[tuple[str, RunResult, str]] = [("teacher", report.teacher, "teacher")]
    rows += [(r.run_id, r, "student" if r.run_id == report.saved_run else "") for r in report.students]
    rows += [(r.run_id, r, "student" if r.run_id == report.saved_run else "") for r in report.controls]
    if report.quantized is not None:
        rows.append((report.quantized.run_id, report.quantized, "student_int8"))
    for name, run, key in rows:
        lat = report.latency.get(key, {}) if key else {}
        lines.append(
            f"| {name}{' (delivered)' if key == 'student' else ''} | {run.candidate.params_total or 0:,} | "
            f"{_num(sizes.get(key) if key else None, '.1f')} | {_interval(intervals.get(run.run_id))} | "
            f"{_num(run.metrics.get('accuracy'))} | {_num(run.metrics.get('macro_f1'))} | "
            f"{_num(lat.get('latency_ms_p50'), '.2f')} | {_num(lat.get('latency_ms_p95'), '.2f')} |"
        )
    if "student_onnx" in report.latency:
        onnx = report.latency["student_onnx"]
        lines.append(
            f"| student (ONNX, onnxruntime) | | | | | | {_num(onnx.get('latency_ms_p50'), '.2f')} | "
            f"{_num(onnx.get('latency_ms_p95'), '.2f')} |"
        )
    lines += [
        "",
        "Latency: batch-1 CPU calls on validation texts, tokenisation included (the advisor's definition); other "
        "work on the machine inflates it.",
        "",
        "Sizes are the weights in memory (int8 weights at their packed size). On disk: student "
        f"{_num(sizes.get('student_on_disk'), '.1f')} MB (weights {_num(sizes.get('student_weights_on_disk'), '.1f')} "
        f"MB), teacher weights {_num(sizes.get('teacher_on_disk'), '.1f')} MB.",
    ]
    return lines


def _cost_table(report: Any) -> list[str]:
    lines = [
        "",
        "## Compute per phase",
        "",
        "Each phase was spent once and is counted once; the total is their sum. A phase read back from the "
        "ledger or the cache on a rerun shows what it cost when it ran.",
        "",
        "| phase | wall s | PFLOPs (provenance) | Wh (provenance) | gCO2e | note |",
        "|---|---|---|---|---|---|",
    ]
    for key, cost in report.phases.items():
        lines.append(_cost_row(_PHASE_NAMES.get(key, key), cost, report.notes.get(key, "")))
    lines.append(_cost_row("**total**", report.total_cost))
    for key, cost in report.reused.items():
        lines.append(_cost_row(f"({_PHASE_NAMES.get(key, key)}: not in the total)", cost, report.notes.get(key, "")))
    return lines


def render_markdown(report: Any) -> str:
    """The human-readable report: headline, models table, latency, phases' compute."""
    s = report.summary
    lines = [
        "# Distillation report",
        "",
        f"Teacher `{report.teacher.candidate.source}` -> student `{report.saved_run}` "
        f"({s['seeds']} seed(s); students chosen and judged by validation {s['metric']}).",
        "",
        *_headline(report),
        *_context(report),
        *_models_table(report),
        *_cost_table(report),
    ]
    if "teacher_dir" in s:
        lines += [
            "",
            f"The teacher fine-tuned here is saved in {s['teacher_dir']}; pass it as --teacher to skip the fine-tune.",
        ]
    if "onnx" in s:
        lines += ["", f"ONNX export: {s['onnx']}"]
    return "\n".join(lines) + "\n"


def write_reports(report: Any, out: str | Path) -> tuple[Path, Path]:
    """Write ``distill_report.json`` and ``distill_report.md`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    j = out / "distill_report.json"
    j.write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    m = out / "distill_report.md"
    m.write_text(render_markdown(report), encoding="utf-8")
    return j, m


def _card_results(report: Any) -> list[str]:
    s = report.summary
    run, metric = report.delivered, s["metric"]
    test = run.intervals.get("test", {}).get(metric)
    lines = ["## Results", ""]
    if test:
        lines.append(f"- test {metric} {_interval(test)}, n={test['n']} (the test split, scored once, for this model)")
    elif run.test_metrics:
        lines.append(f"- test {metric} {run.test_metrics.get(metric, float('nan')):.4f}")
    lines += [
        f"- validation {metric}: student {_num(s.get('student_score'))}, teacher {_num(s.get('teacher_score'))}; "
        f"retention {_pct(s.get('retention'))}",
        f"- gain from distillation over the same student trained without the teacher (validation, paired): "
        f"{_gain(s.get('gain_over_control'))}",
        f"- CPU speed-up over the teacher at batch 1 (p50): {_num(s.get('speedup_p50_student'), '.2f')}x",
    ]
    for line in verdict_lines(s) if s.get("verdicts") else []:
        lines.append(f"- verdict: {line}")
    return lines


def model_card(report: Any, label_names: Sequence[str]) -> str:
    """README.md for the saved student: hub front matter (``co2_eq_emissions`` as the advisor writes it),
    what it is, how it was made, how well and at what cost."""
    s = report.summary
    run = report.delivered
    hp = run.hyperparameters
    total = report.total_cost
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["text-classification", "greenladder", "distillation"],
    }
    # the student cost everything the distillation spent, not only its own training run
    co2 = co2_eq_emissions(dataclasses.replace(run, cost=total), report.config.get("metering", {}))
    if co2 is not None:
        meta["co2_eq_emissions"] = co2
    int8 = s.get("student_int8")
    lost = report.phases.get("lost")
    how = (
        f"trained by knowledge distillation (alpha {hp['alpha']}, temperature {hp['temperature']}, "
        if run.candidate.kind == "distilled"
        else "trained on the labels alone, without the teacher (the teacher was not shown to add anything; "
    )
    return "\n".join(
        [
            "---",
            yaml.safe_dump(meta, sort_keys=False).rstrip(),
            "---",
            "",
            f"# Distilled student of `{report.teacher.candidate.source}`",
            "",
            f"A {run.candidate.layers}-layer student ({run.candidate.source}), {run.candidate.params_total:,} parameters, "
            f"{how}{hp['epochs']} epochs, lr {hp['learning_rate']}, seed {hp['seed']}).",
            "",
            f"Labels: {', '.join(label_names)}.",
            "",
            *_card_results(report),
            "",
            "## Compute used to make it",
            "",
            f"{fmt_num(total.wall_s)} s, {fmt_num(total.flops / 1e15)} PFLOPs ({total.provenance.get('flops', '?')}), "
            f"{fmt_num(total.energy_kwh * 1000)} Wh ({total.provenance.get('energy', '?')}), "
            f"{fmt_num(total.emissions_g)} gCO2e"
            + (f", of which {fmt_num(lost.flops / 1e15)} PFLOPs were lost to an interruption" if lost else "")
            + "; per phase in distill_report.md.",
            "",
            "## How to load it",
            "",
            "```python",
            "from transformers import pipeline",
            'classifier = pipeline("text-classification", model="path/to/this/folder")',
            "```",
            *(
                [
                    "",
                    f"The int8 student ({int8.rsplit('/', 1)[-1]}, dynamic quantisation of the Linear layers):",
                    "",
                    "```python",
                    "from distill.compress import load_int8",
                    'model = load_int8("path/to/this/folder", "path/to/this/folder/student_int8.pt")',
                    "```",
                ]
                if int8
                else []
            ),
            "",
            "## Limitations",
            "",
            "Measured on one dataset split; differences under ~2 points between students may be seed noise.",
            *([] if report.teacher.details.get("fine_tuned_here") else ["", TEACHER_SAW_THE_ROWS]),
            "",
        ]
    )
