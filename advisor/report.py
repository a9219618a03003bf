"""Render a :class:`~advisor.types.Report` as JSON, Markdown, a plain-text table and HTML (model cards: card.py).

No decisions are taken here: verdicts, the recommendation and the stop reason come from the
climb; this module only lays them out, with every cost figure next to where it came from.

JSON schema (version :data:`~advisor.types.REPORT_SCHEMA_VERSION`; also in docs/report-schema.md)
-------------------------------------------------------------------------------------------------

``to_json(report)`` returns a dict that ``json.dumps`` accepts as is::

    schema_version  int     bumped when a field changes meaning or disappears (adding fields does not)
    generator       str     "greenladder <version>"
    task            str     "text-classification"
    dataset         object  what the climb was run on (name/source, sizes, label names ...), as given
    criteria        object  AcceptanceCriteria fields: metric, floor, max_params, max_size_mb,
                            max_latency_ms, budget_kwh, budget_pflops, budget_seconds, min_gain_per_pflop
    recommendation  object | null
                    {run_id, candidate, metrics, test_metrics, artifact}; null when no run passed
    stop_reason     str     why the climb stopped, in words
    baseline        run | null
    runs            [run]   in climb order; includes failed, stopped and skipped runs and every trial
    total_cost      cost    the whole search, baseline included
    details         object  extras of the climb (disk_freed_mb, low_carbon_alternatives, incremental ...)
    config          object  the resolved configuration the climb ran with

    run = {
      run_id, status ("ok" | "stopped" | "failed" | "skipped"), message (str | null),
      candidate: {name, kind, source, params_total, params_non_embedding, layers, hidden, parent_run},
      hyperparameters: object,
      metrics: {name: value in 0..1 (mcc in -1..1)}   validation split
      test_metrics: object                           only for the baseline and the recommendation
      cost: cost, artifact: str | null (relative to the run directory),
      verdict: {run_id, passed, reasons: [str], failed: [criterion], shortfall} | null,
      gain: {vs_baseline, vs_previous: points (0-100 scale) | null,
             per_pflop, per_kwh: points of vs_previous per unit of this run's own cost | null},
      recommended: bool,
      details: object                                size_mb, latency_ms_p95, rule, forecast, trials ...
    }
    cost = {wall_s, cpu_s, train_flops, eval_flops, inference_flops, padding_flops, flops, tokens,
            padded_tokens, energy_cpu_kwh, energy_gpu_kwh, energy_ram_kwh, energy_kwh, emissions_g,
            peak_rss_mb, peak_gpu_mem_mb, gpu_util_avg, device, location,
            provenance: {time | flops | energy | emissions | memory: label}}

Provenance labels: measured, estimated, analytic, not_applicable, not_measured, or several joined
with "+" for sums of mixed origin. Non-finite numbers are written as null.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.criteria import PFLOP, fmt_count, fmt_num, gain, gain_per_kwh, gain_per_pflop
from advisor.errors import RunDirError
from advisor.ledger import fault_point
from advisor.types import REPORT_SCHEMA_VERSION, Report, RunResult

_PROV_SHORT = {"measured": "m", "estimated": "e", "analytic": "a", "not_applicable": "n/a", "not_measured": "-"}
PROVENANCE_LEGEND = (
    "provenance (flops/energy/CO2): m measured, e estimated, a analytic, n/a not applicable, - not measured"
)


# ----------------------------------------------------------------------------- rows


def jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, paths and unknown objects as strings, NaN as null."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return jsonable(value.item())
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return jsonable(value.to_dict())
    return str(value)


def _ordered(report: Report) -> list[RunResult]:
    return ([report.baseline] if report.baseline is not None else []) + list(report.runs)


def _previous_rung(report: Report) -> dict[str, RunResult | None]:
    """run_id -> the run a rung is compared with: the best ok run of the previous rung, else the baseline.

    A rung's best run is the trial marked ``details["best_of_rung"]``, or its highest-scoring ok trial.
    """
    metric = report.criteria.metric
    base = report.baseline
    reference = base if base is not None and base.status == "ok" else None
    out: dict[str, RunResult | None] = {}
    rung: str | None = None
    best: RunResult | None = None
    for run in report.runs:
        if run.candidate.name != rung:
            reference = best if best is not None else reference
            rung, best = run.candidate.name, None
        out[run.run_id] = reference
        if run.status == "ok" and metric in run.metrics:
            marked = bool(run.details.get("best_of_rung"))
            if (
                best is None
                or marked
                or (not best.details.get("best_of_rung") and run.metrics[metric] > best.metrics[metric])
            ):
                best = run
    return out


def shown_figure(value: float, provenance: str | None) -> float | None:
    """A cost figure, or None when its provenance says it has no value."""
    if provenance is not None and all(p in ("not_applicable", "not_measured") for p in provenance.split("+")):
        return None
    return value


def rung_rows(report: Report) -> list[dict[str, Any]]:
    """One row per run (baseline first, then climb order) with every number the tables show.

    Keys: run_id, name, kind, status, metric, value, gain_vs_baseline, gain_vs_previous (points),
    train_pflops, kwh, gco2e, gain_per_pflop, gain_per_kwh (gain_vs_previous per this run's own
    training PFLOPs / kWh), wall_s, verdict ("PASS" | "FAIL" | None when not judged), reason (the
    first failing reason, or the metric reason of a pass), recommended, best_of_rung, trial (1-based
    index among runs of the same rung), provenance {time, flops, energy, emissions}.
    """
    metric = report.criteria.metric
    previous = _previous_rung(report)
    base = report.baseline if report.baseline is not None and report.baseline.status == "ok" else None
    seen: dict[str, int] = {}
    rows = []
    for run in _ordered(report):
        cost, prov = run.cost, dict(run.cost.provenance)
        seen[run.candidate.name] = seen.get(run.candidate.name, 0) + 1
        is_base = run is report.baseline
        vs_base = None if is_base else gain(run, base, metric)
        vs_prev = None if is_base else gain(run, previous.get(run.run_id), metric)
        verdict = report.verdicts.get(run.run_id)
        # a skipped run spent nothing worth a figure: leave its cost cells empty rather than 0
        spent = run.status != "skipped"
        rows.append(
            {
                "run_id": run.run_id,
                "name": run.candidate.name,
                "kind": run.candidate.kind,
                "status": run.status,
                "metric": metric,
                "value": run.metrics.get(metric),
                "gain_vs_baseline": vs_base,
                "gain_vs_previous": vs_prev,
                "train_pflops": shown_figure(cost.train_flops / PFLOP, prov.get("flops")) if spent else None,
                "kwh": shown_figure(cost.energy_kwh, prov.get("energy")) if spent else None,
                "gco2e": shown_figure(cost.emissions_g, prov.get("emissions")) if spent else None,
                "gain_per_pflop": gain_per_pflop(vs_prev, cost),
                "gain_per_kwh": gain_per_kwh(vs_prev, cost),
                "wall_s": cost.wall_s if spent else None,
                "verdict": None if verdict is None else ("PASS" if verdict.passed else "FAIL"),
                "reason": verdict.reasons[0] if verdict is not None and verdict.reasons else (run.message or ""),
                "recommended": run.run_id == report.recommendation,
                "best_of_rung": bool(run.details.get("best_of_rung")),
                "trial": seen[run.candidate.name],
                "provenance": {k: prov.get(k, "") for k in ("time", "flops", "energy", "emissions")},
            }
        )
    multi = {n for n, k in seen.items() if k > 1}
    for row in rows:
        row["label"] = f"{row['name']} #{row['trial']}" if row["name"] in multi else row["name"]
    return rows


# ----------------------------------------------------------------------------- cells


def _cell(value: float | None, points: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.1f}" if points else fmt_num(value)


def _prov_cell(prov: Mapping[str, str]) -> str:
    def short(label: str) -> str:
        return "+".join(_PROV_SHORT.get(p, p) for p in label.split("+")) if label else "?"

    if not any(prov.get(k) for k in ("flops", "energy", "emissions")):
        return ""
    return "/".join(short(prov.get(k, "")) for k in ("flops", "energy", "emissions"))


def _table_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    metric = report.criteria.metric
    header = [
        "",
        "run",
        "kind",
        "status",
        metric,
        "vs base",
        "vs prev",
        "train PFLOPs",
        "kWh",
        "gCO2e",
        "pts/PFLOP",
        "pts/kWh",
        "wall s",
        "prov.",
        "verdict",
    ]
    body = []
    for r in rung_rows(report):
        verdict = r["verdict"] or ""
        if verdict == "FAIL" and r["reason"]:
            verdict = f"FAIL: {r['reason']}"
        body.append(
            [
                "*" if r["recommended"] else "",
                r["label"],
                r["kind"],
                r["status"],
                "" if r["value"] is None else f"{r['value']:.3f}",
                _cell(r["gain_vs_baseline"], points=True),
                _cell(r["gain_vs_previous"], points=True),
                _cell(r["train_pflops"]) if r["provenance"]["flops"] != "not_applicable" else "n/a",
                _cell(r["kwh"]),
                _cell(r["gco2e"]),
                _cell(r["gain_per_pflop"]),
                _cell(r["gain_per_kwh"]),
                _cell(r["wall_s"]),
                _prov_cell(r["provenance"]),
                verdict,
            ]
        )
    return header, body


_NOTES = (
    "* recommended; gains in points (0-100 scale) over the baseline and over the previous rung's best run; "
    "pts/PFLOP and pts/kWh divide the gain over the previous rung by the run's own training PFLOPs and kWh",
    PROVENANCE_LEGEND,
)


def to_table(report: Report) -> str:
    """The plain-text table the CLI prints at the end: one aligned line per run, then the legend."""
    header, body = _table_cells(report)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    numeric = set(range(4, 13))

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(header), rule, *(line(r) for r in body), "", *_NOTES]
    return "\n".join(lines) + "\n"


def _summary(report: Report) -> list[tuple[str, str]]:
    """(label, text) pairs shared by the Markdown and HTML headers."""
    crit, metric = report.criteria, report.criteria.metric
    rec = report.recommended
    if rec is None:
        recommendation = "none: no run met the criteria"
    else:
        test = rec.test_metrics.get(metric)
        test_text = f", test {test:.3f}" if test is not None else ""
        recommendation = f"{rec.candidate.name} ({rec.run_id}): validation {metric} {rec.metrics.get(metric, float('nan')):.3f}{test_text}"
    wanted = [f"{metric} >= {crit.floor:.3f}"]
    if crit.max_params is not None:
        wanted.append(f"params <= {fmt_count(crit.max_params)}")
    if crit.max_size_mb is not None:
        wanted.append(f"size <= {fmt_num(crit.max_size_mb)} MB")
    if crit.max_latency_ms is not None:
        wanted.append(f"p95 latency <= {fmt_num(crit.max_latency_ms)} ms")
    budgets = [
        f"{fmt_num(v)} {u}"
        for v, u in ((crit.budget_kwh, "kWh"), (crit.budget_pflops, "PFLOPs"), (crit.budget_seconds, "s"))
        if v is not None
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


def _extras(report: Report) -> list[str]:
    """Lines about the climb's extras: freed disk, greener regions, incremental training."""
    d = report.details
    lines = []
    if d.get("disk_freed_mb"):
        lines.append(
            f"Checkpoints of runs not recommended were deleted, freeing {fmt_num(float(d['disk_freed_mb']))} MB."
        )
    regions = d.get("low_carbon_alternatives") or []
    if regions:
        pairs = ", ".join(f"{r} {fmt_num(float(g))} g" for r, g in regions)
        lines.append(f"The same energy would have emitted, in lower-carbon regions: {pairs}.")
    inc = d.get("incremental")
    if isinstance(inc, Mapping):
        lines += _incremental_lines(inc)
    elif inc:
        lines.append(f"Incremental training: {json.dumps(jsonable(inc), sort_keys=True)}")
    lines += [f"Data warning: {w}" for w in report.dataset.get("warnings") or []]
    return lines + run_notes(report)


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
        if d.get("steps_saved"):
            parts.append(
                f"{int(d['steps_saved'])} of {int(d.get('total_steps') or 0)} training steps saved by stopping early"
            )
        if d.get("train_fraction") not in (None, 1.0):
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
    return lines


