"""How much slower does training get when it is metered? Target: at most 3% wall time.

Trains the same small BERT (random init, synthetic token ids of varied lengths, fixed steps) with
and without metering (``advisor.cost.Meter`` with codecarbon + ``MeteringCallback``), alternating
which goes first in each repeat, and prints the median wall time of each and their ratio. The
metered time includes starting and stopping codecarbon's tracker; codecarbon's one-off hardware
probe (once per process) is taken by a warm-up run and printed separately.

    python benchmarks/metering_overhead.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from advisor.config import MeteringConfig
from advisor.cost import Meter, MeteringCallback

VOCAB = 1000


def _config(layers: int, hidden: int) -> BertConfig:
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 2),
        intermediate_size=4 * hidden,
        num_labels=2,
    )


def _data(n: int, max_len: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, max_len + 1, (n,), generator=g).tolist()
    ids = [torch.randint(5, VOCAB, (length,), generator=g).tolist() for length in lengths]
    return Dataset.from_dict({"input_ids": ids, "label": [i % 2 for i in range(n)]})


def _collate(features: list[dict]) -> dict[str, torch.Tensor]:
    length = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros(len(features), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, f in enumerate(features):
        ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[row, : len(f["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["label"] for f in features])}


def train_once(args: argparse.Namespace, data: Dataset, metered: bool) -> tuple[float, float, float]:
    """Wall and CPU seconds of one fixed-step training (metering included when ``metered``), and its FLOPs."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(_config(args.layers, args.hidden))
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-4,
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
            seed=0,
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        meter = Meter(MeteringConfig(country_iso_code=args.country), phase="benchmark") if metered else None
        with meter if meter is not None else contextlib.nullcontext():
            callbacks = [MeteringCallback(meter)] if meter is not None else []
            trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=_collate, callbacks=callbacks)
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            trainer.train()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return wall, cpu, meter.cost.flops if meter is not None else 0.0


def component_costs(args: argparse.Namespace, data: Dataset, repeats: int = 200) -> tuple[float, float]:
    """Seconds per forward spent in the counting hook, and seconds of one (warm) Meter start + stop.

    Timed in isolation, these do not depend on how busy the machine is as much as whole runs do.
    """
    model = BertForSequenceClassification(_config(args.layers, args.hidden))
    batch = _collate([data[i] for i in range(args.batch_size)])
    started = time.perf_counter()
    with Meter(MeteringConfig(country_iso_code=args.country), phase="benchmark") as meter:
        pass
    start_stop = time.perf_counter() - started
    callback = MeteringCallback(meter)
    with Meter(MeteringConfig(enabled=False, codecarbon=False)) as counting:
        callback.meter = counting
        callback.attach(model)
        started = time.perf_counter()
        for _ in range(repeats):
            callback._on_forward(model, (), batch)
        per_forward = (time.perf_counter() - started) / repeats
    return per_forward, start_stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (about a minute on 2 CPU cores)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 60, quick 20)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each variant (default 5, quick 3)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=64, help="longest synthetic sequence")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--country", default="USA", help="grid for the emissions figure")
    args = parser.parse_args(argv)
    args.steps = args.steps if args.steps is not None else (20 if args.quick else 60)
    args.repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    data = _data(args.steps * args.batch_size, args.max_len, seed=0)
    probe_started = time.perf_counter()
    train_once(args, data, metered=True)  # warm-up; pays codecarbon's once-per-process hardware probe
    train_once(args, data, metered=False)
    probe_s = time.perf_counter() - probe_started

    plain: list[float] = []
    metered: list[float] = []
    plain_cpu: list[float] = []
    metered_cpu: list[float] = []
    flops = 0.0
    for repeat in range(args.repeats):
        for is_metered in (True, False) if repeat % 2 == 0 else (False, True):
            wall, cpu, run_flops = train_once(args, data, is_metered)
            (metered if is_metered else plain).append(wall)
            (metered_cpu if is_metered else plain_cpu).append(cpu)
            flops = run_flops or flops
    per_forward, start_stop = component_costs(args, data)

    p, m = statistics.median(plain), statistics.median(metered)
    pc, mc = statistics.median(plain_cpu), statistics.median(metered_cpu)
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"BERT {args.layers} layers x {args.hidden} hidden, {args.steps} steps of batch {args.batch_size}, "
        f"lengths 8-{args.max_len}, {args.repeats} repeats, {device}"
    )
    print(f"warm-up (one metered + one plain run, includes codecarbon's hardware probe): {probe_s:.1f} s")
    print(f"analytic training FLOPs per run: {flops:.3g}")
    print()
    print(f"{'variant':<12}{'median wall s':>15}{'min s':>10}{'max s':>10}{'median CPU s':>15}")
    print(f"{'plain':<12}{p:>15.3f}{min(plain):>10.3f}{max(plain):>10.3f}{pc:>15.3f}")
    print(f"{'metered':<12}{m:>15.3f}{min(metered):>10.3f}{max(metered):>10.3f}{mc:>15.3f}")
    print()
    ratio = m / p
    verdict = "within" if ratio <= 1.03 else "ABOVE"
    print(f"metered / plain, wall = {ratio:.3f} ({(ratio - 1) * 100:+.1f}%), {verdict} the 3% target")
    print(f"metered / plain, CPU  = {mc / pc:.3f} ({(mc / pc - 1) * 100:+.1f}%)")
    spread = (max(plain) - min(plain)) / p
    if spread > 0.06:
        print(f"note: plain runs spread by {spread:.0%} of their median; runs vary too much here to resolve 3%")
    components = per_forward * args.steps + start_stop
    print(
        f"components timed alone: counting hook {per_forward * 1e6:.0f} us/forward, Meter start+stop "
        f"{start_stop * 1e3:.0f} ms -> {components:.3f} s per run = {components / p:.1%} of the plain median"
    )


if __name__ == "__main__":
    main()
