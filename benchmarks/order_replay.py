"""Which order of the climb's steps costs least: adaptation's recorded runs replayed under two orders.

``benchmarks/adaptation.py`` trains every step of every dataset-seed once and keeps each run
directory (``--work``). This script trains nothing: it reads those run directories back
(``report.json`` through :meth:`advisor.outcome.Report.from_json`, the test predictions adaptation
saved), and replays greenladder's decision function on them, as adaptation does, at the same three
floors per dataset-seed, under:

* **training FLOPs** (what ships): steps ordered by their forecast training FLOPs
  (:func:`advisor.climb.steps.order_steps`);
* **training + evaluation FLOPs**: the same forecasts with each step's evaluation passes added;
* **fine-tunes only**: no probes, the fine-tunes in ladder order (the reference the ratios divide by).

For each climb: the recommendation, whether it meets the floor on test, and the FLOPs spent to reach
it over those of the fine-tunes-only climb.

Usage::

    python benchmarks/adaptation.py --data movie-sentences,uncertainty,bbc-news,drug-reviews-binary --work /tmp/adapt
    python benchmarks/order_replay.py --data movie-sentences,uncertainty,bbc-news,drug-reviews-binary --work /tmp/adapt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.adaptation import FLOOR_OFFSETS, adaptation_config, replay, split_parser, step_order  # noqa: E402
from benchmarks.common import BenchError, fmt, markdown_table, open_results, run_cli, say  # noqa: E402

ORDERS = ("training FLOPs", "training + evaluation FLOPs")


def _name(args: Any) -> tuple[str, str]:
    slug = "_".join(d.strip() for d in args.data.split(","))
    return f"order_replay-{slug}-{args.train_rows}rows", "The climb's step order replayed on adaptation's runs"


def _by_total(order: Any, config: Any, data: Any, out: Path) -> tuple[Any, ...]:
    """``order``'s steps sorted by forecast training + evaluation FLOPs instead of training alone."""
    from transformers import AutoTokenizer

    from advisor.climb.executor import ladder_rungs
    from advisor.climb.steps import step_flops
    from advisor.data.task import column

    rungs = {r.name: r for r in ladder_rungs(config)}
    tok = AutoTokenizer.from_pretrained(str(next(p for p in (out / "runs").glob("*-probe/model/encoder"))))
    limit = config.train.max_length

    def lengths(split: Any) -> list[int]:
        return [len(x) for x in tok(column(split, "text"), truncation=True, max_length=limit)["input_ids"]]

    train, val, k = lengths(data.train), lengths(data.validation), len(data.label_names)
    return tuple(sorted(order, key=lambda s: sum(step_flops(s, rungs[s.encoder], train, val, k, config))))


def _climbs(source: str, seed: int, args: Any, work: Path) -> list[dict[str, Any]]:
    """Every floor of one dataset-seed under every order (and fine-tunes only), from its recorded runs."""
    from advisor.data.task import column, load_task_data
    from advisor.outcome import Report

    config, out = adaptation_config(source, seed, args, work)
    if not (out / "report.json").is_file() or not (out / "test_predictions.json").is_file():
        raise BenchError(f"{out}: no recorded adaptation run; run benchmarks/adaptation.py with --work {work} first")
    report = Report.from_json(json.loads((out / "report.json").read_text(encoding="utf-8")))
    test = json.loads((out / "test_predictions.json").read_text(encoding="utf-8"))
    data = load_task_data(config.data)
    y = [int(v) for v in column(data.test, "label")]
    shipped = step_order(config, data, out)
    orders = {ORDERS[0]: shipped, ORDERS[1]: _by_total(shipped, config, data, out)}
    rows = []
    for offset in FLOOR_OFFSETS:
        floor = round(report.verdicts["baseline"].interval["value"] + offset, 3)
        alone = replay(report, config, data, floor, False, shipped)
        for name, order in orders.items():
            r = replay(report, config, data, floor, True, order)
            rec = r["stop"].recommendation if r.get("stop") is not None else None
            accuracy = None if rec is None else sum(int(p == t) for p, t in zip(test[rec], y, strict=True)) / len(y)
            rows.append(
                {
                    "data": source,
                    "seed": seed,
                    "floor": floor,
                    "order": name,
                    "steps": " > ".join(s.name for s in order),
                    "recommendation": rec,
                    "test": accuracy,
                    "meets_on_test": None if accuracy is None else accuracy >= floor,
                    "ratio": r.get("flops", 0.0) / alone["flops"] if alone.get("flops") else None,
                    "taken": r["taken"],
                }
            )
    say(f"{source} seed {seed}: replayed")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = split_parser(__doc__, "the folder adaptation.py trained into (its --work)")
    p.add_argument("--epochs", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.work is None:
        raise BenchError("--work: name the folder benchmarks/adaptation.py trained into (this script trains nothing)")
    writer, title = open_results("order_replay.py", argv, args, _name, "dataset-seed's climbs")
    rows: list[dict[str, Any]] = []
    for source in (d.strip() for d in args.data.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            mine = _climbs(source, seed, args, Path(args.work))
            writer.record(f"{source}-{seed}", mine)
            rows += mine
    headers = [
        "data",
        "seed",
        "floor",
        "order",
        "recommendation",
        "test acc.",
        "meets floor on test",
        "FLOPs ÷ fine-tunes only",
    ]
    table = [
        [
            r["data"],
            r["seed"],
            r["floor"],
            r["order"],
            r["recommendation"] or "none",
            fmt(r["test"]),
            {True: "yes", False: "NO", None: "—"}[r["meets_on_test"]],
            fmt(r["ratio"]) if r["ratio"] is not None else "n/a",
        ]
        for r in rows
    ]
    differ = [
        (a, b)
        for a, b in zip(rows[::2], rows[1::2], strict=True)
        if (a["ratio"], a["recommendation"]) != (b["ratio"], b["recommendation"])
    ]
    notes = [
        "Orders: "
        + "; ".join(f"{name}: {r['steps']}" for name, r in zip(ORDERS, rows[:2], strict=True))
        + " (first dataset-seed).",
        f"The two orders differ in {len(differ)} of {len(rows) // 2} climbs: "
        + "; ".join(
            f"{a['data']} seed {a['seed']} floor {a['floor']}: {fmt(a['ratio'])} → {fmt(b['ratio'])}" for a, b in differ
        )
        + ".",
        "Replayed with greenladder's decide() on the runs adaptation.py recorded (one trial per fine-tune rung, no "
        "distillation); nothing is trained. Test accuracy from the test predictions adaptation.py saved.",
    ]
    writer.finish(title, [markdown_table(headers, table)], notes, {"climbs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
