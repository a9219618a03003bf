"""The one figure of a report: validation metric against training compute, as a PNG.

Drawn from the rows :mod:`advisor.report.render` gathered (nothing is computed again here), with
matplotlib's object API and the Agg backend, so nothing global changes; :mod:`advisor.report.pages`
embeds it in report.html.
"""

from __future__ import annotations

import io

from advisor.outcome import Report
from advisor.report.render import rung_rows
from advisor.verdicts.criteria import fmt_num


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
        # each point is the estimate its interval is centred on: cross-validated for the baseline and
        # probes (over train + validation), the validation split's for fine-tunes
        r["shown"] = r["interval_value"] if r.get("interval_value") is not None else r["value"]
        if r["low"] is not None:
            err = [[max(r["shown"] - r["low"], 0.0)], [max(r["high"] - r["shown"], 0.0)]]
            ax.errorbar(r["train_pflops"], r["shown"], yerr=err, fmt="none", ecolor="tab:blue", alpha=0.5, capsize=3)
        ax.scatter(r["train_pflops"], r["shown"], s=40, color="tab:blue", alpha=0.35 if faded else 1.0, zorder=3)
        ax.annotate(r["label"], (r["train_pflops"], r["shown"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    rec = next((r for r in points if r["recommended"]), None)
    if rec is not None:
        ax.scatter(
            rec["train_pflops"], rec["shown"], s=260, marker="*", color="tab:green", zorder=4, label="recommended"
        )
    base = report.baseline
    if base is not None and metric in base.metrics:
        note = " (recommended)" if report.recommendation == base.run_id else ""
        biv = next(
            (
                base.intervals[k][metric]
                for k in ("cross_validation", "validation")
                if metric in base.intervals.get(k, {})
            ),
            None,
        )
        ax.axhline(
            biv["value"] if biv is not None else base.metrics[metric],
            color="tab:gray",
            linestyle=":",
            label=f"baseline ({base.candidate.source}, FLOPs not applicable){note}",
        )
        if biv is not None:
            ax.axhspan(biv["low"], biv["high"], color="tab:gray", alpha=0.12, label="baseline's interval")
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
    ax.set_ylabel(f"{metric}, cross-validated or validation ({crit.confidence:.0%} interval)", fontsize=8)
    ax.set_title(f"{metric} against training compute")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
