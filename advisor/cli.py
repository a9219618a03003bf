"""`advise`: parse, call, print. The only place in the advisor that prints or exits.

Exit codes: 0 a recommendation meets the criteria; 1 no model met them (the report says which
criterion failed closest); 2 bad input (config, data, model, run directory); 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.config.layering import deep_merge
from advisor.config.settings import CONFIG_DIR, NO_FLOOR, Config, build_config, earlier_bar, floor_given
from advisor.data.datafiles import check_source
from advisor.errors import ConfigError, GreenladderError
from advisor.outcome import Report
from advisor.verdicts.criteria import fmt_count, fmt_num

EXIT_OK, EXIT_NOT_MET, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"

EXAMPLES = """examples:
  advise --task text-classification
      the embedded demo: CoNLL-2010 uncertainty sentences, criteria in configs/demo.yaml
  advise --task text-classification --data reviews.csv --text-column review --label-column stars --target macro_f1=0.8
  advise --data bbc-news --target accuracy=0.95 --budget-kwh 0.05 --out runs/bbc
  advise --data expanded.csv --from runs/bbc --out runs/bbc-v2 --compare-scratch      (incremental training)
  advise --list-rungs --ladder offline        advise --list-datasets        advise --fetch-models
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="advise",
        description="Find the smallest model that meets your bar: a TF-IDF baseline first, then a ladder of "
        "pre-trained models smallest first, stopping at the first that meets the acceptance criteria.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="text-classification", help="the task (text-classification)")
    p.add_argument(
        "--data", help="built-in dataset name, a CSV/TSV/JSON/JSONL/Parquet file, a save_to_disk folder or a hub id"
    )
    p.add_argument("--text-column", help="column holding the text (detected when omitted)")
    p.add_argument("--label-column", help="column holding the label (detected when omitted)")
    p.add_argument("--ladder", help="ladder name in configs/ladders (offline, hub) or a YAML path")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="metric floor on the validation split, e.g. accuracy=0.9 or macro_f1=0.8",
    )
    p.add_argument("--budget-kwh", type=float, help="energy budget for the whole search (kWh)")
    p.add_argument("--budget-pflops", type=float, help="compute budget for the whole search (PFLOPs)")
    p.add_argument("--budget-seconds", type=float, help="wall-time budget for the whole search (s)")
    p.add_argument("--max-latency-ms", type=float, help="ceiling on p95 CPU latency at batch 1 (ms)")
    p.add_argument("--max-params", type=int, help="ceiling on total parameters")
    p.add_argument("--max-size-mb", type=float, help="ceiling on model size on disk (MB)")
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config (repeatable; later wins)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set train.learning_rate=5e-5",
    )
    p.add_argument("--out", help="run directory (ledger, reports, recommended model)")
    p.add_argument(
        "--restart",
        action="store_true",
        help="start afresh in --out: move its earlier records (ledger, reports, models) to <out>.old-<time> first",
    )
    p.add_argument(
        "--from",
        dest="from_run",
        metavar="RUN_DIR",
        help="continue from that run's recommended model on the (expanded) --data",
    )
    p.add_argument(
        "--compare-scratch",
        action="store_true",
        help="with --from: also train the rung from its pre-trained checkpoint, to measure what continuing saved",
    )
    p.add_argument(
        "--extend-head", action="store_true", help="with --from: add the expanded data's new labels to the model's head"
    )
    p.add_argument(
        "--no-resume-climb",
        dest="resume_climb",
        action="store_false",
        help="with --from: when the continued model fails, stop (exit 1) instead of climbing on from the rung above it",
    )
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of the table")
    p.add_argument("--list-rungs", action="store_true", help="list the ladder's rungs and exit")
    p.add_argument("--list-datasets", action="store_true", help="list the built-in datasets and exit")
    p.add_argument("--fetch-models", action="store_true", help="materialise the ladder's offline rungs and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks (or set GREENLADDER_DEBUG=1)")
    return p


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a nested config mapping (they sit between YAML files and --set overrides)."""
    extra: dict[str, Any] = {"task": args.task}
    data: dict[str, Any] = {}
    if args.data:
        data["source"] = args.data
    if args.text_column:
        data["text_column"] = args.text_column
    if args.label_column:
        data["label_column"] = args.label_column
    if data:
        extra["data"] = data
    if args.ladder:
        extra["ladder"] = {"name": args.ladder}
    crit: dict[str, Any] = {}
    for t in args.target:
        name, sep, value = t.partition("=")
        if not sep:
            raise ConfigError(f"The --target value must look like metric=value, e.g. accuracy=0.9. Got {t!r} instead.")
        try:
            crit.update(metric=name.strip(), floor=float(value))
        except ValueError:
            raise ConfigError(f"The --target value {value!r} is not a number. Use e.g. accuracy=0.9.") from None
    for flag, key in (
        ("budget_kwh", "budget_kwh"),
        ("budget_pflops", "budget_pflops"),
        ("budget_seconds", "budget_seconds"),
        ("max_latency_ms", "max_latency_ms"),
        ("max_params", "max_params"),
        ("max_size_mb", "max_size_mb"),
    ):
        if getattr(args, flag) is not None:
            crit[key] = getattr(args, flag)
    if crit:
        extra["criteria"] = crit
    if args.out:
        extra["output"] = {"out": args.out}
    incremental: dict[str, Any] = {k: True for k in ("compare_scratch", "extend_head") if getattr(args, k)}
    if not args.resume_climb:
        incremental["resume_climb"] = False
    if incremental:
        extra["incremental"] = incremental
    return extra


def _inherited_bar(args: argparse.Namespace, files: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
    """With ``--from`` and no floor given: the bar the earlier run chose its model for (else {})."""
    if not args.from_run or floor_given(files, args.overrides, extra):
        return {}
    return earlier_bar(args.from_run)


def _bar_words(bar: dict[str, Any]) -> str:
    words = [f"{bar.get('metric', 'accuracy')} >= {fmt_num(float(bar['floor']))}"]
    if "max_params" in bar:
        words.append(f"params <= {fmt_count(int(bar['max_params']))}")
    words += [f"{k} <= {fmt_num(float(bar[k]))}" for k in ("max_size_mb", "max_latency_ms") if k in bar]
    return ", ".join(words)


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config, files, extra, inherited = _resolve(args)
    if args.list_datasets:
        from advisor.offline.builtin_data import builtin_table

        print(builtin_table())
        return EXIT_OK
    if args.list_rungs or args.fetch_models:
        _list_rungs(config, fetch=args.fetch_models)
        return EXIT_OK
    check_source(config.data.source)  # a mistyped path fails now, not after the heavy imports below
    if not floor_given(files, args.overrides, extra):
        raise ConfigError(NO_FLOOR)
    from advisor import distributed
    from advisor.advise import advise

    main_rank = distributed.is_main()  # in a multi-process job the other ranks train in silence
    if main_rank and inherited:
        _progress(f"criteria from {Path(args.from_run) / 'report.json'} (no --target given): {_bar_words(inherited)}")
    if main_rank:
        _progress(
            f"advise: task {config.task}, data {config.data.source}, ladder {config.ladder.name}, "
            f"criteria {config.criteria.metric} >= {config.criteria.floor:g}, run dir {config.output.out}"
        )
    from distill.compact import distil_run  # the climb's compaction step, composed here (advisor.climb.distiller)

    report = advise(
        config,
        from_run=args.from_run,
        progress=_progress if main_rank else None,
        distiller=distil_run,
        restart=args.restart,
    )
    met = report.recommendation is not None and report.verdicts[report.recommendation].passed
    if not main_rank:
        return EXIT_OK  # rank 0 answers for the job; a non-zero exit here would make torchrun kill it
    if args.json:
        from advisor.report.render import to_json

        print(json.dumps(to_json(report), indent=2))
    else:
        _print_answer(report, config)
    return EXIT_OK if met else EXIT_NOT_MET


def _resolve(args: argparse.Namespace) -> tuple[Config, list[Any], dict[str, Any], dict[str, Any]]:
    """The config from the files, ``--set`` overrides and flags (the embedded demo when none names
    data), with the bar of a ``--from`` run where no target is given; also the files, the flags'
    settings and that inherited bar, which the checks that follow need."""
    files = list(args.config)
    if not files and not args.data and not args.from_run and DEMO_CONFIG.is_file():
        files = [DEMO_CONFIG]  # the embedded default: demo dataset and demo criteria
    extra = _extra(args)
    inherited = _inherited_bar(args, files, extra)
    if inherited:  # under the flags: a --max-params given now still wins
        extra = deep_merge({"criteria": inherited}, extra)
    config = build_config(files, args.overrides, extra)
    from advisor.verdicts.criteria import validate_metric_name

    validate_metric_name(config.criteria.metric)
    return config, files, extra, inherited


def _list_rungs(config: Config, fetch: bool) -> None:
    """Print the ladder's rungs (``--list-rungs``); with ``fetch`` (``--fetch-models``) fetch them first."""
    from advisor.models.ladder import ladder_table, load_ladder, materialise

    rungs = load_ladder(config.ladder.name)
    if fetch:
        for rung in rungs:
            if rung.optional and rung.name not in config.ladder.rungs and not config.ladder.probes:
                _progress(f"{rung.name}: optional, not fetched (add --set 'ladder.rungs=[{rung.name}]')")
                continue
            path = materialise(rung, config.ladder.cache_dir, progress=_progress)
            _progress(f"{rung.name}: ready at {path}")
    print(ladder_table(rungs, config.ladder.cache_dir))


