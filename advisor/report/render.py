"""Render a :class:`~advisor.outcome.Report` as JSON, Markdown, a plain-text table and HTML (model cards: card.py).

No decisions are taken here: verdicts, the recommendation and the stop reason come from the
climb; this module only lays them out, with every cost figure next to where it came from.

``to_json(report)`` returns the dict written as report.json; its schema (version
:data:`~advisor.types.REPORT_SCHEMA_VERSION`) is documented field by field in docs/report-schema.md,
and a test keeps the two in step. Non-finite numbers are written as null.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advisor.outcome import REPORT_SCHEMA_VERSION, Report, Verdict
from advisor.types import RunResult
from advisor.verdicts.criteria import PFLOP, fmt_num, gain, gain_per_pflop

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


def ordered_runs(report: Report) -> list[RunResult]:
    return ([report.baseline] if report.baseline is not None else []) + list(report.runs)


def shown_figure(value: float, provenance: str | None) -> float | None:
    """A cost figure, or None when its provenance says it has no value."""
    if provenance is not None and all(p in ("not_applicable", "not_measured") for p in provenance.split("+")):
        return None
    return value


def rung_rows(report: Report) -> list[dict[str, Any]]:
    """One row per run (baseline first, then climb order) with every number the tables show.

    Keys: run_id, name, kind, status, metric, value, low, high (the validation interval at
    ``criteria.confidence``), n, gain_vs_baseline, gain_vs_previous (points, with ``*_ci`` = (low,
    high) and ``*_real`` = whether the paired interval excludes zero), train_pflops, kwh, gco2e,
    gain_per_pflop, gain_per_kwh (gain_vs_previous per this run's own training PFLOPs / kWh), wall_s,
    verdict ("PASS" | "FAIL" | "UNDECIDED" | None when not judged), reason (the first failing or
    open reason, or the metric reason of a pass), recommended, best_of_rung, trial (1-based index
    among runs of the same rung), provenance {time, flops, energy, emissions}. Gains and best runs
    are the climb's (``report.details["gains"]``): nothing is worked out again here.
    """
    metric = report.criteria.metric
    gains = report.details.get("gains", {})
    seen: dict[str, int] = {}
    rows = []
    for run in ordered_runs(report):
        cost, prov = run.cost, dict(run.cost.provenance)
        seen[run.candidate.name] = seen.get(run.candidate.name, 0) + 1
        g = gains.get(run.run_id, {})
        vs_base, vs_prev = g.get("vs_baseline"), g.get("vs_previous")
        verdict = report.verdicts.get(run.run_id)
        split = "cross_validation" if "cross_validation" in run.intervals else "validation"
        iv = run.intervals.get(split, {}).get(metric)
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
                "low": iv["low"] if iv else None,
                "high": iv["high"] if iv else None,
                "n": iv["n"] if iv else None,
                "interval_split": split if iv else None,
                # the estimate the interval is around: the baseline's cross-validated figure, when it has one
                "interval_value": iv["value"] if iv else None,
                "gain_vs_baseline": vs_base["points"] if vs_base else None,
                "gain_vs_baseline_ci": (vs_base["low"], vs_base["high"]) if vs_base else None,
                "gain_vs_baseline_real": vs_base["distinguishable"] if vs_base else None,
                "gain_vs_previous": vs_prev["points"] if vs_prev else None,
                "gain_vs_previous_ci": (vs_prev["low"], vs_prev["high"]) if vs_prev else None,
                "gain_vs_previous_real": vs_prev["distinguishable"] if vs_prev else None,
                "train_pflops": shown_figure(cost.train_flops / PFLOP, prov.get("flops")) if spent else None,
                "kwh": shown_figure(cost.energy_kwh, prov.get("energy")) if spent else None,
                "gco2e": shown_figure(cost.emissions_g, prov.get("emissions")) if spent else None,
                "gain_per_pflop": g["per_pflop"]["value"] if "per_pflop" in g else None,
                "gain_per_kwh": g["per_kwh"]["value"] if "per_kwh" in g else None,
                "wall_s": cost.wall_s if spent else None,
                "verdict": None if verdict is None else verdict.state.upper(),
                "reason": verdict.reasons[0] if verdict is not None and verdict.reasons else (run.message or ""),
                "recommended": run.run_id == report.recommendation,
                "best_of_rung": bool(g.get("best_of_rung")),
                "trial": seen[run.candidate.name],
                "provenance": {k: prov.get(k, "") for k in ("time", "flops", "energy", "emissions")},
            }
        )
    multi = {n for n, k in seen.items() if k > 1}
    for row in rows:
        row["label"] = f"{row['name']} #{row['trial']}" if row["name"] in multi else row["name"]
    return rows


# ----------------------------------------------------------------------------- cells


def _cell(value: float | None, points: bool = False, real: bool | None = None) -> str:
    if value is None:
        return ""
    text = f"{value:+.1f}" if points else fmt_num(value)
    return text + ("~" if real is False else "")


def _interval_cell(r: Mapping[str, Any]) -> str:
    if r["value"] is None:
        return ""
    if r["low"] is None:
        return f"{r['value']:.3f}"
    cv = " cv" if r["interval_split"] == "cross_validation" else ""
    return f"{r['interval_value']:.3f} [{r['low']:.3f}, {r['high']:.3f}] n={r['n']}{cv}"


def _prov_cell(prov: Mapping[str, str]) -> str:
    def short(label: str) -> str:
        return "+".join(_PROV_SHORT.get(p, p) for p in label.split("+")) if label else "?"

    if not any(prov.get(k) for k in ("flops", "energy", "emissions")):
        return ""
    return "/".join(short(prov.get(k, "")) for k in ("flops", "energy", "emissions"))


def table_cells(report: Report) -> tuple[list[str], list[list[str]]]:
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
        verdict = r["verdict"] or ""  # the reasons are listed below the table (every report format)
        body.append(
            [
                "*" if r["recommended"] else "",
                r["label"],
                r["kind"],
                r["status"],
                _interval_cell(r),
                _cell(r["gain_vs_baseline"], points=True, real=r["gain_vs_baseline_real"]),
                _cell(r["gain_vs_previous"], points=True, real=r["gain_vs_previous_real"]),
                _cell(r["train_pflops"]) if r["provenance"]["flops"] != "not_applicable" else "n/a",
                _cell(r["kwh"]),
                _cell(r["gco2e"]),
                _cell(r["gain_per_pflop"], real=r["gain_vs_previous_real"]),
                _cell(r["gain_per_kwh"], real=r["gain_vs_previous_real"]),
                _cell(r["wall_s"]),
                _prov_cell(r["provenance"]),
                verdict,
            ]
        )
    return header, body


NOTES = (
    "* recommended; the metric with its interval at criteria.confidence and its rows (cv: cross-validated over "
    "train + validation, for the baseline and probes; verdicts are decided at the Bonferroni-corrected level, "
    "so their intervals are a little wider); gains in points (0-100 scale) over the baseline and over the previous rung's best run, "
    "paired on the same validation rows; ~ marks a gain whose paired interval contains 0 (not distinguishable); "
    "pts/PFLOP and pts/kWh divide the gain over the previous rung by the run's own training PFLOPs and kWh",
    PROVENANCE_LEGEND,
)


def to_table(report: Report) -> str:
    """The plain-text table the CLI prints at the end: one aligned line per run, then the legend."""
    header, body = table_cells(report)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    numeric = set(range(4, 13))

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(header), rule, *(line(r) for r in body), "", *NOTES]
    return "\n".join(lines) + "\n"


def dataset_name(report: Report) -> str:
    """The dataset's name, or its source; a local path is shortened to its last part."""
    name = str(report.dataset.get("name") or report.dataset.get("source") or "")
    return Path(name).name if name.startswith(("/", ".", "~")) else name


# ----------------------------------------------------------------------------- JSON and Markdown


def to_json(report: Report) -> dict[str, Any]:
    """The report as a JSON-ready dict following the schema in this module's docstring."""
    rows = {r["run_id"]: r for r in rung_rows(report)}

    gains = report.details.get("gains", {})

    def run_obj(run: RunResult) -> dict[str, Any]:
        d = run.to_dict()
        verdict = report.verdicts.get(run.run_id)
        d["verdict"] = verdict.to_dict() if verdict is not None else None
        g = gains.get(run.run_id, {})
        d["gain"] = {k: g.get(k) for k in ("vs_baseline", "vs_previous", "per_pflop", "per_kwh")}
        d["recommended"] = rows[run.run_id]["recommended"]
        return d

    rec = report.recommended
    recommendation = None
    if rec is not None:
        recommendation = {
            "run_id": rec.run_id,
            "candidate": rec.candidate.to_dict(),
            "metrics": dict(rec.metrics),
            "test_metrics": dict(rec.test_metrics),
            "intervals": {k: dict(v) for k, v in rec.intervals.items()},
            "verdict": report.verdicts[rec.run_id].to_dict() if rec.run_id in report.verdicts else None,
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
        "details": {
            **{k: v for k, v in report.details.items() if k != "gains"},
            **({"outcome": report.outcome} if report.outcome is not None else {}),
            **({"closest": report.closest} if report.closest is not None else {}),
            **({"next_cost": report.next_cost.to_dict()} if report.next_cost is not None else {}),
        },
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


def step_reference(earlier: Sequence[RunResult], run: RunResult, metric: str) -> RunResult | None:
    """What a step's gain is measured against: the best finished run of the step before it (another
    candidate), or the baseline; None for the baseline itself."""
    if run.key.role == "baseline":
        return None
    done = [r for r in earlier if r.status == "ok" and metric in r.metrics]
    below = [r for r in done if r.candidate.name != run.candidate.name and r.key.role != "baseline"]
    last = below[-1].candidate.name if below else None
    pool = [r for r in below if r.candidate.name == last] or [r for r in done if r.key.role == "baseline"]
    return max(pool, key=lambda r: r.metrics[metric]) if pool else None


def step_line(run: RunResult, verdict: Verdict | None, reference: RunResult | None, metric: str) -> str:
    """One line for a step of the climb as it finishes: the run, its metric with the interval its
    verdict was decided on, the verdict, what it cost, and its gain per PFLOP over ``reference``
    (the best run of the step before it, or the baseline)."""
    iv = verdict.interval if verdict is not None else None
    if iv:
        cv = " cv" if iv.get("split") == "cross_validation" or run.cv is not None else ""
        shown = f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] n={iv['n']}{cv}"
    else:
        shown = f"{run.metrics[metric]:.3f}" if metric in run.metrics else "-"
    state = verdict.state.upper() if verdict is not None else run.status
    cost = f"{fmt_num(run.cost.flops / PFLOP)} PFLOPs" if run.cost.flops else "no FLOPs"
    line = f"{run.run_id}: {metric} {shown}  {state}  ({cost}, {fmt_num(run.cost.wall_s)} s)"
    g = gain(run, reference, metric)
    if g is not None and reference is not None:
        gpp = gain_per_pflop(g, run.cost)
        line += f"  {g:+.1f} pts over {reference.run_id}" + (f", {gpp:+.3g} pts/PFLOP" if gpp is not None else "")
    return line


_KIND_WORDS = {
    "baseline": "the TF-IDF baseline",
    "probe": "a frozen-encoder probe",
    "finetune": "a fine-tune",
    "incremental": "a continued model",
    "distilled": "a distilled student",
}


def _iv_text(iv: Mapping[str, Any] | None) -> str:
    return f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] n={iv['n']}" if iv else "-"


