"""The pages a person reads, report.md and report.html (with the plot from :mod:`advisor.report.plot`), and writing all three reports.

They lay out what :mod:`advisor.report.render` gathered (the rows, the summary, the notes); nothing is
decided or computed again here.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.atomic import write_text_atomic
from advisor.errors import RunDirError
from advisor.outcome import Report
from advisor.report.plot import plot_png
from advisor.report.render import (
    NOTES,
    dataset_name,
    jsonable,
    md_escape,
    ordered_runs,
    rung_rows,
    table_cells,
    to_json,
)
from advisor.types import RunResult
from advisor.verdicts.criteria import PFLOP, fmt_count, fmt_num


def _iv_text(run: RunResult, split: str, metric: str) -> str:
    iv = run.intervals.get(split, {}).get(metric)
    if iv is None:
        value = run.metrics.get(metric) if split == "validation" else run.test_metrics.get(metric)
        return "" if value is None else f"{value:.3f}"
    return f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] (n={iv['n']}, {iv['level']:.0%})"


def summary(report: Report) -> list[tuple[str, str]]:
    """(label, text) pairs shared by the Markdown and HTML headers."""
    crit, metric = report.criteria, report.criteria.metric
    rec = report.recommended
    if rec is None:
        recommendation = "none: no run met the criteria"
    else:
        recommendation = f"{rec.candidate.name} ({rec.run_id}): " + "; ".join(
            f"{split} {metric} {_iv_text(rec, split, metric)}"
            for split in ("cross_validation", "validation", "test")
            if metric in rec.intervals.get(split, {}) or (split == "validation" and metric in rec.metrics)
        )
        if rec.key.role == "sized":
            recommendation += f"; fitted on {rec.train_examples or 0:,} training rows (a data-size rung)"
    level = report.details.get("decision_level")
    decided = f", decided at {level:.1%} per run (Bonferroni)" if level and level > crit.confidence + 1e-9 else ""
    wanted = [f"{metric} >= {crit.floor:.3f} with {crit.confidence:.0%} confidence{decided}"]
    if crit.max_params is not None:
        wanted.append(f"params <= {fmt_count(crit.max_params)}")
    if crit.max_size_mb is not None:
        wanted.append(f"size <= {fmt_num(crit.max_size_mb)} MB")
    if crit.max_latency_ms is not None:
        wanted.append(f"p95 latency <= {fmt_num(crit.max_latency_ms)} ms")
    budgets = [
        f"spent {fmt_num(b['spent'])} of {fmt_num(b['allowed'])} {unit}"
        for key, unit in (("kwh", "kWh"), ("pflops", "PFLOPs"), ("seconds", "s"))
        if (b := report.details.get("budgets", {}).get(key))
    ]
    total = report.total_cost
    prov = total.provenance
    cost = (
        f"{fmt_num(total.wall_s)} s wall ({prov.get('time', '?')}), "
        f"{fmt_num(total.flops / PFLOP)} PFLOPs ({prov.get('flops', '?')}), "
        f"{fmt_num(total.energy_kwh)} kWh ({prov.get('energy', '?')}), "
        f"{fmt_num(total.emissions_g)} gCO2e ({prov.get('emissions', '?')})"
    )
    if total.location:
        cost += f" at {total.location}"
    if total.device:
        cost += f" on {total.device}"
    peak = report.details.get("peak_rss_mb")
    if peak:
        cost += f"; peak memory {fmt_num(float(peak))} MB resident"
    lost = report.details.get("lost_to_interruption")
    if isinstance(lost, Mapping):
        cost += f"; including {_cost_words(lost.get('cost') or {}, 'flops')} lost to interruption"
    dataset = dataset_name(report)
    out = [
        ("Task", f"{report.task}" + (f" on {dataset}" if dataset else "")),
        ("Recommendation", recommendation),
        ("Why the climb stopped", report.stop_reason),
        ("Criteria", ", ".join(wanted)),
    ]
    if budgets:
        out.append(("Budget", ", ".join(budgets)))
    out.append(("Cost of the search", cost))
    return out


def extra_notes(report: Report) -> list[str]:
    """Lines about the climb's extras: freed disk, greener regions, incremental training."""
    d = report.details
    lines = []
    if d.get("disk_freed_mb"):
        lines.append(
            f"Checkpoints of runs not recommended were deleted, freeing {fmt_num(float(d['disk_freed_mb']))} MB."
        )
    regions = [r for r in d.get("low_carbon_alternatives") or [] if isinstance(r, Mapping)]
    if regions:
        here = report.total_cost.location or "the configured location"
        shown = "; ".join(
            f"{r['region']} ({r['location']}, {fmt_num(float(r['g_per_kwh']))} gCO2e/kWh, {r['source']}): "
            f"{fmt_num(float(r['emissions_g']))} g, {fmt_num(float(r['saving_g']))} g less"
            for r in regions
        )
        lines.append(f"The same energy in a lower-carbon cloud region than {here}: {shown}.")
    inc = d.get("incremental")
    if isinstance(inc, Mapping):
        lines += _incremental_lines(inc)
    elif inc:
        lines.append(f"Incremental training: {json.dumps(jsonable(inc), sort_keys=True)}")
    lines += [f"Data warning: {w}" for w in report.dataset.get("warnings") or []]
    lost = lost_work_line(report)
    if lost:
        lines.append(lost)
    return lines + run_notes(report)


