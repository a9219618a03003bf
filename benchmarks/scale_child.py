"""The work ``benchmarks/scale.py`` runs in a subprocess of its own, so that peak memory does not mix.

``python -m benchmarks.scale_child SPEC.json RESULT.json`` reads one job, runs it and writes its
result with the process's peak resident memory (``resource.getrusage``: the whole process, Python
and the libraries it imported included). A job is

* ``{"job": "climb", "overrides": [...]}``: greenladder's climb (``advisor.advise.advise``) with
  those ``section.key=value`` overrides; the result holds the climb's wall time (the ``advise``
  call, imports excluded) and where its ``report.json`` is;
* ``{"job": "<phase>", "csv": PATH, ...}``: one phase of the cost-only run on a CSV, among
  :data:`PHASES`. Every phase but ``load`` first loads the data (not timed); the result holds the
  phase's wall time, the resident memory just before it, and the process peak.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: the smallest encoder of the offline ladder: the one the cost-only embedding pass uses
SMALLEST_ENCODER = "minilm-l3"
#: the data settings every load here uses: 15 % validation and test shares, since the 2,000-row
#: cap (``data.held_out_cap``) leaves WordNet's smallest classes (42 rows) too few rows to carve
DATA_OPTIONS: dict[str, Any] = {"held_out_cap": None}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _data_config(csv: str) -> Any:
    from advisor.config.settings import DataConfig

    return DataConfig(source=csv, **DATA_OPTIONS)


def _load(csv: str) -> Any:
    from advisor.data.task import load_task_data

    return load_task_data(_data_config(csv))


def _encoder() -> tuple[Any, Any, str, str]:
    """The smallest offline encoder: (model, tokenizer, pooling, folder)."""
    from advisor.models.ladder import load_ladder, materialise
    from advisor.models.loading import load_encoder
    from advisor.training.probe import checkpoint_pooling
    from advisor.training.train import quiet_libraries

    rung = next(r for r in load_ladder("offline") if r.name == SMALLEST_ENCODER)
    folder = str(materialise(rung))
    with quiet_libraries():
        model, tok = load_encoder(folder)
    return model, tok, checkpoint_pooling(folder, rung.pooling), folder


def _all_texts(data: Any) -> list[str]:
    from advisor.data.task import column

    return [t for split in (data.train, data.validation, data.test) for t in column(split, "text")]


def _timed(before: Callable[[], Any], phase: Callable[[Any], Any]) -> dict[str, Any]:
    """Run ``before`` untimed, then ``phase`` on its result, timed: wall, RSS before, what it returned."""
    state = before()
    start_rss = rss_mb()
    t0 = time.perf_counter()
    out = phase(state)
    return {"wall_s": time.perf_counter() - t0, "rss_before_mb": start_rss, "out": out}


def phase_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Read the CSV, check, deduplicate and carve the splits (``advisor.data.task.load_task_data``)."""

    def load(_: Any) -> dict[str, int]:
        data = _load(spec["csv"])
        return {name: split.num_rows for name, split in data.splits().items()}

    return _timed(_import_data, load)


def _import_data() -> None:
    """Import what loading needs, outside the timed part (imports are start-up, not the phase)."""
    import advisor.data.task  # noqa: F401


def phase_tokenise(spec: dict[str, Any]) -> dict[str, Any]:
    """Token counts of the training and validation texts (``advisor.climb.steps.token_lengths``)."""
    from advisor.climb.steps import token_lengths

    def tokenise(state: tuple[Any, str]) -> int:
        train, val = token_lengths(state[1], state[0], spec["max_length"])
        return sum(train) + sum(val)

    return _timed(lambda: (_load(spec["csv"]), _encoder()[3]), tokenise)


