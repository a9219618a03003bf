"""The tables and notes of ``select_models.py``: pure functions of the methods' rows (no training, no files).

Each row is what ``select_models.summarise`` (or the FLAML runner) returned: the pick, its verdict
as ``advise`` gives it (``judging.judge_run``), cost and overheads. A check that cannot be computed
(no pick, no figure) says ``n/a`` and why, never MISSED.
"""

from __future__ import annotations

import argparse
from typing import Any

from common import markdown_table
from judging import interval_cell, ratio_check, verdict_cell


def rung_rank(name: str | None, order: list[str]) -> int | None:
    if name is None:
        return None
    return -1 if name == "baseline" else (order.index(name) if name in order else None)


def method_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """One row per method: its pick, the interval and verdict it was judged by, its cost and overheads."""
    level = next((r["judged_at"] for r in rows if r.get("judged_at")), 0.95)
    headers = [
        "method",
        "rung picked",
        "hyperparameters",
        f"validation {args.metric} [{level:.0%} interval]",
        f"test {args.metric}",
        f"meets {args.metric} ≥ {args.floor:g}? (lower bound)",
        "trainings",
        "total FLOPs",
        "kWh",
        "wall s",
        "overhead (FLOPs)",
        "overhead (kWh)",
    ]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["method"], f"could not run: {r['error']}"] + ["—"] * (len(headers) - 2))
            continue
        hp = r.get("picked_hparams") or {}
        lr = hp.get("learning_rate")
        ep = hp.get("epochs", hp.get("num_train_epochs"))
        hp_text = f"lr {lr:.2g}, {float(ep):g} ep" if lr is not None and ep is not None else "—"
        flops = r["flops"]
        flops_cell = f"{flops:.3g}" + (" (est.)" if "estimated" in str(r.get("flops_provenance")) else "")
        body.append(
            [
                r["method"],
                r["picked"] if r["picked"] is not None else "none met the criteria",
                hp_text,
                interval_cell(r["validation_metric"], r.get("verdict")),
                r["test_metric"],
                verdict_cell(r.get("verdict")),
                r["trainings"],
                flops_cell,
                r["kwh"],
                r["wall_s"],
                r["overhead_flops"],
                r["overhead_kwh"],
            ]
        )
    return markdown_table(headers, body)


def target_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str | None:
    """greenladder against the targets of issue 7; None when greenladder did not run. An undefined ratio is n/a."""
    gl = next((r for r in rows if r["method"] == "greenladder" and "error" not in r), None)
    if gl is None:
        return None
    others = [r for r in rows if "error" not in r and r is not gl]
    best_test = max((r["test_metric"] for r in rows if "error" not in r and r["test_metric"] is not None), default=None)
    order = list(args.rung_list)
    passing = set()
    for r in rows:
        passing |= set(r.get("rungs_passing_on_validation", []))
    smallest = min((order.index(n) for n in passing if n in order), default=None)
    if gl.get("picked") == "baseline":
        smallest = -1
    tgt: list[list[Any]] = []
    ov, unit = gl.get("overhead_flops"), "FLOPs"
    if ov is None and gl.get("picked") == "baseline":
        ov, unit = gl.get("overhead_kwh"), "kWh; a baseline pick has no FLOPs count"
    why = "no pick" if gl.get("picked") is None else "the pick's cost was not measured"
    tgt.append([f"selection overhead ≤ 2.5 ({unit})", *ratio_check(ov, 2.5, why)])
    for r in others:
        if r["method"].startswith(("exhaustive", "optuna")):
            for key, unit in (("flops", "FLOPs"), ("kwh", "kWh")):
                ratio = gl[key] / r[key] if r[key] else None
                tgt.append([f"{unit} ≤ 1/5 of {r['method']}", *ratio_check(ratio, 0.2, f"{r['method']}: 0 {unit}")])
    # against greenladder's own pick alone the check could not fail: it needs another method's pick
    if (
        best_test is not None
        and gl["test_metric"] is not None
        and any(r.get("test_metric") is not None for r in others)
    ):
        gap = 100 * (best_test - gl["test_metric"])
        tgt.append(
            [
                f"test {args.metric} within 0.5 points of the best found ({best_test:.3f})",
                gap,
                "met" if gap <= 0.5 else "MISSED",
            ]
        )
    rank = rung_rank(gl.get("picked"), order)
    if smallest is not None and rank is not None and others:  # alone, greenladder's own climb sets the bar
        ok = rank <= smallest
        need = "baseline" if smallest == -1 else order[smallest]
        tgt.append(
            [
                f"no larger rung than needed (smallest passing on validation: {need})",
                gl["picked"],
                "met" if ok else "MISSED",
            ]
        )
    elif not others:
        tgt.append(["no larger rung than needed; test metric near the best", "greenladder ran alone", "n/a"])
    else:
        tgt.append(["no larger rung than needed", "no run met the criteria", "n/a"])
    return markdown_table(["target (issue 7)", "greenladder", "verdict"], tgt)


