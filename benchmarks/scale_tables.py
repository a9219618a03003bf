"""What ``benchmarks/scale.py`` reads off each climb's ``report.json``, and its tables: pure functions.

A climb's runs are grouped into phases by their key (``docs/report-schema.md``): ``baseline``; one
``probe <encoder>`` per encoder (roles ``probe`` and ``sized-probe``); one ``fine-tune <encoder>``
per rung (``trial``, ``small``, ``sized``, ``skipped``); ``student <run>``; ``test scoring`` (the
recommendation's one pass over the test split, ``details.test_cost``); and ``tool overhead``: the
climb's wall time minus every run's and the test scoring's (loading and checking the data, loading
models, judging, the ledger and the reports).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.common import fmt, markdown_table

PROBE_ROLES = ("probe",)
FINETUNE_ROLES = ("trial", "small", "sized", "skipped")
#: the phases every climb has, in table order before the per-encoder ones
OVERHEAD, TEST, WHOLE = "tool overhead", "test scoring", "whole climb"


def phase_of(run: Mapping[str, Any], probe_steps: Mapping[str, str] | None = None) -> str:
    """The phase a report.json run belongs to, from its key's role and step.

    A probe's data-size rungs and skip are keyed with the probe's own step (its run id, made by
    :func:`advisor.runkey.probe`); ``probe_steps`` maps those steps to their encoders
    (:func:`probe_steps_of`), so that they count in the probe's phase.
    """
    key = run.get("key") or {}
    role, step = key.get("role", ""), key.get("step", "")
    if role == "baseline":
        return "baseline"
    if role in PROBE_ROLES:
        return f"probe {step}"
    if step in (probe_steps or {}):
        return f"probe {(probe_steps or {})[step]}"
    if role in FINETUNE_ROLES:
        return f"fine-tune {step}"
    return f"{role} {step}".strip()


def probe_steps_of(report: Mapping[str, Any]) -> dict[str, str]:
    """The probe step of each encoder the report's climb could probe -> that encoder."""
    from advisor.runkey import probe

    runs = ([report["baseline"]] if report.get("baseline") else []) + list(report.get("runs") or [])
    encoders = {str(r) for r in ((report.get("config") or {}).get("ladder") or {}).get("rungs") or []}
    encoders |= {str((r.get("key") or {}).get("step")) for r in runs if (r.get("key") or {}).get("role") == "probe"}
    return {probe(e).run_id: e for e in encoders if e}


def _cost(c: Mapping[str, Any] | None) -> dict[str, float]:
    c = c or {}
    return {
        "wall_s": float(c.get("wall_s") or 0.0),
        "flops": float(c.get("flops") or 0.0),
        "kwh": float(c.get("energy_kwh") or 0.0),
        "peak_rss_mb": float(c.get("peak_rss_mb") or 0.0),
    }


def climb_phases(report: Mapping[str, Any], climb_wall_s: float) -> dict[str, dict[str, Any]]:
    """Phase -> {wall_s, flops, kwh, peak_rss_mb, runs, train_examples} of one climb's report.json.

    Costs of a phase's runs add up; its peak memory is the largest of its runs'. ``train_examples``
    lists the training rows of each sized run (``details.train_examples``).
    """
    runs = ([report["baseline"]] if report.get("baseline") else []) + list(report.get("runs") or [])
    phases: dict[str, dict[str, Any]] = {}
    steps = probe_steps_of(report)
    for run in runs:
        cost, p = _cost(run.get("cost")), phases.setdefault(phase_of(run, steps), _empty())
        for k in ("wall_s", "flops", "kwh"):
            p[k] += cost[k]
        p["peak_rss_mb"] = max(p["peak_rss_mb"], cost["peak_rss_mb"])
        p["runs"].append(run.get("run_id"))
        rows = (run.get("details") or {}).get("train_examples")
        if rows is not None:
            p["train_examples"].append(int(rows))
    rec = report.get("recommendation") or {}
    rec_run = next((r for r in runs if r.get("run_id") == rec.get("run_id")), None)
    test_cost = ((rec_run or {}).get("details") or {}).get("test_cost")
    if test_cost:
        phases[TEST] = {**_empty(), **_cost(test_cost), "runs": [rec.get("run_id")]}
    spent = sum(p["wall_s"] for p in phases.values())
    phases[OVERHEAD] = {**_empty(), "wall_s": climb_wall_s - spent}
    total = _cost(report.get("total_cost"))
    phases[WHOLE] = {**_empty(), **total, "wall_s": climb_wall_s}
    return phases