def lost_work_line(report: Report) -> str | None:
    """The work a kill interrupted, run by run, as counted in the cost of the search; None when none was."""
    lost = report.details.get("lost_to_interruption")
    if not isinstance(lost, Mapping) or not lost.get("runs"):
        return None
    parts = []
    for x in lost["runs"]:
        at = f"at step {x['step']}" if x.get("step") is not None else "finished but not recorded"
        parts.append(f"{x['run_id']} ({at}: {_cost_words(x.get('cost') or {}, 'flops')})")
    return (
        f"Lost to interruption, included in the cost of the search: {_cost_words(lost.get('cost') or {}, 'flops')} "
        f"in {len(parts)} interrupted run(s), each trained again on resume: {'; '.join(parts)}."
    )


def run_notes(report: Report) -> list[str]:
    """One line per run worth explaining: where its settings came from, its forecast against the
    actual result, and what a stopped run saved compared with running to the end."""
    metric = report.criteria.metric
    lines = []
    for run in report.runs:
        d, parts = run.details, []
        if d.get("trial_origin"):
            parts.append(f"settings from {d['trial_origin']}")
        fc = d.get("forecast")
        if isinstance(fc, Mapping) and "mean" in fc:
            text = f"forecast {metric} {float(fc['mean']):.3f} ± {float(fc.get('sigma', 0.0)):.3f} ({fc.get('method', '?')})"
            if run.status == "ok" and metric in run.metrics:
                text += f", actual {run.metrics[metric]:.3f}"
            parts.append(text)
        if run.status in ("stopped", "failed", "skipped") and run.message:
            parts.append(run.message)
        if d.get("early_stop"):
            parts.append(f"stopped early, model kept: {d['early_stop']}")
        if d.get("teacher_vs_control_text"):  # the compaction step's decide-first check
            parts.append(f"kept the {d.get('student_path', 'distilled')} student: {d['teacher_vs_control_text']}")
        if d.get("steps_saved"):
            parts.append(
                f"{int(d['steps_saved'])} of {int(d.get('total_steps') or 0)} training steps saved by stopping early"
            )
        if run.key.role == "sized":
            parts.append(f"a data-size rung: fitted on {run.train_examples or 0:,} training rows")
            if d.get("embeddings_reused"):
                parts.append(f"{int(d['embeddings_reused']):,} rows' embeddings reused from smaller sizes")
        elif d.get("train_fraction") not in (None, 1.0):
            parts.append(f"small experiment on {float(d['train_fraction']):.0%} of the training data")
        if parts:
            lines.append(f"{run.run_id}: " + "; ".join(parts) + ".")
    return lines