def _cost_words(cost: Mapping[str, Any]) -> str:
    """'120 s, 0.3 PFLOPs, 0.002 kWh' from a Cost dict (missing figures left out)."""
    parts = []
    for key, scale, unit in (("wall_s", 1.0, "s"), ("train_flops", PFLOP, "PFLOPs"), ("energy_kwh", 1.0, "kWh")):
        value = cost.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{fmt_num(value / scale)} {unit}")
    return ", ".join(parts) or "unknown"


def dataset_name(report: Report) -> str:
    """The dataset's name, or its source; a local path is shortened to its last part."""
    name = str(report.dataset.get("name") or report.dataset.get("source") or "")
    return Path(name).name if name.startswith(("/", ".", "~")) else name


# ----------------------------------------------------------------------------- JSON and Markdown


def to_json(report: Report) -> dict[str, Any]:
    """The report as a JSON-ready dict following the schema in this module's docstring."""
    rows = {r["run_id"]: r for r in rung_rows(report)}

    def run_obj(run: RunResult) -> dict[str, Any]:
        d = run.to_dict()
        verdict = report.verdicts.get(run.run_id)
        row = rows[run.run_id]
        d["verdict"] = verdict.to_dict() if verdict is not None else None
        d["gain"] = {
            "vs_baseline": row["gain_vs_baseline"],
            "vs_previous": row["gain_vs_previous"],
            "per_pflop": row["gain_per_pflop"],
            "per_kwh": row["gain_per_kwh"],
        }
        d["recommended"] = row["recommended"]
        return d

    rec = report.recommended
    recommendation = None
    if rec is not None:
        recommendation = {
            "run_id": rec.run_id,
            "candidate": rec.candidate.to_dict(),
            "metrics": dict(rec.metrics),
            "test_metrics": dict(rec.test_metrics),
            "artifact": rec.artifact,
        }
    out = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generator": f"greenladder {_version()}",
        "task": report.task,
        "dataset": dict(report.dataset),
        "criteria": report.criteria.to_dict(),
        "recommendation": recommendation,
        "stop_reason": report.stop_reason,
        "baseline": run_obj(report.baseline) if report.baseline is not None else None,
        "runs": [run_obj(r) for r in report.runs],
        "total_cost": report.total_cost.to_dict(),
        "details": dict(report.details),
        "config": dict(report.config),
    }
    return jsonable(out)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("greenladder")
    except metadata.PackageNotFoundError:
        return "unknown"


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def md_escape(text: Any) -> str:
    """Text safe inside a Markdown table cell: no pipes or line breaks, nothing that opens an HTML tag.

    Only a "<" that could start a tag is escaped, so "accuracy 0.874 < 0.900" stays readable as text.
    """
    safe = _TAG_START.sub("&lt;", str(text).replace("&", "&amp;"))
    return safe.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def to_markdown(report: Report) -> str:
    """A Markdown report: summary, the runs table, every verdict's reasons, notes."""
    lines = ["# greenladder report", ""]
    lines += [f"- **{label}:** {md_escape(text)}" for label, text in _summary(report)]
    header, body = _table_cells(report)
    numeric = set(range(4, 13))
    lines += ["", "## Runs", "", "| " + " | ".join(md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in body]
    lines += [""] + [f"_{md_escape(n)}_  " for n in _NOTES]
    lines += ["", "## Verdicts", ""]
    for run in _ordered(report):
        verdict = report.verdicts.get(run.run_id)
        if verdict is None:
            lines.append(
                f"- **{md_escape(run.run_id)}**: not judged" + (f" ({md_escape(run.message)})" if run.message else "")
            )
            continue
        lines.append(
            f"- **{md_escape(run.run_id)}**: {'PASS' if verdict.passed else 'FAIL'}: {md_escape('; '.join(verdict.reasons))}"
        )
    extras = _extras(report)
    if extras:
        lines += ["", "## Notes", ""] + [f"- {md_escape(x)}" for x in extras]
    lines += ["", "The HTML report (report.html) shows the metric against compute.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plot and HTML


def plot_png(report: Report) -> bytes:
    """PNG of validation metric against training PFLOPs (log x), with floor, budget and recommendation.

    The baseline has no FLOPs (not applicable), so it is drawn as a horizontal reference line
    rather than placed at a made-up compute.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg

    metric, crit = report.criteria.metric, report.criteria
    fig = Figure(figsize=(7.5, 4.5), dpi=100)
    ax = fig.add_subplot()
    points = [
        r
        for r in rung_rows(report)
        if r["kind"] != "baseline"
        and r["value"] is not None
        and r["train_pflops"] is not None
        and r["train_pflops"] > 0
    ]
    for r in points:
        faded = r["trial"] > 1 and not r["best_of_rung"] and not r["recommended"]
        ax.scatter(r["train_pflops"], r["value"], s=40, color="tab:blue", alpha=0.35 if faded else 1.0, zorder=3)
        ax.annotate(r["label"], (r["train_pflops"], r["value"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    rec = next((r for r in points if r["recommended"]), None)
    if rec is not None:
        ax.scatter(
            rec["train_pflops"], rec["value"], s=260, marker="*", color="tab:green", zorder=4, label="recommended"
        )
    base = report.baseline
    if base is not None and metric in base.metrics:
        note = " (recommended)" if report.recommendation == base.run_id else ""
        ax.axhline(
            base.metrics[metric],
            color="tab:gray",
            linestyle=":",
            label=f"baseline ({base.candidate.source}, FLOPs not applicable){note}",
        )
    ax.axhline(crit.floor, color="tab:red", linestyle="--", label=f"floor {crit.floor:.3f}")
    if crit.budget_pflops is not None:
        ax.axvline(
            crit.budget_pflops,
            color="tab:orange",
            linestyle="-.",
            label=f"budget of the whole search, {fmt_num(crit.budget_pflops)} PFLOPs",
        )
    ax.set_xscale("log")
    xs = [r["train_pflops"] for r in points] + ([crit.budget_pflops] if crit.budget_pflops else [])
    if xs:
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
    else:
        ax.set_xlim(1e-4, 1e1)
        ax.text(0.5, 0.5, "no transformer run with measured compute", transform=ax.transAxes, ha="center", color="gray")
    ax.set_xlabel("training compute, PFLOPs (log scale)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{metric} against training compute")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 78em; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .3em 1em; }
dt { font-weight: 600; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .6em; text-align: left; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.rec { background: #e8f6e8; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #b42318; }
.note { color: #666; font-size: .85em; }
pre { background: #f6f8fa; padding: 1em; overflow: auto; font-size: .8em; }
"""


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
    parts += [f"<dt>{e(label)}</dt><dd>{e(text)}</dd>" for label, text in _summary(report)]
    parts.append("</dl>")
    header, body = _table_cells(report)
    rows = rung_rows(report)
    numeric = set(range(4, 13))
    parts += ["<h2>Runs</h2>", "<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for row, cells in zip(rows, body, strict=True):
        tds = []
        for i, c in enumerate(cells):
            cls = "num" if i in numeric else ("pass" if c == "PASS" else "fail" if c.startswith("FAIL") else "")
            tds.append(f'<td class="{cls}">{e(c)}</td>' if cls else f"<td>{e(c)}</td>")
        parts.append(f'<tr class="{"rec" if row["recommended"] else ""}">' + "".join(tds) + "</tr>")
    parts.append("</table>")
    parts += [f'<p class="note">{e(n)}</p>' for n in _NOTES]
    png = base64.b64encode(plot_png(report)).decode("ascii")
    parts += [
        "<h2>Metric against compute</h2>",
        f'<img src="data:image/png;base64,{png}" alt="validation {e(report.criteria.metric)} against training PFLOPs">',
        "<h2>Verdicts</h2>",
        "<ul>",
    ]
    for run in _ordered(report):
        verdict = report.verdicts.get(run.run_id)
        text = (
            "not judged" if verdict is None else ("PASS: " if verdict.passed else "FAIL: ") + "; ".join(verdict.reasons)
        )
        parts.append(f"<li><b>{e(run.run_id)}</b>: {e(text)}</li>")
    parts.append("</ul>")
    extras = _extras(report)
    if extras:
        parts += ["<h2>Notes</h2>", "<ul>", *(f"<li>{e(x)}</li>" for x in extras), "</ul>"]
    config = json.dumps(jsonable(report.config), indent=2, sort_keys=True)
    parts += ["<h2>Configuration</h2>", f"<pre>{e(config)}</pre>", "</body></html>", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- files


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` is either the old file or the complete new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fault_point(f"report:{path.name}")  # test-only crash injection while a report is half on disk
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            _write_atomic(run_dir / name, text)
            out[key] = run_dir / name
    except OSError as exc:
        raise RunDirError(
            f"Cannot write the reports into {run_dir} ({exc.strerror or exc}). Free space or pick another --out."
        ) from exc
    return out
