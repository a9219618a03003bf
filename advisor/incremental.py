"""Incremental training: continue an earlier run's recommended model on expanded data.

``advise --from RUN_DIR`` lands here instead of climbing the ladder again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from advisor.baseline import fit_baseline
from advisor.config import Config
from advisor.criteria import judge
from advisor.data import TaskData
from advisor.errors import DataError, RunDirError
from advisor.ledger import Ledger
from advisor.models import is_safe_name
from advisor.train import train_run
from advisor.types import Candidate, RunResult, Verdict

Progress = Callable[[str], None]


class Continued(NamedTuple):
    """What continuing produced, for the advisor to finish like any climb."""

    baseline: RunResult
    runs: Sequence[RunResult]
    verdicts: dict[str, Verdict]
    recommendation: str | None
    stop_reason: str
    details: dict[str, Any]


def previous_recommendation(from_dir: Path, data: TaskData) -> dict[str, Any]:
    """Read and check the earlier run's recommendation before anything is written.

    Returns the earlier report.json; raises RunDirError or DataError when it cannot be continued.
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
    rec = prev.get("recommendation")
    if not rec:
        raise RunDirError(f"{from_dir} has no recommended model to continue from. Run advise without --from.")
    old_labels = list(prev.get("dataset", {}).get("label_names", []))
    new = sorted(set(data.label_names) - set(old_labels))
    if new:
        raise DataError(
            f"The expanded data has labels the earlier model does not know: {', '.join(new)}. "
            "Drop those rows, or run advise without --from to train a new head."
        )
    if list(data.label_names) != old_labels:
        raise DataError(
            f"The expanded data has labels {list(data.label_names)} but the earlier model has {old_labels}; "
            "keep every earlier label in the data."
        )
    cand_info = rec["candidate"]
    if not is_safe_name(str(cand_info.get("name", ""))):  # it names this run's folder
        raise RunDirError(
            f"{prev_report_path} names the model {cand_info.get('name')!r}, not a valid rung name. "
            "Pass the run directory of a finished advise with --from."
        )
    if cand_info["kind"] == "baseline":
        raise RunDirError(
            f"The recommendation in {from_dir} is the TF-IDF baseline; incremental training needs a transformer. "
            "Run advise without --from."
        )
    source = from_dir / "model"
    if not (source / "config.json").is_file():
        raise RunDirError(f"{source} does not hold the recommended model (was it deleted?). Run advise without --from.")
    return prev


def continue_from(
    config: Config, from_dir: Path, data: TaskData, run_dir: Path, ledger: Ledger, say: Progress
) -> Continued:
    """Continue the earlier run's recommended model on the (expanded) data instead of climbing again."""
    prev = previous_recommendation(from_dir, data)
    rec = prev["recommendation"]
    cand_info = rec["candidate"]
    source = from_dir / "model"
    criteria = config.criteria
    baseline = ledger.get("baseline") or _record(ledger, fit_baseline(data, config, run_dir, progress=say))
    verdicts = {"baseline": judge(baseline, criteria)}
    run_id = f"{cand_info['name']}-incremental"
    run = ledger.finished(run_id)
    if run is None:
        candidate = Candidate(name=cand_info["name"], kind="incremental", source=str(source), parent_run=str(from_dir))
        run = _record(ledger, train_run(candidate, str(source), data, config, run_dir, run_id, progress=say))
    verdicts[run_id] = judge(run, criteria)
    # what the recommended rung cost when it was trained from the pre-trained checkpoint
    scratch: dict[str, Any] = next(
        (r.get("cost", {}) for r in prev.get("runs", []) if r.get("run_id") == rec.get("run_id")), {}
    )
    details = {
        "incremental": {
            "from": str(from_dir),
            "from_run": rec.get("run_id"),
            "from_scratch_cost": scratch,
            "incremental_cost": run.cost.to_dict(),
        }
    }
    recommendation = run_id if verdicts[run_id].passed else ("baseline" if verdicts["baseline"].passed else None)
    stop_reason = f"incremental training of {cand_info['name']} from {from_dir}: " + (
        "meets every criterion" if verdicts[run_id].passed else f"fails ({'; '.join(verdicts[run_id].failed)})"
    )
    return Continued(baseline, [run], verdicts, recommendation, stop_reason, details)


def _record(ledger: Ledger, run: RunResult) -> RunResult:
    ledger.add(run)
    return run
