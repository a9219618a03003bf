"""The recommendation delivered: scored once on the test split, moved to ``model/`` with its card.

The test split is touched here only, once per recommendation (the score is cached in the ledger's
meta, so a rerun reads it back). Publishing moves the recommended model into ``<run_dir>/model``
with its labels and model card, and deletes the checkpoints nobody needs; every step can be redone
after a crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from advisor.config.settings import Config
from advisor.data.task import TaskData, column
from advisor.metering.cost import Meter
from advisor.models.loading import load_for_classification
from advisor.outcome import Report
from advisor.report.card import model_card
from advisor.store.ledger import Ledger
from advisor.training.counting import MeteringCallback
from advisor.training.inference import predict_labels
from advisor.training.probe import ProbeModel
from advisor.training.train import dir_size_mb, quiet_libraries
from advisor.types import RunResult
from advisor.verdicts.criteria import compute_metrics

#: where the recommended model lives, relative to the run directory
PUBLISHED = "model"


def publish(
    report: Report, run_dir: Path, data: TaskData, keep_checkpoints: bool, ledger: Ledger, keep_closest: bool = True
) -> float:
    """Move the recommended model to ``run_dir/model`` with its card; delete unneeded checkpoints.

    The model is moved, not copied, so it is stored once. Each step can be redone after a crash:
    a model still at its run's path is staged, a staged one replaces ``model/``, and the labels and
    card are (re)written into ``model/``. When nothing passed, the run that came closest keeps its
    checkpoint (``keep_closest``): it may be the model the user wants.

    Returns the disk space freed, in MB (remembered in the ledger so a rerun reports it too).
    """
    rec = report.recommended
    dest = run_dir / PUBLISHED
    staged = run_dir / ".model-tmp"
    if rec is not None and rec.artifact and Path(rec.artifact).parts[0] != PUBLISHED:
        src = run_dir / rec.artifact
        if src.exists():
            shutil.rmtree(staged, ignore_errors=True)
            if src.is_dir():
                os.replace(src, staged)  # a rename on the same file system: no second copy
            else:
                staged.mkdir()
                os.replace(src, staged / src.name)
        if staged.exists():
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(staged, dest)
        ledger.set_meta("published", rec.run_id)
    if rec is not None and ledger.get_meta("published") == rec.run_id and dest.is_dir():
        for name, text in (("labels.json", json.dumps(list(data.label_names))), ("README.md", model_card(report, rec))):
            tmp = dest / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, dest / name)
    freed = float(ledger.get_meta("disk_freed_mb") or 0.0)
    keep = {report.recommendation, report.closest if keep_closest else None}
    if not keep_checkpoints:
        for run in report.runs:
            if run.artifact and run.run_id not in keep and run.candidate.kind != "baseline":
                path = run_dir / run.artifact
                if path.exists():
                    freed += dir_size_mb(path)
                    shutil.rmtree(path, ignore_errors=True)
        ledger.set_meta("disk_freed_mb", freed)
    return freed


def published_artifact(run: RunResult, run_dir: Path, ledger: Ledger) -> RunResult:
    """``run`` with its artifact pointing into ``model/`` once :func:`publish` moved it there."""
    if run.artifact is None or ledger.get_meta("published") != run.run_id:
        return run
    # a transformer is a folder and becomes model/ itself; the baseline is one file inside it
    moved = Path(PUBLISHED) / Path(run.artifact).name if run.candidate.kind == "baseline" else Path(PUBLISHED)
    return dataclasses.replace(run, artifact=str(moved))


def evaluate_on_test(run: RunResult, run_dir: Path, data: TaskData, config: Config, ledger: Ledger) -> RunResult:
    """Final evaluation of the recommendation on the test split (cached in the ledger's meta)."""
    key = f"test:{run.run_id}"
    cached = ledger.get_meta(key)
    if cached is None:
        if run.candidate.kind == "baseline":
            return run
        with Meter(config.metering, phase=f"test {run.run_id}") as meter:
            path = run_dir / str(published_artifact(run, run_dir, ledger).artifact)
            preds = _predict_test(run, path, data, config, meter)
            metrics = compute_metrics(column(data.test, "label"), preds, data.label_names)
        cached = {"metrics": metrics, "cost": meter.cost.to_dict(), "predictions": [int(p) for p in preds]}
        ledger.set_meta(key, cached)
    details = {**run.details, "test_cost": cached["cost"]}
    return dataclasses.replace(
        run, test_metrics=cached["metrics"], details=details, test_predictions=tuple(cached.get("predictions", ()))
    )


def _predict_test(run: RunResult, path: Path, data: TaskData, config: Config, meter: Meter) -> Any:
    """The saved model's predictions on the test split, their FLOPs counted into ``meter``."""
    texts = column(data.test, "text")
    with quiet_libraries():
        if run.candidate.kind == "probe":
            return ProbeModel(path).predict(texts, meter)
        model, tok = load_for_classification(str(path), data.label_names)
    counter = MeteringCallback(meter, num_labels=len(data.label_names))
    counter.attach(model)  # the test pass's FLOPs, counted like every validation pass
    preds = predict_labels(model, tok, texts, config.train.max_length)
    counter.close()
    return preds