def _incremental_lines(inc: Mapping[str, Any]) -> list[str]:
    """details["incremental"] in words: the schedule, the cost against from-scratch, paired differences."""
    line = f"Incremental training continued {inc.get('from_run') or '?'} from {inc.get('from') or '?'}"
    sched = inc.get("schedule")
    if isinstance(sched, Mapping):
        line += (
            f" ({len(inc.get('continued_runs') or [])} continuation runs; first trial lr {fmt_num(float(sched.get('learning_rate', 0)))}, "
            f"{fmt_num(float(sched.get('epochs', 0)))} epochs; {sched.get('new_rows')} new rows and "
            f"{sched.get('earlier_rows_replayed')} of {sched.get('earlier_rows')} earlier rows; "
            f"{inc.get('warm_start_trials', 0)} earlier trials told to the tuner)"
        )
    lines = [line + "."]
    now, before, how = inc.get("incremental_cost"), inc.get("from_scratch_cost"), inc.get("from_scratch") or {}
    if isinstance(now, Mapping) and isinstance(before, Mapping):
        ratio = inc.get("flops_ratio")
        share = f" ({fmt_num(float(ratio))}x the FLOPs)" if isinstance(ratio, (int, float)) else ""
        lines.append(
            f"Continuing cost {_cost_words(now)}{share}, against {_cost_words(before)} to train the same rung from its "
            f"pre-trained checkpoint on the same data ({how.get('basis', 'basis unknown')})."
        )
    for diff in inc.get("differences") or []:
        if diff.get("difference") is not None:
            lines.append(
                f"{diff['metric']} of {diff['run']} minus {diff['against']}: {diff['difference']:+.3f} "
                f"[{diff['low']:+.3f}, {diff['high']:+.3f}], n={diff['n']} ({diff['method']})."
            )
    lines += [f"Note: {n}." for n in inc.get("notes") or []]
    resumed = inc.get("resumed_climb")
    if isinstance(resumed, Mapping):
        rec = resumed.get("recommendation")
        lines.append(
            f"The continuation of {resumed.get('after')} failed the criteria, so the climb resumed on "
            f"{', '.join(resumed.get('rungs') or [])} ({len(resumed.get('runs') or [])} runs): "
            + (f"recommended {rec}." if rec else "none of its runs met the criteria either.")
        )
    return lines


def _cost_words(cost: Mapping[str, Any], flops: str = "train_flops") -> str:
    """'120 s, 0.3 PFLOPs, 0.002 kWh' from a Cost dict (missing figures left out); ``flops`` names the
    FLOPs figure shown (training only by default, ``flops`` for all)."""
    parts = []
    for key, scale, unit in (("wall_s", 1.0, "s"), (flops, PFLOP, "PFLOPs"), ("energy_kwh", 1.0, "kWh")):
        value = cost.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{fmt_num(value / scale)} {unit}")
    return ", ".join(parts) or "unknown"


