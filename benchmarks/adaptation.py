"""Probes against fine-tunes: every encoder of the ladder both ways on the same splits, then the climb with and without probe rungs.

For each dataset and split seed, ``advise`` itself trains every step once (the TF-IDF baseline, each
encoder's frozen-encoder probe and its fine-tune with the default trial; the floor is set out of
reach so that no step stops the climb, ``ladder.rungs`` names every encoder so that the optional
mpnet-base is fine-tuned too, and every model is kept). The benchmark then scores every saved model
on the test split and prints:

1. per encoder, the probe and the fine-tune: validation (cross-validated for probes) and test
   accuracy with 95 % intervals, training PFLOPs, kWh and wall seconds; the paired test difference
   of each probe against the fine-tune of the same encoder and against the next smaller encoder's
   fine-tune (McNemar-style paired bootstrap on the same test rows), pooled over seeds;
2. the climb replayed with greenladder's own decision function (``advisor.climb.policy.decide``, one
   trial per fine-tune rung, no distillation) at three floors per dataset, with probe rungs (steps
   in order of forecast training FLOPs, :mod:`advisor.climb.steps`) and without (fine-tunes in ladder
   order): the recommendation, whether it meets the floor on test, and the FLOPs spent to reach it.
   The floors are the baseline's cross-validated accuracy plus 2, 5 and 8 points, fixed before any
   transformer result is read.

Usage::

    python benchmarks/adaptation.py --data movie-sentences,uncertainty --seeds 0,1,2 --train-rows 400
    python benchmarks/adaptation.py --data my.csv --encoders minilm-l3,minilm-l6
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    add_run_options,
    benchmark_parser,
    data_slug,
    fixed_split,
    fmt,
    markdown_table,
    open_results,
    run_cli,
    say,
)

PFLOP = 1e15
FLOOR_OFFSETS = (0.02, 0.05, 0.08)


def split_parser(doc: str | None, work_help: str) -> Any:
    """The options of the benchmarks that run on adaptation's splits (this one, probe_heads.py)."""
    p = benchmark_parser(doc, "movie-sentences,uncertainty", "datasets, comma-separated (built-in names or files)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--encoders", default="minilm-l3,minilm-l6,mpnet-base", help="rungs of the offline ladder")
    p.add_argument("--train-rows", type=int, default=400)
    p.add_argument("--eval-rows", type=int, default=300, help="validation and test rows each")
    p.add_argument("--max-length", type=int, default=64)
    add_run_options(p, work_help)
    return p


def adaptation_split(source: str, seed: int, args: Any, work: Path) -> tuple[Any, Path]:
    """The split of ``source`` at ``seed`` every method is compared on, saved under ``work/splits``."""
    return fixed_split(
        source,
        f"adapt-{data_slug(source)}",
        train_rows=args.train_rows,
        eval_rows=args.eval_rows,
        seed=seed,
        root=work / "splits",
    )


def _parser() -> Any:
    p = split_parser(__doc__, "folder for the split folders and run directories (kept; a rerun resumes from them)")
    p.add_argument("--epochs", type=float, default=3.0)
    return p


def _train_all(source: str, seed: int, args: Any, work: Path) -> tuple[Any, Any, Path]:
    """Every step of the climb once, by ``advise`` itself, into ``work``; (config, report, run dir)."""
    from advisor.advise import advise

    config, out = adaptation_config(source, seed, args, work)
    report = advise(config, progress=say)
    return config, report, out


def adaptation_config(source: str, seed: int, args: Any, work: Path) -> tuple[Any, Path]:
    """The config every step of ``source`` at ``seed`` is trained with, and its run directory."""
    from advisor.config.settings import build_config

    _, folder = adaptation_split(source, seed, args, work)
    out = work / "runs" / f"{data_slug(source)}-{args.train_rows}-{args.eval_rows}-seed{seed}"
    config = build_config(
        overrides=[
            f"data.source={folder}",
            f"data.split_seed={seed}",
            "criteria.floor=1.0",  # out of reach: every step is taken
            f"ladder.rungs=[{args.encoders}]",
            "ladder.probes=true",
            "ladder.distil_on_ceiling=false",
            "tuning.trials_per_rung=1",
            f"train.max_length={args.max_length}",
            f"train.epochs={args.epochs}",
            f"train.seed={seed}",
            "output.keep_checkpoints=true",
            "output.keep_closest=true",
            f"output.out={out}",
        ]
    )
    return config, out