def _print_answer(report: Report, config: Config) -> None:
    """The report as a table, its notes and the answer; where nothing passed, the closest model and,
    when a budget stopped the climb, what was spent against what was allowed."""
    from advisor.report.pages import lost_work_line, run_notes
    from advisor.report.render import answer_lines, to_table

    print(to_table(report))
    for line in run_notes(report):
        print(line)
    lost = lost_work_line(report)
    if lost:
        print(lost)
    print()
    for line in answer_lines(report, config.output.out):
        print(line)
    if not report.recommendation:
        closest = report.closest
        if closest:
            v = report.verdicts.get(closest)
            more = f"; about {v.rows_needed} validation rows would decide it" if v and v.rows_needed else ""
            where = Path(config.output.out) / "runs" / closest / "model"
            print(f"closest trained model: {closest}, kept in {where}{more}")
    if report.outcome == "budget":
        print(f"budget: {_budget_words(report)}")


def _budget_words(report: Any) -> str:
    """Spent against allowed for each budget, and what the next rung would have cost."""
    units = {"pflops": "PFLOPs", "kwh": "kWh", "seconds": "s"}
    parts = [
        f"spent {fmt_num(b['spent'])} of {fmt_num(b['allowed'])} {units[k]}"
        for k, b in report.details.get("budgets", {}).items()
    ]
    nxt = report.next_cost
    if nxt is not None:
        parts.append(
            f"the next step would have cost about {fmt_num(nxt.flops / 1e15)} PFLOPs"
            + (f", {fmt_num(nxt.wall_s)} s" if nxt.wall_s else "")
        )
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get("GREENLADDER_DEBUG") == "1"
    try:
        return run(argv)
    except GreenladderError as exc:
        if debug:
            raise
        print(f"advise: error: {exc}", file=sys.stderr)
        print("(set GREENLADDER_DEBUG=1 or pass --debug for the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        if debug or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a full disk can strike in any write (a checkpoint, a tokenizer file); the ledger holds what finished
        print(
            f"advise: error: the disk is full (writing {exc.filename or 'a file'}). Free disk space and rerun the "
            "same command: finished runs are kept in the ledger.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("advise: interrupted; finished runs are in the ledger and a rerun resumes", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
