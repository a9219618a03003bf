"""Which linear head a frozen-encoder probe should fit: the shipped one against candidates, on the same embeddings.

For each dataset, split seed and encoder, the texts of the same splits ``benchmarks/adaptation.py``
uses (``--train-rows`` training rows, ``--eval-rows`` validation and test rows each) are embedded
once with the frozen encoder and the checkpoint's pooling (``advisor.training.probe.embed``). Every head is
fitted on the training embeddings with its regularisation C chosen by 5-fold cross-validation on
them (the grid of ``advisor.training.probe.C_GRID``) and scored on validation and test:

* ``standardised`` (what greenladder ships, ``advisor.training.probe.fit_head``): logistic regression on
  embeddings standardised per dimension;
* ``l2``: logistic regression on L2-normalised embeddings (the cosine geometry sentence encoders
  are trained for), no standardisation;
* ``l2+standardised``: both.

The table gives each head's mean validation and test accuracy and the paired test difference of
each candidate against the shipped head on the same rows (bootstrap over rows, pooled over seeds:
mean and the range of the per-seed 95 % bounds). A head replaces the shipped one only where the
difference holds across datasets and seeds.

    python benchmarks/probe_heads.py --data movie-sentences,uncertainty,bbc-news,drug-reviews-binary --seeds 0,1,2
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.adaptation import adaptation_split, split_parser  # noqa: E402
from benchmarks.common import data_slug, fmt, markdown_table, open_results, run_cli, say  # noqa: E402

HEADS = ("standardised", "l2", "l2+standardised")


def _parser() -> Any:
    return split_parser(__doc__, "folder for the split folders (shared with benchmarks/adaptation.py's --work)")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def head_predictions(head: str, e: dict[str, np.ndarray], y_train: list[int], k: int, seed: int) -> dict[str, Any]:
    """Fit ``head`` on the training embeddings; its C and its predictions on validation and test."""
    from advisor.training.probe import fit_head

    if head == "standardised":
        fitted = fit_head(e["train"], y_train, k, seed)
        return {"C": fitted.C, **{s: fitted.predict(e[s]) for s in ("validation", "test")}}
    unit = {s: _unit(v) for s, v in e.items()}
    if head == "l2+standardised":
        fitted = fit_head(unit["train"], y_train, k, seed)
        return {"C": fitted.C, **{s: fitted.predict(unit[s]) for s in ("validation", "test")}}
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from advisor.training.probe import C_GRID

    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    lr = LogisticRegression(max_iter=3000, random_state=seed)
    search = GridSearchCV(lr, {"C": list(C_GRID)}, cv=cv, scoring="accuracy").fit(unit["train"], y_train)
    best = search.best_estimator_
    return {"C": float(search.best_params_["C"]), **{s: best.predict(unit[s]) for s in ("validation", "test")}}


def _embed_splits(data: Any, encoder: str, max_length: int) -> dict[str, np.ndarray]:
    from advisor.data.task import column
    from advisor.models.ladder import load_ladder, materialise
    from advisor.models.loading import load_encoder
    from advisor.training.probe import checkpoint_pooling, embed
    from advisor.training.train import quiet_libraries

    rung = {r.name: r for r in load_ladder("offline")}[encoder]
    source = materialise(rung, None)
    with quiet_libraries():
        model, tok = load_encoder(str(source))
    pooling = checkpoint_pooling(source, rung.pooling)
    return {
        s: embed(model, tok, column(data.splits()[s], "text"), pooling, max_length)
        for s in ("train", "validation", "test")
    }


def _rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    from advisor.verdicts.stats import paired_gain

    rows = []
    keys = sorted({(r["data"], r["encoder"]) for r in results})
    for data, encoder in keys:
        mine = [r for r in results if (r["data"], r["encoder"]) == (data, encoder)]
        for head in HEADS:
            val = statistics.mean(r["heads"][head]["validation_accuracy"] for r in mine)
            test = statistics.mean(r["heads"][head]["test_accuracy"] for r in mine)
            gain = ""
            if head != "standardised":
                gains = [
                    paired_gain(
                        "accuracy",
                        r["test_labels"],
                        r["heads"][head]["test"],
                        r["heads"]["standardised"]["test"],
                        r["num_labels"],
                        0.95,
                        seed=r["seed"],
                    )
                    for r in mine
                ]
                gain = (
                    f"{statistics.mean(g.points for g in gains):+.1f} "
                    f"[{min(g.low for g in gains):+.1f}, {max(g.high for g in gains):+.1f}]"
                )
            cs = ", ".join(fmt(r["heads"][head]["C"], 2) for r in mine)
            rows.append([data, encoder, head, len(mine), fmt(val), fmt(test), cs, gain])
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def name(a: Any) -> tuple[str, str]:
        slug = "_".join(data_slug(d.strip()) for d in a.data.split(","))
        return f"probe_heads-{slug}-{a.train_rows}rows", "Which linear head a frozen-encoder probe fits"

    writer, title = open_results("probe_heads.py", argv, args, name, "dataset-seed-encoder's heads")
    from advisor.data.task import column

    work = Path(args.work or "/tmp/greenladder-bench/adaptation")
    results: list[dict[str, Any]] = []
    for source in [d.strip() for d in args.data.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            data, _ = adaptation_split(source, seed, args, work)
            y_train = [int(v) for v in column(data.train, "label")]
            labels = {s: [int(v) for v in column(data.splits()[s], "label")] for s in ("validation", "test")}
            for encoder in [e.strip() for e in args.encoders.split(",")]:
                e = _embed_splits(data, encoder, args.max_length)
                heads = {}
                for head in HEADS:
                    out = head_predictions(head, e, y_train, len(data.label_names), seed)
                    acc = {s: float(np.mean(np.asarray(out[s]) == np.asarray(labels[s]))) for s in labels}
                    heads[head] = {
                        "C": out["C"],
                        "validation_accuracy": acc["validation"],
                        "test_accuracy": acc["test"],
                        "test": [int(p) for p in out["test"]],
                    }
                row = {
                    "data": data_slug(source),
                    "seed": seed,
                    "encoder": encoder,
                    "num_labels": len(data.label_names),
                    "test_labels": labels["test"],
                    "heads": heads,
                }
                say(
                    f"{row['data']} seed {seed} {encoder}: "
                    + ", ".join(
                        f"{h} val {heads[h]['validation_accuracy']:.3f} test {heads[h]['test_accuracy']:.3f}"
                        for h in HEADS
                    )
                )
                writer.record(f"{row['data']}-{seed}-{encoder}", row)
                results.append(row)
    head = [
        "data",
        "encoder",
        "head",
        "seeds",
        "val acc (mean)",
        "test acc (mean)",
        "C per seed",
        "paired test gain over standardised (points)",
    ]
    notes = [
        "the same embeddings for every head; C by 5-fold cross-validation on the training rows",
        "paired: head minus standardised on the same test rows, mean over seeds [min, max of the per-seed 95 % "
        "bootstrap bounds]",
    ]
    writer.finish(title, [markdown_table(head, _rows(results))], notes, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