def answer_lines(report: Report, out: Path | str) -> list[str]:
    """The short answer that ends the terminal output: what is recommended and on what evidence, why
    the climb stopped, what the search cost, where the model and the report are."""
    metric, crit = report.criteria.metric, report.criteria
    rec, out = report.recommended, Path(out)
    lines = []
    if rec is not None and report.recommendation is not None:
        verdict = report.verdicts.get(report.recommendation)
        lines.append(
            f"answer: {rec.run_id} ({_KIND_WORDS.get(rec.candidate.kind, rec.candidate.kind)}) meets "
            f"{metric} >= {crit.floor:g} with {crit.confidence:.0%} confidence"
        )
        test = rec.intervals.get("test", {}).get(metric)
        lines.append(
            f"  decided on {_iv_text(verdict.interval if verdict else None)}"
            + (" (cross-validated)" if rec.cv is not None else " (validation)")
            + (f"; test {_iv_text(test)}" if test else "")
        )
    else:
        lines.append(f"answer: no model met {metric} >= {crit.floor:g} with {crit.confidence:.0%} confidence")
    lines.append(f"why it stopped: {report.stop_reason}")
    total, n = report.total_cost, len(report.runs) + (1 if report.baseline else 0)
    energy = f", {fmt_num(total.energy_kwh)} kWh, {fmt_num(total.emissions_g)} gCO2e" if total.energy_kwh else ""
    lines.append(f"search cost: {fmt_num(total.flops / PFLOP)} PFLOPs{energy}, {fmt_num(total.wall_s)} s over {n} runs")
    where = f"model: {out / 'model'}   " if rec is not None else ""
    lines.append(f"{where}report: {out / 'report.html'}")
    return lines
