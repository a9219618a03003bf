"""Render a DistillReport: JSON, Markdown, and the saved student's model card. No decisions here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from advisor.card import co2_eq_emissions
from advisor.criteria import fmt_num
from advisor.types import Cost, RunResult

_PHASE_NAMES = {
    "teacher": "teacher (fine-tune if needed, evaluation)",
    "teacher_logits": "teacher logits (cached once)",
    "distill": "distillation (all seeds)",
    "control": "no-teacher control (all seeds)",
    "quantize": "int8 quantisation + re-evaluation",
    "latency": "latency measurement",
}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} pts"


def _cost_row(name: str, c: Cost) -> str:
    prov = c.provenance
    return (
        f"| {name} | {fmt_num(c.wall_s)} | {fmt_num(c.flops / 1e15)} ({prov.get('flops', '?')}) | "
        f"{fmt_num(c.energy_kwh * 1000)} ({prov.get('energy', '?')}) | {fmt_num(c.emissions_g)} |"
    )


def render_markdown(report: Any) -> str:
    """The human-readable report: headline, models table, latency, phases' compute."""
    s = report.summary
    lines = [
        "# Distillation report",
        "",
        f"Teacher `{report.teacher.candidate.source}` -> student `{report.saved_run}` "
        f"({s['seeds']} seed(s); metric: test {s['metric']}).",
        "",
        f"- **Retention** (student / teacher {s['metric']}): {_pct(s.get('retention_accuracy'))}"
        + (f"; int8: {_pct(s.get('retention_int8_accuracy'))}" if "retention_int8_accuracy" in s else ""),
        f"- **Gain over the no-teacher control** (same student, seeds, budget): {_signed(s.get('gain_over_control_accuracy'))}"
        + (
            f" (per seed: {', '.join(f'{k}: {_signed(v)}' for k, v in s['gain_per_seed'].items())})"
            if s.get("gain_per_seed")
            else ""
        ),
        f"- **Speed-up** at batch 1 (p50): {_num(s.get('speedup_p50_student'), '.2f')}x"
        + (f"; int8: {_num(s.get('speedup_p50_student_int8'), '.2f')}x" if "speedup_p50_student_int8" in s else ""),
        f"- **Parameters**: teacher {s.get('params_teacher'):,}, student {s.get('params_student'):,}",
    ]
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
    lines += [
        "",
        "## Models (test split)",
        "",
        "| model | params | size MB | accuracy | macro-F1 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    sizes = s.get("size_mb", {})
    rows: list[tuple[str, RunResult | None, str]] = [("teacher", report.teacher, "teacher")]
    rows += [(r.run_id, r, "student" if r.run_id == report.saved_run else "") for r in report.students]
    rows += [(r.run_id, r, "") for r in report.controls]
    if report.quantized is not None:
        rows.append((report.quantized.run_id, report.quantized, "student_int8"))
    for name, run, key in rows:
        assert run is not None
        lat = report.latency.get(key, {}) if key else {}
        lines.append(
            f"| {name} | {run.candidate.params_total or 0:,} | {_num(sizes.get(key) if key else None, '.1f')} | "
            f"{_num(run.test_metrics.get('accuracy'))} | {_num(run.test_metrics.get('macro_f1'))} | "
            f"{_num(lat.get('latency_ms_p50'), '.2f')} | {_num(lat.get('latency_ms_p95'), '.2f')} |"
        )
    if "student_onnx" in report.latency:
        onnx = report.latency["student_onnx"]
        lines.append(
            f"| student (ONNX, onnxruntime) | | | | | {_num(onnx.get('latency_ms_p50'), '.2f')} | "
            f"{_num(onnx.get('latency_ms_p95'), '.2f')} |"
        )
    lines += [
        "",
        "Latency: batch-1 CPU calls, tokenisation included (the advisor's definition); other work on the "
        "machine inflates it.",
        "",
        "Sizes are the weights in memory (int8 weights at their packed size). On disk: student weights "
        f"{_num(sizes.get('student_weights_on_disk'), '.1f')} MB (whole folder "
        f"{_num(sizes.get('student_on_disk'), '.1f')} MB), teacher weights {_num(sizes.get('teacher_on_disk'), '.1f')} MB.",
        "",
        "## Compute per phase",
        "",
        "| phase | wall s | PFLOPs (provenance) | Wh (provenance) | gCO2e |",
        "|---|---|---|---|---|",
    ]
    for key, cost in report.phases.items():
        lines.append(_cost_row(_PHASE_NAMES.get(key, key), cost))
    lines.append(_cost_row("**total**", report.total_cost))
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


def model_card(report: Any, label_names: Sequence[str]) -> str:
    """README.md for the saved student: hub front matter (``co2_eq_emissions`` as the advisor writes it),
    what it is, how it was made, how well and at what cost."""
    s = report.summary
    run = next(r for r in (*report.students, *report.controls) if r.run_id == report.saved_run)
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
    return "\n".join(
        [
            "---",
            yaml.safe_dump(meta, sort_keys=False).rstrip(),
            "---",
            "",
            f"# Distilled student of `{report.teacher.candidate.source}`",
            "",
            f"A {run.candidate.layers}-layer student ({run.candidate.source}), {run.candidate.params_total:,} parameters, "
            f"trained by knowledge distillation (alpha {hp['alpha']}, temperature {hp['temperature']}, "
            f"{hp['epochs']} epochs, lr {hp['learning_rate']}, seed {hp['seed']}).",
            "",
            f"Labels: {', '.join(label_names)}.",
            "",
            "## Results (test split)",
            "",
            f"- accuracy {run.test_metrics['accuracy']:.4f}, macro-F1 {run.test_metrics['macro_f1']:.4f}",
            f"- teacher accuracy {s['teacher_accuracy']:.4f}; retention {_pct(s.get('retention_accuracy'))}",
            f"- same student without the teacher: accuracy {_num(s.get('control_accuracy'))} "
            f"(gain from distillation {_signed(s.get('gain_over_control_accuracy'))}, mean over {s['seeds']} seed(s))",
            f"- CPU speed-up over the teacher at batch 1 (p50): {_num(s.get('speedup_p50_student'), '.2f')}x",
            "",
            "## Compute used to make it",
            "",
            f"{fmt_num(total.wall_s)} s, {fmt_num(total.flops / 1e15)} PFLOPs ({total.provenance.get('flops', '?')}), "
            f"{fmt_num(total.energy_kwh * 1000)} Wh ({total.provenance.get('energy', '?')}), "
            f"{fmt_num(total.emissions_g)} gCO2e; "
            "per phase in distill_report.md.",
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
            "",
        ]
    )