def _test_predictions(run: Any, out: Path, data: Any, config: Any) -> list[int]:
    """The run's saved model on the test split (the baseline's were recorded when it was fitted)."""
    from advisor.data.task import column
    from advisor.models.loading import load_for_classification
    from advisor.training.inference import predict_labels
    from advisor.training.probe import ProbeModel
    from advisor.training.train import quiet_libraries

    if run.test_predictions:
        return list(run.test_predictions)
    cache = out / "test_predictions.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if run.run_id not in known:
        folder, texts = out / str(run.artifact), column(data.test, "text")
        with quiet_libraries():
            if run.candidate.kind == "probe":
                preds = ProbeModel(folder).predict(texts)
            else:
                model, tok = load_for_classification(str(folder), data.label_names)
                preds = predict_labels(model, tok, texts, config.train.max_length)
        known[run.run_id] = [int(p) for p in preds]
        cache.write_text(json.dumps(known))
    return known[run.run_id]


def replay(report: Any, config: Any, data: Any, floor: float, probes: bool, order: Any) -> dict[str, Any]:
    """The climb's decisions on the recorded runs at ``floor``: what it takes, where it stops."""
    import dataclasses

    from advisor.climb import policy
    from advisor.data.task import column

    crit = dataclasses.replace(config.criteria, floor=floor)
    ladder = dataclasses.replace(config.ladder, probes=probes)
    cfg = dataclasses.replace(config, criteria=crit, ladder=ladder)
    steps = tuple(s for s in order if probes or s.method == "finetune")
    if not probes:  # without probes the fine-tunes are climbed in ladder order
        steps = tuple(sorted(steps, key=lambda s: [r.strip() for r in config.ladder.rungs].index(s.name)))
    recorded = {r.run_id: r for r in [report.baseline, *report.runs]}
    taken: list[Any] = []
    labels = tuple(int(y) for y in column(data.validation, "label"))
    while True:
        evidence = policy.Evidence(steps, tuple(taken), labels, len(data.label_names))
        action = policy.decide(evidence, cfg)
        if isinstance(action, policy.Stop):
            return {"stop": action, "taken": [r.run_id for r in taken], "flops": sum(r.cost.flops for r in taken)}
        run = recorded.get(getattr(action, "run_id", "baseline"))
        if run is None:
            return {"stop": None, "taken": [r.run_id for r in taken], "missing": getattr(action, "run_id", "?")}
        taken.append(run)


def step_order(config: Any, data: Any, out: Path) -> Any:
    from transformers import AutoTokenizer

    from advisor.climb import steps
    from advisor.climb.executor import ladder_rungs
    from advisor.data.task import column

    rungs = ladder_rungs(config)
    tok = AutoTokenizer.from_pretrained(str(next(p for p in (out / "runs").glob("*-probe/model/encoder"))))

    def lengths(split: Any) -> list[int]:
        ids = tok(column(split, "text"), truncation=True, max_length=config.train.max_length)["input_ids"]
        return [len(x) for x in ids]

    k = len(data.label_names)
    return steps.order_steps(
        steps.steps_for(rungs, config), rungs, lengths(data.train), lengths(data.validation), k, config
    )


def _acc_iv(labels: list[int], preds: list[int], k: int) -> Any:
    from advisor.verdicts.stats import metric_interval

    return metric_interval("accuracy", labels, preds, k, 0.95)


