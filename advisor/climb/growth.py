"""Data-size rungs: the sizes a step climbs, and whether it grows to the next one.

On a large training split each step of the climb (a probe or a fine-tune) first runs on stratified
prefixes of the training rows, smallest first, and grows only while the learning curve of the sizes
run so far can reach the floor on all the rows (docs/large-data.md). Pure functions of the records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from advisor import runkey
from advisor.climb.evidence import Evidence, RungInfo, Skip
from advisor.climb.forecast import forecast_curve
from advisor.config.settings import Config
from advisor.outcome import Verdict
from advisor.verdicts.criteria import only_ceilings_failed


def growth_sizes(train_rows: int, grow_from: int | None, factor: float) -> tuple[int, ...]:
    """Training rows of a step's data-size rungs, smallest first, ending with all ``train_rows``.

    ``grow_from``, then ``factor`` times more, for as long as a size is at most half the training
    rows (a data-size rung costs at most half the full step: climbing it first cannot cost much
    more than not); just ``(train_rows,)`` when ``grow_from`` is None or more than half the rows.
    """
    sizes: list[int] = []
    size = grow_from
    while size is not None and 2 * size <= train_rows:
        sizes.append(int(size))
        size = int(round(size * factor))
    return (*sizes, int(train_rows))


def growth_gate(evidence: Evidence, config: Config, judged: Mapping[str, Verdict], step: RungInfo) -> Skip | None:
    """Before a step grows past its data-size rungs: leave the step (all its larger sizes, its
    full size included) when the learning curve of the sizes run so far cannot reach the floor on
    all the training rows even at its optimistic end, or when a size failed a ceiling only (more
    rows change neither a model's size nor its speed). None: grow."""
    family, metric, floor = step.family, config.criteria.metric, config.criteria.floor
    below = [
        r
        for r in evidence.runs
        if r.key.role == "sized" and r.key.step == family and (step.rows is None or (r.key.number or 0) < step.rows)
    ]
    skip = runkey.skipped(family)
    method: Literal["finetune", "probe"] = "probe" if step.method == "probe" else "finetune"
    for run in below:
        if run.run_id in judged and only_ceilings_failed(judged[run.run_id]):
            failed = ", ".join(judged[run.run_id].failed)
            why = f"left at {run.key.number:,} training rows: it fails {failed}, which more rows cannot change"
            return Skip(step.rung, skip, why, {}, method)
    points = [(r.key.number or 0, r.metrics[metric]) for r in below if r.status == "ok" and metric in r.metrics]
    if not points or not evidence.train_rows:
        return None
    f = forecast_curve(points, evidence.train_rows, len(evidence.val_labels))
    if f.optimistic >= floor:
        return None
    why = (
        f"left at {max(n for n, _ in points):,} training rows: its {f.method} forecasts {metric} {f.mean:.3f} "
        f"± {f.sigma:.3f} on all {evidence.train_rows:,} (optimistic {f.optimistic:.3f}), short of the floor {floor:g}"
    )
    return Skip(step.rung, skip, why, f.to_dict(), method)
