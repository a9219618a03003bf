"""Does the embedded demo tell the same story on other split seeds? Runs it on several and prints one table.

Each seed runs the demo exactly as ``advise --task text-classification`` does (configs/demo.yaml),
with only ``data.split_seed`` changed, into its own run directory (a rerun resumes from the
ledgers). The table shows, per seed and run, the validation metric with its interval, the verdict
and the recommendation.

Usage::

    python benchmarks/demo_seeds.py                 # seeds 0,1,2
    python benchmarks/demo_seeds.py --seeds 0,1,2,3
    python benchmarks/demo_seeds.py --replay --set criteria.floor=0.75   # decisions at another floor

``--replay`` trains nothing: it reads the runs recorded in each seed's run directory and replays the
climb's decision function (``advisor.climb.policy.decide``) on them with the configuration given, so the
same trained runs can be judged at another floor or confidence. A run the replayed climb would ask
for and that is not recorded is reported as missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, markdown_table, say, set_threads  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "greenladder-bench" / "demo-seeds")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--replay", action="store_true", help="judge the recorded runs again; train nothing")
    p.add_argument("--set", action="append", default=[], help="section.key=value on top of configs/demo.yaml")
    args = p.parse_args()
    if args.replay:
        return replay(args)
    set_threads(2)
    from advisor.advise import advise
    from advisor.config.settings import CONFIG_DIR, build_config

    rows, picks = [], {}
    for seed in (int(s) for s in args.seeds.split(",")):
        out = args.work / f"seed-{seed}"
        config = build_config(
            [CONFIG_DIR / "demo.yaml"], overrides=[f"data.split_seed={seed}", f"output.out={out}", *args.set]
        )
        started = time.perf_counter()
        report = advise(config, progress=say)
        wall = time.perf_counter() - started
        doc = json.loads((out / "report.json").read_text())
        picks[seed] = report.recommendation
        metric = config.criteria.metric
        for run in [doc["baseline"], *doc["runs"]]:
            verdict = run.get("verdict") or {}
            # the interval the verdict was decided on (the decision level), else the 95 % one
            iv = verdict.get("interval") or run["intervals"].get(
                "cross_validation", run["intervals"].get("validation", {})
            ).get(metric)
            shown = f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] n={iv['n']}" if iv else ""
            test = run["intervals"].get("test", {}).get(metric)
            rows.append(
                [
                    seed,
                    run["run_id"],
                    shown,
                    verdict.get("state", ""),
                    f"{test['value']:.3f} [{test['low']:.3f}, {test['high']:.3f}]" if test else "",
                    "*" if run["run_id"] == report.recommendation else "",
                    f"{wall:.0f}" if run is doc["baseline"] else "",
                ]
            )
    headers = [
        "seed",
        "run",
        "validation (baseline: 5-fold CV) [decision level]",
        "verdict",
        "test [95%]",
        "pick",
        "wall s",
    ]
    same = len(set(picks.values())) == 1
    verdict = f"the recommendation is {'the same' if same else 'NOT the same'} on every seed: {picks}"
    _publish(args.out / "demo_seeds.md", "The demo on several split seeds", headers, rows, verdict)
    return 0 if same else 1


def _publish(path: Path, title: str, headers: list[str], rows: list[list], verdict: str) -> None:
    """Print the table and its verdict, and write them under ``title`` with the command that made them."""
    table = markdown_table(headers, rows)
    print(table)
    print(verdict)
    path.parent.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/demo_seeds.py {' '.join(sys.argv[1:])}"
    path.write_text(f"# {title}\n\nCommand: `{command}`\n\n{table}\n\n{verdict}\n", encoding="utf-8")
    say(f"wrote {path}")


def replay(args: argparse.Namespace) -> int:
    """The climb's decisions on each seed's recorded runs, under configs/demo.yaml plus ``--set``."""
    from advisor.climb.policy import Evidence, RungInfo, Stop, decide, verdicts
    from advisor.config.settings import CONFIG_DIR, build_config
    from advisor.data.task import column, load_task_data
    from advisor.models.ladder import load_ladder
    from advisor.store.ledger import Ledger
    from advisor.verdicts.stats import rows_for_margin

    rows, picks = [], {}
    for seed in (int(s) for s in args.seeds.split(",")):
        out = args.work / f"seed-{seed}"
        config = build_config([CONFIG_DIR / "demo.yaml"], overrides=[f"data.split_seed={seed}", *args.set])
        with Ledger(out) as ledger:
            recorded = {r.run_id: r for r in ledger.all()}
        # the validation labels, from the same split advise made (deterministic for a seed and floor)
        crit = config.criteria
        data = load_task_data(
            config.data, validation_rows=rows_for_margin(crit.floor, config.data.validation_margin, crit.confidence)
        )
        labels = tuple(int(y) for y in column(data.validation, "label"))
        k = len(data.label_names)
        rungs = tuple(RungInfo(r.name, r.params_non_embedding, r.optional) for r in load_ladder(config.ladder.name))
        runs: list = []
        while True:
            ev = Evidence(rungs, tuple(runs), labels, k)
            action = decide(ev, config)
            if isinstance(action, Stop):
                break
            run = recorded.get(getattr(action, "run_id", ""))
            if run is None:
                action = Stop(
                    f"{getattr(action, 'run_id', action)} would be trained next: not recorded", None, "missing"
                )
                break
            runs.append(run)
        picks[seed] = action.recommendation
        judged = verdicts(Evidence(rungs, tuple(runs), labels, k), config)
        for run in runs:
            v = judged[run.run_id]
            iv = v.interval or {}
            rows.append(
                [
                    seed,
                    run.run_id,
                    f"{iv.get('value', 0):.3f} [{iv.get('low', 0):.3f}, {iv.get('high', 0):.3f}] n={iv.get('n')}",
                    v.state,
                    "*" if run.run_id == action.recommendation else "",
                ]
            )
        rows.append([seed, "(stop)", action.reason[:120], action.outcome, ""])
    headers = ["seed", "run", f"{config.criteria.metric} at the decision level", "verdict", "pick"]
    same = len(set(picks.values())) == 1 and None not in picks.values()
    verdict = f"replayed with {args.set or 'configs/demo.yaml'}: the recommendation is {'the same' if same else 'NOT the same'} on every seed: {picks}"
    _publish(
        args.out / "demo_seeds-replay.md", "The demo's decisions replayed on recorded runs", headers, rows, verdict
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
