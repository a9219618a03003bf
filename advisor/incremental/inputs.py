"""What continuing an earlier run starts from, read before anything is trained.

The earlier run's report is checked (:func:`previous_recommendation`), its recommended run, its
training rows and its trials of the rung are read back, and the continuation is planned from
them: a schedule made for continuing (:func:`continuation_config`), every new row plus a replayed
share of the earlier ones (:func:`training_rows`), and the notes the report must carry about rows
the earlier model already saw. :mod:`advisor.incremental.executor` trains and judges with these.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from advisor.climb.tuning import search_space, told
from advisor.config.settings import Config, build_config
from advisor.data.task import TaskData, column, load_task_data
from advisor.errors import DataError, GreenladderError, RunDirError
from advisor.models.ladder import is_safe_name
from advisor.outcome import Report
from advisor.store.ledger import LEDGER_NAME, Ledger
from advisor.types import RunResult

Progress = Callable[[str], None]


def previous_recommendation(from_dir: Path, data: TaskData, config: Config | None = None) -> Report:
    """Read and check the earlier run's recommendation before anything is written.

    Returns the earlier report, read back through the record that wrote it (:meth:`Report.from_json`);
    raises RunDirError or DataError when it cannot be continued.
    """
    prev_report_path = from_dir / "report.json"
    if not prev_report_path.is_file():
        raise RunDirError(f"{from_dir} has no report.json. Pass the run directory of a finished advise with --from.")
    try:
        prev = json.loads(prev_report_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(
            f"{prev_report_path} is not valid JSON. Pass the run directory of a finished advise with --from."
        ) from None
    if not prev.get("recommendation"):
        raise RunDirError(f"{from_dir} has no recommended model to continue from. Run advise without --from.")
    try:
        report = Report.from_json(prev)
        rec = report.recommended
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(
            f"{prev_report_path} is not a report this greenladder can read ({type(exc).__name__}: {exc}). "
            "Pass the run directory of a finished advise with --from."
        ) from None
    assert rec is not None  # a report with a recommendation names one of its runs (checked by Report)
    old_labels = list(report.dataset.get("label_names", []))
    new = sorted(set(data.label_names) - set(old_labels))
    extending = config is not None and config.incremental.extend_head
    if new and not extending:
        raise DataError(
            f"The expanded data has labels the earlier model does not know: {', '.join(new)}. "
            "Drop those rows, or pass --extend-head (incremental.extend_head=true) to add them to the head."
        )
    if missing := sorted(set(old_labels) - set(data.label_names)):
        raise DataError(
            f"The expanded data has no rows of the earlier labels {', '.join(missing)}; keep every earlier label in the data."
        )
    if not is_safe_name(rec.candidate.name):  # it names this run's folder
        raise RunDirError(
            f"{prev_report_path} names the model {rec.candidate.name!r}, not a valid rung name. "
            "Pass the run directory of a finished advise with --from."
        )
    if rec.candidate.kind == "baseline":
        return report  # refitted on the expanded data: nothing to load
    source = from_dir / "model"
    if not (source / "config.json").is_file():
        raise RunDirError(f"{source} does not hold the recommended model (was it deleted?). Run advise without --from.")
    return report


def recommended_run(prev: Report, from_dir: Path) -> RunResult:
    """The earlier recommended run's full record (hyperparameters, cost), from its report."""
    rec = prev.recommended
    if rec is None:
        raise RunDirError(f"{from_dir / 'report.json'} recommends no run. Pass the run directory of a finished advise.")
    return rec


def earlier_train_texts(from_dir: Path, say: Progress) -> frozenset[str] | None:
    """The texts the earlier model trained on, by reloading its data with its saved config; None if gone."""
    try:
        earlier_config = build_config([from_dir / "config.yaml"])
        return frozenset(column(load_task_data(earlier_config.data).train, "text"))
    except GreenladderError as exc:
        say(f"warning: the earlier training data could not be read back ({str(exc)[:200]})")
        return None


def earlier_trials(from_dir: Path, name: str, metric: str, cont: Config) -> list[tuple[dict[str, Any], float | None]]:
    """The earlier run's trials of this rung, as (hyperparameters, score), where they fit the search space."""
    if not (from_dir / LEDGER_NAME).is_file():
        return []
    space = search_space(cont)
    with Ledger(from_dir) as earlier:
        trials = told(earlier.finished_of("trial", name), metric)
    return [(dict(hp), v) for hp, v in trials if _fits(dict(hp), space)]


def _fits(hp: dict[str, Any], space: dict[str, Any]) -> bool:
    """Whether the trial's settings lie in the search space (optuna refuses to be told one that does not)."""
    try:
        optuna.trial.create_trial(params={k: hp.get(k) for k in space}, distributions=space, value=0.0)
    except (ValueError, TypeError):
        return False
    return True


def overlap_notes(seen: frozenset[str] | None, in_val: int, test_texts: Sequence[str]) -> list[str]:
    """What the report must say about rows the earlier model trained on that now sit in validation or test."""
    if seen is None:
        return ["the earlier training rows could not be read back: comparisons may include rows it trained on"]
    notes = [f"{in_val} validation rows were in the earlier training data: left out of the paired comparisons"]
    if in_test := sum(t in seen for t in test_texts):
        notes.append(f"{in_test} test rows were in the earlier training data: test scores may be optimistic")
    return notes[0 if in_val else 1 :]


def continuation_config(config: Config, earlier: RunResult) -> Config:
    """The config the continuation trains with: the earlier winning rate scaled down, fewer epochs."""
    t, u, inc = config.train, config.tuning, config.incremental
    lr = float(earlier.hyperparameters.get("learning_rate", t.learning_rate)) * inc.lr_factor
    warmup = earlier.hyperparameters.get("warmup_ratio", t.warmup_ratio)
    train = dataclasses.replace(
        t,
        learning_rate=min(max(lr, u.lr_min), u.lr_max),
        epochs=min(max(inc.epochs, u.epochs_min), u.epochs_max),
        warmup_ratio=warmup if warmup in u.warmup_choices else u.warmup_choices[0],
    )
    return dataclasses.replace(config, train=train)


def training_rows(data: TaskData, seen: frozenset[str] | None, config: Config) -> tuple[TaskData, dict[str, Any]]:
    """Every new row plus ``incremental.replay_fraction`` of the earlier rows (all rows when unknown)."""
    texts = column(data.train, "text")
    old = [i for i, t in enumerate(texts) if seen is not None and t in seen]
    new = [i for i, t in enumerate(texts) if seen is None or t not in seen]
    fraction = config.incremental.replay_fraction if seen is not None else 1.0
    keep = round(len(old) * fraction)
    replayed = sorted(random.Random(config.train.seed).sample(old, keep))
    rows = sorted(new + replayed)
    schedule = {"new_rows": len(new), "earlier_rows": len(old), "earlier_rows_replayed": len(replayed)}
    if len(rows) == len(texts):
        return data, schedule
    return dataclasses.replace(data, train=data.train.select(rows)), schedule
