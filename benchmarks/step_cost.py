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
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from advisor.models import load_for_classification, load_ladder, materialise


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = 3 if args.quick else args.steps
    rungs = [r for r in load_ladder("offline") if r.name in ("minilm-l3", "minilm-l6")]
    print(f"batch {args.batch} x {args.tokens} tokens, {args.threads} threads, median of {steps} steps, AdamW")
    print(f"{'rung':<10} {'embeddings':<11} {'dropout':<8} {'step s':>8} {'trainable params':>17}")
    results = {}
    for rung in rungs:
        model, _ = load_for_classification(str(materialise(rung)), ["a", "b"])
        torch.manual_seed(0)
        ids = torch.randint(1000, 20000, (args.batch, args.tokens))
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (args.batch,))}
        for freeze, dropout in ((False, True), (True, True), (False, False)):
            t = statistics.median(_step_times(model, batch, freeze, steps, dropout))
            n = sum(p.numel() for p in model.parameters() if p.requires_grad)
            results[(rung.name, freeze, dropout)] = t
            print(
                f"{rung.name:<10} {'frozen' if freeze else 'trainable':<11} {'on' if dropout else 'off':<8} "
                f"{t:>8.3f} {n:>17,}"
            )
        if args.profile and rung.name == "minilm-l6":
            from torch.profiler import ProfilerActivity, profile

            model.get_input_embeddings().requires_grad_(True)  # type: ignore[operator]
            _set_dropout(model, True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                _step_times(model, batch, False, 2)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    for name in ("minilm-l3", "minilm-l6"):
        if (name, False, True) in results:
            base = results[(name, False, True)]
            print(
                f"{name}: freezing the word embeddings makes a step {base / results[(name, True, True)]:.2f}x faster; "
                f"turning dropout off, {base / results[(name, False, False)]:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