def _name(args: Any) -> tuple[str, str]:
    from benchmarks.common import safe_name

    slug = "_".join(data_slug(d.strip()) for d in args.data.split(","))
    return safe_name(
        f"adaptation-{slug}-{args.train_rows}rows"
    ), "Probes against fine-tunes, and the climb with and without probe rungs"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    writer, title = open_results("adaptation.py", argv, args, _name, "dataset-seed's runs")
    from advisor.data.task import column
    from advisor.verdicts.stats import paired_gain

    work = Path(args.work or "/tmp/greenladder-bench/adaptation")
    encoders = [e.strip() for e in args.encoders.split(",")]
    sources = [d.strip() for d in args.data.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    per_run: list[dict[str, Any]] = []
    climbs: list[dict[str, Any]] = []
    for source in sources:
        for seed in seeds:
            config, report, out = _train_all(source, seed, args, work)
            from advisor.data.task import load_task_data

            data = load_task_data(config.data)
            k, y = len(data.label_names), [int(v) for v in column(data.test, "label")]
            runs = {r.run_id: r for r in [report.baseline, *report.runs]}
            test = {rid: _test_predictions(r, out, data, config) for rid, r in runs.items() if r.status != "failed"}
            for rid, run in runs.items():
                if rid not in test:
                    continue
                row = {"data": source, "seed": seed, "run": rid, "kind": run.candidate.kind}
                iv = report.verdicts[rid].interval if rid in report.verdicts else None
                row["val"] = run.metrics.get("accuracy")
                row["val_iv"] = [iv["low"], iv["high"], iv["n"]] if iv else None
                t = _acc_iv(y, test[rid], k)
                row.update(test=t.value, test_iv=[t.low, t.high, t.n])
                row.update(pflops=run.cost.train_flops / PFLOP, all_pflops=run.cost.flops / PFLOP)
                row.update(kwh=run.cost.energy_kwh, wall_s=run.cost.wall_s)
                for other in (rid.replace("-probe", "-t1"), _smaller(rid, encoders)):
                    if run.candidate.kind == "probe" and other in test:
                        g = paired_gain("accuracy", y, test[rid], test[other], k, 0.95)
                        row[f"vs {other}"] = [g.points, g.low, g.high]
                per_run.append(row)
            order = step_order(config, data, out)
            base_cv = report.verdicts["baseline"].interval["value"]
            for offset in FLOOR_OFFSETS:
                floor = round(base_cv + offset, 3)
                for probes in (True, False):
                    r = replay(report, config, data, floor, probes, order)
                    stop, rec = r.get("stop"), None
                    rec = stop.recommendation if stop is not None else None
                    met = None if rec is None else _acc_iv(y, test[rec], k).value >= floor
                    climbs.append(
                        {
                            "data": source,
                            "seed": seed,
                            "floor": floor,
                            "probes": probes,
                            "recommendation": rec,
                            "test": None if rec is None else _acc_iv(y, test[rec], k).value,
                            "meets_on_test": met,
                            "pflops": r.get("flops", 0.0) / PFLOP,
                            "taken": r["taken"],
                            "missing": r.get("missing"),
                        }
                    )
    tables = [_runs_table(per_run), _climb_table(climbs)]
    notes = [
        "val: the interval the verdict was decided on (cv = cross-validated over train + validation for the baseline "
        "and probes) at the climb's decision level; test: Wilson 95 % on the test rows",
        "paired: probe minus fine-tune on the same test rows, points, mean over seeds [min, max of the per-seed 95 % "
        "bootstrap bounds]",
        "climb: greenladder's decide() replayed on the recorded runs, 1 trial per fine-tune rung; floors = the "
        "baseline's cv accuracy + 2, 5, 8 points",
    ]
    writer.finish(title, tables, notes, {"runs": per_run, "climbs": climbs})
    return 0


def _smaller(run_id: str, encoders: list[str]) -> str:
    name = run_id.removesuffix("-probe")
    i = encoders.index(name) if name in encoders else 0
    return f"{encoders[i - 1]}-t1" if i > 0 else ""


def _runs_table(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["run"]), []).append(r)
    out = []
    for (data, run), rs in groups.items():
        pairs = sorted({k for r in rs for k in r if k.startswith("vs ")})
        paired = "; ".join(
            f"{k} {statistics.mean(r[k][0] for r in rs if k in r):+.1f} "
            f"[{min(r[k][1] for r in rs if k in r):+.1f}, {max(r[k][2] for r in rs if k in r):+.1f}]"
            for k in pairs
        )
        out.append(
            [
                data,
                run,
                len(rs),
                fmt(statistics.mean(r["val"] for r in rs if r["val"] is not None)),
                fmt(statistics.mean(r["test"] for r in rs)),
                f"{min(r['test_iv'][0] for r in rs):.3f}-{max(r['test_iv'][1] for r in rs):.3f}",
                fmt(statistics.mean(r["pflops"] for r in rs)),
                fmt(statistics.mean(r["kwh"] for r in rs)),
                fmt(statistics.mean(r["wall_s"] for r in rs)),
                paired,
            ]
        )
    head = [
        "data",
        "run",
        "seeds",
        "val acc (mean)",
        "test acc (mean)",
        "test 95% bounds (min-max)",
        "train PFLOPs",
        "kWh",
        "wall s",
        "paired test gain of the probe (points)",
    ]
    return markdown_table(head, out)


def _climb_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        out.append(
            [
                r["data"],
                r["seed"],
                r["floor"],
                "with probes" if r["probes"] else "fine-tunes only",
                r["recommendation"] or ("(missing " + r["missing"] + ")" if r.get("missing") else "none"),
                fmt(r["test"]) if r["test"] is not None else "",
                {True: "yes", False: "NO", None: "-"}[r["meets_on_test"]],
                fmt(r["pflops"]),
                " > ".join(r["taken"]),
            ]
        )
    ratio_rows = []
    keys = {(r["data"], r["seed"], r["floor"]) for r in rows}
    for key in sorted(keys):
        pair = {r["probes"]: r for r in rows if (r["data"], r["seed"], r["floor"]) == key}
        if True in pair and False in pair and pair[False]["pflops"] > 0:
            ratio_rows.append([*key, fmt(pair[True]["pflops"] / pair[False]["pflops"])])
    head = [
        "data",
        "seed",
        "floor",
        "climb",
        "recommendation",
        "its test acc",
        "meets floor on test",
        "PFLOPs to stop",
        "steps taken",
    ]
    return (
        markdown_table(head, out)
        + "\n\n"
        + markdown_table(["data", "seed", "floor", "PFLOPs with probes / without"], ratio_rows)
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
