"""Where a short-sequence training step goes on CPU, and what freezing the word embeddings saves.

At batch 32 x 64 tokens a 3-layer and a 6-layer MiniLM took about the same time per step, so
the cost sat outside the transformer layers. The prime suspect is the 30,522 x 384 word-embedding
matrix: its dense gradient and its AdamW update touch 11.7M parameters per step, more than the
encoder layers of MiniLM-L6 hold. This script times steps with the embeddings trainable and
frozen (median of repeats, AdamW as in training), and with ``--profile`` prints the top operators
from torch.profiler for one configuration.

    python benchmarks/step_cost.py              # MiniLM-L3 and -L6 from the offline ladder
    python benchmarks/step_cost.py --quick      # fewer repeats
    python benchmarks/step_cost.py --profile    # also the operator table for MiniLM-L6, trainable embeddings
    python benchmarks/step_cost.py --quick --data "my data/sentences.csv" --out /tmp/results

Without ``--data`` the batch is random token ids; with it, the first texts of the data's training
split, tokenised by each rung and padded or cut to ``--tokens``. Each measured row is appended to
``<out>/<name>.jsonl`` as it is timed; ``<name>`` comes from the data's slug (file stem + content hash).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import data_slug, markdown_table, open_results, run_cli

from advisor.models.ladder import load_ladder, materialise
from advisor.models.loading import load_for_classification


def _set_dropout(model: torch.nn.Module, on: bool) -> None:
    """Zero every dropout probability (BERT's attention reads ``self.dropout.p`` too), or restore it."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m._p_trained = getattr(m, "_p_trained", m.p)  # type: ignore[attr-defined]
            m.p = m._p_trained if on else 0.0  # type: ignore[attr-defined]


def _step_times(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], freeze: bool, steps: int, dropout: bool = True
) -> list[float]:
    model.get_input_embeddings().requires_grad_(not freeze)  # type: ignore[operator]
    _set_dropout(model, dropout)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
    return times


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="built-in name, a file or a folder (default: random token ids)")
    p.add_argument("--out", default=None, help="folder for the results (default benchmarks/results/)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="3 steps per configuration instead of --steps")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.slug = data_slug(args.data) if args.data else "random-ids"  # a missing file fails here
    return args


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    """File name and title of the results, from the data's slug."""
    quick = " (quick)" if args.quick else ""
    return f"step_cost-{args.slug}" + ("-quick" if args.quick else ""), f"Training step cost on {args.slug}{quick}"


def _batch(args: argparse.Namespace, tokenizer: object, texts: list[str] | None, labels: list[int] | None) -> dict:
    """One training batch: ``--batch`` rows of ``--tokens`` tokens, from the data or random ids."""
    if texts is None or labels is None:
        torch.manual_seed(0)
        ids = torch.randint(1000, 20000, (args.batch, args.tokens))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (args.batch,))}
    rows = [i % len(texts) for i in range(args.batch)]
    enc = tokenizer(  # type: ignore[operator]
        [texts[i] for i in rows], truncation=True, max_length=args.tokens, padding="max_length", return_tensors="pt"
    )
    return {**dict(enc), "labels": torch.tensor([labels[i] for i in rows])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("step_cost.py", argv, args, result_name, "row")
    steps = 3 if args.quick else args.steps
    texts, labels, label_names = None, None, ["a", "b"]
    if args.data:
        from advisor.config.settings import DataConfig
        from advisor.data.task import column, load_task_data

        data = load_task_data(DataConfig(source=args.data))
        texts, labels, label_names = column(data.train, "text"), column(data.train, "label"), list(data.label_names)
    rungs = [r for r in load_ladder("offline") if r.name in ("minilm-l3", "minilm-l6")]
    batch_text = f"batch {args.batch} x {args.tokens} tokens ({args.slug})"
    print(f"{batch_text}, {args.threads} threads, median of {steps} steps, AdamW")
    print(f"{'rung':<10} {'embeddings':<11} {'dropout':<8} {'step s':>8} {'trainable params':>17}")
    results = {}
    rows = []
    for rung in rungs:
        model, tok = load_for_classification(str(materialise(rung)), label_names)
        batch = _batch(args, tok, texts, labels)
        for freeze, dropout in ((False, True), (True, True), (False, False)):
            t = statistics.median(_step_times(model, batch, freeze, steps, dropout))
            n = sum(p.numel() for p in model.parameters() if p.requires_grad)
            results[(rung.name, freeze, dropout)] = t
            emb = "frozen" if freeze else "trainable"
            print(f"{rung.name:<10} {emb:<11} {'on' if dropout else 'off':<8} {t:>8.3f} {n:>17,}", flush=True)
            row = {"rung": rung.name, "embeddings": emb, "dropout": dropout, "step_s": t, "trainable_params": n}
            rows.append(row)
            writer.record(f"{rung.name} {emb} dropout {'on' if dropout else 'off'}", row)
        if args.profile and rung.name == "minilm-l6":
            from torch.profiler import ProfilerActivity, profile

            model.get_input_embeddings().requires_grad_(True)  # type: ignore[operator]
            _set_dropout(model, True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                _step_times(model, batch, False, 2)
            operators = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
            print(operators)
            writer.record("profile minilm-l6", operators)
    notes = [f"{batch_text}, {args.threads} threads, median of {steps} steps after 2 warm-up steps, AdamW."]
    for rung_name in ("minilm-l3", "minilm-l6"):
        if (rung_name, False, True) in results:
            base = results[(rung_name, False, True)]
            line = (
                f"{rung_name}: freezing the word embeddings makes a step {base / results[(rung_name, True, True)]:.2f}x "
                f"faster; turning dropout off, {base / results[(rung_name, False, False)]:.2f}x"
            )
            print(line)
            notes.append(line + ".")
    table = markdown_table(
        ["rung", "embeddings", "dropout", "step s (median)", "trainable params"],
        [
            [r["rung"], r["embeddings"], "on" if r["dropout"] else "off", r["step_s"], r["trainable_params"]]
            for r in rows
        ],
    )
    writer.finish(title, [table], notes, {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