def phase_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The TF-IDF baseline as the climb fits it (``advisor.training.baseline.fit_baseline``: C grid, CV, test, save)."""
    from advisor.config.settings import build_config
    from advisor.training.baseline import fit_baseline

    config = build_config(
        overrides=[f"data.source={spec['csv']}", "data.held_out_cap=null", "metering.codecarbon=false"]
    )

    def fit(data: Any) -> float:
        run = fit_baseline(data, config, Path(spec["work"]))
        return float(run.metrics["accuracy"])

    return _timed(lambda: _load(spec["csv"]), fit)


def phase_embed(spec: dict[str, Any]) -> dict[str, Any]:
    """One probe embedding pass over every row with the smallest encoder (``advisor.training.probe.embed``)."""
    from advisor.training.probe import embed

    def run(state: tuple[list[str], Any]) -> list[int]:
        texts, (model, tok, pooling, _) = state
        return list(embed(model, tok, texts, pooling, spec["max_length"]).shape)

    return _timed(lambda: (_all_texts(_load(spec["csv"])), _encoder()), run)


def phase_ledger(spec: dict[str, Any]) -> dict[str, Any]:
    """``records`` run records written to a ledger, then report.json/.md/.html (``advisor.report.pages.write_reports``)."""
    return _timed(
        lambda: _load(spec["csv"]), lambda data: write_ledger_and_reports(data, spec["records"], spec["work"])
    )


def _record(data: Any, number: int) -> Any:
    """A finished fine-tune trial's record on ``data``'s validation split, as the climb writes one:
    metrics, one prediction per validation row (every ``number + 2``-th one wrong), a cost."""
    from advisor.data.task import column
    from advisor.runkey import RunKey
    from advisor.types import Candidate, Cost, RunResult
    from advisor.verdicts.criteria import compute_metrics

    labels = [int(y) for y in column(data.validation, "label")]
    k = len(data.label_names)
    preds = [(y + 1) % k if i % (number + 2) == 0 else y for i, y in enumerate(labels)]
    return RunResult(
        key=RunKey("trial", SMALLEST_ENCODER, number),
        candidate=Candidate(name=SMALLEST_ENCODER, kind="finetune", source=f"pypi:{SMALLEST_ENCODER}"),
        hyperparameters={"learning_rate": 1e-4, "epochs": 3.0},
        status="ok",
        metrics=compute_metrics(labels, preds, data.label_names),
        cost=Cost(wall_s=1.0, train_flops=1e12, provenance={"time": "measured", "flops": "analytic"}),
        val_predictions=tuple(preds),
    )


def write_ledger_and_reports(data: Any, records: int, work: str) -> int:
    """Write ``records`` trial records into a new ledger under ``work`` and report.json/.md/.html
    from them (verdicts judged at a floor of 0.5, the dataset described as the climb describes it);
    returns the bytes of report.json."""
    import dataclasses
    import shutil

    from advisor.acceptance import AcceptanceCriteria
    from advisor.advise import _with_intervals
    from advisor.outcome import Report
    from advisor.report.pages import write_reports
    from advisor.store.ledger import Ledger
    from advisor.types import Cost
    from advisor.verdicts.criteria import judge
    from advisor.verdicts.stats import metric_interval

    run_dir = Path(work)
    shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark's own scratch: a phase killed earlier left its ledger
    run_dir.mkdir(parents=True)
    criteria = AcceptanceCriteria(floor=0.5)
    runs = [_record(data, i + 1) for i in range(records)]
    with Ledger(run_dir) as ledger:
        for run in runs:
            ledger.add(run)
        runs = [_with_intervals(r, data, criteria.confidence) for r in ledger.all()]
    labels, k = [int(y) for y in data.validation["label"]], len(data.label_names)
    verdicts = {
        r.run_id: judge(r, criteria, metric_interval("accuracy", labels, r.val_predictions, k, 0.95)) for r in runs
    }
    report = Report(
        task="text-classification",
        dataset={"source": data.source, "label_names": list(data.label_names), **data.summary()},
        criteria=criteria,
        baseline=None,
        runs=tuple(runs),
        verdicts=verdicts,
        recommendation=None,
        stop_reason="cost-only benchmark: records written to measure the ledger and the reports",
        total_cost=sum((r.cost for r in runs), Cost()),
        details={"dataset_summary": data.summary()},
    )
    paths = write_reports(dataclasses.replace(report), run_dir)
    return paths["json"].stat().st_size


def run_climb(spec: dict[str, Any]) -> dict[str, Any]:
    """One climb by ``advise`` with ``spec["overrides"]``; its wall time and report path."""
    from advisor.advise import advise
    from advisor.config.settings import build_config

    config = build_config(overrides=spec["overrides"])
    t0 = time.perf_counter()
    advise(config, progress=lambda m: print(f"    {m}", flush=True))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "report": str(Path(config.output.out) / "report.json")}


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "load": phase_load,
    "tokenise": phase_tokenise,
    "baseline": phase_baseline,
    "embed": phase_embed,
    "ledger": phase_ledger,
}


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text())
    job = spec["job"]
    result = run_climb(spec) if job == "climb" else PHASES[job](spec)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