def _empty() -> dict[str, Any]:
    return {"wall_s": 0.0, "flops": 0.0, "kwh": 0.0, "peak_rss_mb": 0.0, "runs": [], "train_examples": []}


def recommendation_test(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recommendation's test interval of the floor metric: {run_id, value, low, high, n}, or None."""
    rec = report.get("recommendation")
    if not rec:
        return None
    metric = (report.get("criteria") or {}).get("metric", "accuracy")
    iv = ((rec.get("intervals") or {}).get("test") or {}).get(metric)
    if iv is None:
        value = (rec.get("test_metrics") or {}).get(metric)
        return {"run_id": rec["run_id"], "value": value, "low": None, "high": None, "n": None}
    return {"run_id": rec["run_id"], "value": iv["value"], "low": iv["low"], "high": iv["high"], "n": iv["n"]}


def validation_scores(report: Mapping[str, Any]) -> dict[str, float | None]:
    """Run id -> its validation score of the floor metric, baseline first, in climb order."""
    metric = (report.get("criteria") or {}).get("metric", "accuracy")
    runs = ([report["baseline"]] if report.get("baseline") else []) + list(report.get("runs") or [])
    return {r["run_id"]: (r.get("metrics") or {}).get(metric) for r in runs}


def growth_exponent(rows: Sequence[float], costs: Sequence[float]) -> float | None:
    """Least-squares slope of log(cost) against log(rows): cost ~ rows ** slope.

    Points with a cost that is not positive (a phase that did not run, FLOPs that do not apply) are
    left out; None when fewer than two points, or fewer than two distinct row counts, remain.
    """
    pts = [(math.log(r), math.log(c)) for r, c in zip(rows, costs, strict=True) if r > 0 and c is not None and c > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


def ratio_sizes(sizes: Sequence[int]) -> tuple[int, int] | None:
    """(largest, the size nearest a tenth of it): 50,000 and 5,000 of 1k/5k/20k/50k; None with one size."""
    if len(sizes) < 2:
        return None
    big = max(sizes)
    small = min((s for s in sizes if s != big), key=lambda s: (abs(math.log(s / (big / 10))), s))
    return big, small


# ----------------------------------------------------------------------------------------------- tables


def _iv(t: Mapping[str, Any] | None) -> str:
    if t is None:
        return "—"
    if t.get("low") is None:
        return f"{fmt(t['value'])} (no interval)"
    return f"{t['value']:.3f} [{t['low']:.3f}, {t['high']:.3f}], n={t['n']}"


def climbs_table(climbs: Sequence[Mapping[str, Any]]) -> str:
    """One row per size, floor and arm: the recommendation, its test score, the climb's compute."""
    head = [
        "train rows",
        "floor",
        "data-size rungs",
        "recommendation",
        "its test accuracy [95%], n",
        "test >= floor",
        "PFLOPs",
        "kWh",
        "climb wall s",
        "tool overhead s (share)",
        "process peak RSS MB",
        "runs (validation accuracy)",
    ]
    out = []
    for c in climbs:
        if c.get("skipped"):
            out.append([c["rows"], c["floor"], c["arm"], f"not run: {c['skipped']}", *[""] * 8])
            continue
        ph, t = c["phases"], c["test"]
        whole, over = ph[WHOLE], ph[OVERHEAD]["wall_s"]
        share = over / whole["wall_s"] if whole["wall_s"] > 0 else float("nan")
        meets = "—" if t is None or t["value"] is None else ("yes" if t["value"] >= c["floor"] else "NO")
        out.append(
            [
                c["rows"],
                c["floor"],
                c["arm"],
                c["recommendation"] or "none",
                _iv(t),
                meets,
                whole["flops"] / 1e15,
                whole["kwh"],
                whole["wall_s"],
                f"{fmt(over)} ({share:.0%})",
                c["process_peak_rss_mb"],
                " > ".join(f"{rid} {fmt(v)}" for rid, v in (c.get("val") or {}).items()),
            ]
        )
    return markdown_table(head, out)


def phases_table(climbs: Sequence[Mapping[str, Any]]) -> str:
    """One row per size, floor, arm and phase: wall, FLOPs, peak RSS, training rows of each run that says."""
    head = [
        "train rows",
        "floor",
        "data-size rungs",
        "phase",
        "wall s",
        "PFLOPs",
        "peak RSS MB",
        "training rows per run",
    ]
    out = []
    for c in climbs:
        for name, p in (c.get("phases") or {}).items():
            if name == WHOLE:
                continue
            rows = ", ".join(str(r) for r in p["train_examples"]) or ""
            rss = p["peak_rss_mb"] or None
            out.append([c["rows"], c["floor"], c["arm"], name, p["wall_s"], p["flops"] / 1e15, rss, rows])
    return markdown_table(head, out)


def _series(climbs: Sequence[Mapping[str, Any]]) -> dict[tuple[float, str], list[Mapping[str, Any]]]:
    groups: dict[tuple[float, str], list[Mapping[str, Any]]] = {}
    for c in climbs:
        if not c.get("skipped"):
            groups.setdefault((c["floor"], c["arm"]), []).append(c)
    return groups


def growth_table(climbs: Sequence[Mapping[str, Any]]) -> str:
    """Per floor, arm and phase: the growth exponent of wall, FLOPs and peak RSS over the sizes."""
    head = ["floor", "data-size rungs", "phase", "wall exponent", "FLOPs exponent", "peak RSS exponent", "sizes"]
    out = []
    for (floor, arm), cs in _series(climbs).items():
        names = list(dict.fromkeys(n for c in cs for n in c["phases"]))
        for name in names:
            have = [c for c in cs if name in c["phases"]]
            rows = [c["rows"] for c in have]
            rss = [c["process_peak_rss_mb"] if name == WHOLE else c["phases"][name]["peak_rss_mb"] for c in have]
            exps = [growth_exponent(rows, [c["phases"][name][k] for c in have]) for k in ("wall_s", "flops")]
            out.append([floor, arm, name, *exps, growth_exponent(rows, rss), ", ".join(map(str, rows))])
    return markdown_table(head, out)


def ratio_table(climbs: Sequence[Mapping[str, Any]], sizes: Sequence[int]) -> str:
    """Per floor and arm: the whole climb's compute at the largest size over that at a tenth of it."""
    pair = ratio_sizes(sizes)
    head = ["floor", "data-size rungs", "rows", "FLOPs ratio", "kWh ratio", "wall ratio"]
    out = []
    for (floor, arm), cs in _series(climbs).items():
        by = {c["rows"]: c["phases"][WHOLE] for c in cs}
        if pair is None or pair[0] not in by or pair[1] not in by:
            continue
        big, small = by[pair[0]], by[pair[1]]
        ratios = [big[k] / small[k] if small[k] > 0 else None for k in ("flops", "kwh", "wall_s")]
        out.append([floor, arm, f"{pair[0]} / {pair[1]}", *ratios])
    return markdown_table(head, out)


def cost_only_table(phases: Sequence[Mapping[str, Any]]) -> str:
    head = ["phase", "rows", "what it did", "wall s", "RSS before MB", "process peak RSS MB"]
    out = [[p["phase"], p["rows"], p["what"], p["wall_s"], p["rss_before_mb"], p["peak_rss_mb"]] for p in phases]
    return markdown_table(head, out)