def to_markdown(report: Report) -> str:
    """A Markdown report: summary, the runs table, every verdict's reasons, notes."""
    lines = ["# greenladder report", ""]
    lines += [f"- **{label}:** {md_escape(text)}" for label, text in summary(report)]
    header, body = table_cells(report)
    numeric = set(range(4, 13))
    lines += ["", "## Runs", "", "| " + " | ".join(md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in body]
    lines += [""] + [f"_{md_escape(n)}_  " for n in NOTES]
    lines += ["", "## Verdicts", ""]
    for run in ordered_runs(report):
        verdict = report.verdicts.get(run.run_id)
        if verdict is None:
            lines.append(
                f"- **{md_escape(run.run_id)}**: not judged" + (f" ({md_escape(run.message)})" if run.message else "")
            )
            continue
        lines.append(f"- **{md_escape(run.run_id)}**: {verdict.state.upper()}: {md_escape('; '.join(verdict.reasons))}")
    extras = extra_notes(report)
    if extras:
        lines += ["", "## Notes", ""] + [f"- {md_escape(x)}" for x in extras]
    lines += ["", "The HTML report (report.html) shows the metric against compute.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 80em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .3em 1em; }
dt { font-weight: 600; }
.runs { overflow-x: auto; }
table { border-collapse: collapse; font-size: .8em; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .45em; text-align: left; }
th { white-space: normal; vertical-align: bottom; }
td { white-space: nowrap; }
td.iv { white-space: normal; min-width: 11em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.rec { background: #e8f6e8; }
.verdict { display: inline-block; padding: .1em .5em; border-radius: .8em; font-size: .9em; font-weight: 600; }
.verdict.pass { background: #1a7f37; color: #fff; }
.verdict.fail { background: #fde8e7; color: #b42318; border: 1px solid #b42318; }
.verdict.undecided { background: #fff4d6; color: #7a5200; border: 1px dashed #b07d00; }
.note { color: #666; font-size: .85em; }
pre { background: #f6f8fa; padding: 1em; overflow: auto; font-size: .8em; }
"""


def _verdict_badge(state: str) -> str:
    """A verdict as a badge with its own style: pass (solid green), fail (red outline), undecided (amber, dashed)."""
    return f'<span class="verdict {state.lower()}">{html.escape(state)}</span>' if state else ""


def to_html(report: Report) -> str:
    """A self-contained HTML report: inline CSS, the plot as a base64 PNG, every user string escaped."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>greenladder report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>greenladder report</h1>",
        "<dl>",
    ]
    parts += [f"<dt>{e(label)}</dt><dd>{e(text)}</dd>" for label, text in summary(report)]
    parts.append("</dl>")
    header, body = table_cells(report)
    rows = rung_rows(report)
    numeric = set(range(4, 13))
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    parts += ["<h2>Runs</h2>", '<div class="runs"><table>', f"<tr>{head}</tr>"]
    for row, cells in zip(rows, body, strict=True):
        tds = []
        for i, c in enumerate(cells):
            if i == len(cells) - 1:
                tds.append(f"<td>{_verdict_badge(c)}</td>")
            else:
                cls = "iv" if i == 4 else "num" if i in numeric else ""
                tds.append(f'<td class="{cls}">{e(c)}</td>' if cls else f"<td>{e(c)}</td>")
        parts.append(f'<tr class="{"rec" if row["recommended"] else ""}">' + "".join(tds) + "</tr>")
    parts.append("</table></div>")
    parts += [f'<p class="note">{e(n)}</p>' for n in NOTES]
    png = base64.b64encode(plot_png(report)).decode("ascii")
    parts += [
        "<h2>Metric against compute</h2>",
        f'<img src="data:image/png;base64,{png}" alt="validation {e(report.criteria.metric)} against training PFLOPs">',
        "<h2>Verdicts</h2>",
        "<ul>",
    ]
    for run in ordered_runs(report):
        verdict = report.verdicts.get(run.run_id)
        badge = _verdict_badge(verdict.state.upper()) if verdict is not None else "not judged"
        reasons = "; ".join(verdict.reasons) if verdict is not None else ""
        parts.append(f"<li><b>{e(run.run_id)}</b> {badge} {e(reasons)}</li>")
    parts.append("</ul>")
    extras = extra_notes(report)
    if extras:
        parts += ["<h2>Notes</h2>", "<ul>", *(f"<li>{e(x)}</li>" for x in extras), "</ul>"]
    config = json.dumps(jsonable(report.config), indent=2, sort_keys=True)
    parts += ["<h2>Configuration</h2>", f"<pre>{e(config)}</pre>", "</body></html>", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- files


def write_reports(report: Report, run_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``run_dir`` atomically.

    Returns:
        {"json": path, "markdown": path, "html": path}

    Raises:
        RunDirError: the folder cannot be written (missing, read-only, disk full).
    """
    run_dir = Path(run_dir)
    contents = {
        "json": ("report.json", json.dumps(to_json(report), indent=2, allow_nan=False) + "\n"),
        "markdown": ("report.md", to_markdown(report)),
        "html": ("report.html", to_html(report)),
    }
    out = {}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(".report.*.tmp"):  # left by a process killed mid-write; never read
            stale.unlink(missing_ok=True)
        for key, (name, text) in contents.items():
            write_text_atomic(run_dir / name, text, fault=f"report:{name}")  # fault: crash-safety tests
            out[key] = run_dir / name
    except OSError as exc:
        raise RunDirError(
            f"Cannot write the reports into {run_dir} ({exc.strerror or exc}). Free space or pick another --out."
        ) from exc
    return out
