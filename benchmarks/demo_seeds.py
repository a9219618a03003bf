"""Does the embedded demo tell the same story on other split seeds? Runs it on several and prints one table.

Each seed runs the demo exactly as ``advise --task text-classification`` does (configs/demo.yaml),
with only ``data.split_seed`` changed, into its own run directory (a rerun resumes from the
ledgers). The table shows, per seed and run, the validation metric with its interval, the verdict
and the recommendation.

Usage::

    python benchmarks/demo_seeds.py                 # seeds 0,1,2
    python benchmarks/demo_seeds.py --seeds 0,1,2,3
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
    args = p.parse_args()
    set_threads(2)
    from advisor.advise import advise
    from advisor.config import CONFIG_DIR, build_config

    rows, picks = [], {}
    for seed in (int(s) for s in args.seeds.split(",")):
        out = args.work / f"seed-{seed}"
        config = build_config([CONFIG_DIR / "demo.yaml"], overrides=[f"data.split_seed={seed}", f"output.out={out}"])
        started = time.perf_counter()
        report = advise(config, progress=say)
        wall = time.perf_counter() - started
        doc = json.loads((out / "report.json").read_text())
        picks[seed] = report.recommendation
        metric = config.criteria.metric
        for run in [doc["baseline"], *doc["runs"]]:
            iv = run["intervals"].get("cross_validation", run["intervals"].get("validation", {})).get(metric)
            verdict = run.get("verdict") or {}
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
    headers = ["seed", "run", "validation (baseline: 5-fold CV) [95%]", "verdict", "test [95%]", "pick", "wall s"]
    table = markdown_table(headers, rows)
    same = len(set(picks.values())) == 1
    verdict = f"the recommendation is {'the same' if same else 'NOT the same'} on every seed: {picks}"
    print(table)
    print(verdict)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "demo_seeds.md"
    path.write_text(
        f"# The demo on several split seeds\n\nCommand: `python benchmarks/demo_seeds.py {' '.join(sys.argv[1:])}`\n\n"
        f"{table}\n\n{verdict}\n",
        encoding="utf-8",
    )
    say(f"wrote {path}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