def tables(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """The method table, then greenladder's targets when it ran."""
    targets = target_table(rows, args)
    return [method_table(rows, args), *([targets] if targets is not None else [])]


def trial_log(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """One note line with greenladder's trials in order: where each setting came from, and its score."""
    gl = next((r for r in rows if r.get("method") == "greenladder"), None)
    if gl is None:
        return []
    parts = []
    for run in gl.get("runs", []):
        hp, score = run.get("hyperparameters", {}), run.get("metrics", {}).get(metric)
        lr = f"lr {hp['learning_rate']:.2g}" if "learning_rate" in hp else "TF-IDF"
        origin = run.get("details", {}).get("trial_origin", "")
        shown = f"{score:.3f}" if score is not None else run.get("status", "")
        parts.append(f"{run['run_id']} ({lr}{'; ' + origin if origin else ''}) {shown}")
    return ["greenladder's runs, in order: " + "; ".join(parts) + "."] if parts else []


def reuse_notes(rows: list[dict[str, Any]], disabled: bool) -> list[str]:
    """One note line per method that reused another method's identical runs."""
    if disabled:
        return ["Every run was trained (`--no-reuse`), also where two methods asked for the same one."]
    notes = []
    for row in rows:
        reused = row.get("reused_runs") or []
        if reused:
            notes.append(
                f"{row['method']}: {len(reused)} of its {row['trainings']} runs are identical (rung, settings, seed, "
                f"data) to runs trained before it and were not trained again ({'; '.join(reused)}); their metered "
                "FLOPs, kWh and wall time are charged to it (the wall time of training, validation and latency, "
                "without the second or so of model loading around them). `--no-reuse` trains them again."
            )
    return notes


def verdict_notes(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """How the rows were judged, greenladder's own decision level, and the run each unmet row came closest with."""
    level = next((r["judged_at"] for r in rows if r.get("judged_at")), None)
    if level is None:
        return []
    notes = [
        f"Every method's pick is judged as `advise` judges a run: the {level:.0%} interval of its validation "
        f"{args.metric} (Wilson for accuracy, bootstrap otherwise; the TF-IDF baseline's from its cross-validation); "
        f"yes when the lower bound is ≥ {args.floor:g}, no when the upper bound is below it, undecided in between. "
        "FLAML's pick is judged from its predictions on the same validation rows."
    ]
    for r in rows:
        own = r.get("climb_verdict")
        if own and own.get("interval"):
            notes.append(
                f"{r['method']}'s climb decided on its pick at {own['interval']['level']:.2%} (Bonferroni over its "
                f"planned candidates, stricter than the table's level): {own['state']}."
            )
        if "report_file" in r:
            notes.append(f"{r['method']}'s own report: `{r['report_file'] or 'could not be kept'}` (beside this file).")
        close = r.get("closest")
        if close and close.get("verdict"):
            reason = (close["verdict"].get("reasons") or [""])[0]
            notes.append(f"{r['method']}: closest run {close['run_id']} ({close['rung']}): {reason}.")
    return notes
