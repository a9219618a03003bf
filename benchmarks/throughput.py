"""Training throughput: greenladder's fine-tuning path against HF Trainer padded to max_length.

Both train the same checkpoint on the same sentences (one epoch over the same rows, batch 32, same
learning rate and seed) with the Hugging Face ``Trainer``; they differ only in what
``advisor.training.train`` changes:

* **greenladder**: no padding at tokenisation, each batch padded to its own longest text
  (``DataCollatorWithPadding``), length-bucketed batches in shuffled order (``advisor.training.batching``), word embeddings frozen
  only when ``train.freeze_embeddings`` is set (off by default); optionally bf16 autocast;
* **HF Trainer, padded**: ``tokenizer(padding="max_length")``, random batches, every weight trained.

Reported: real (non-padding) tokens per second of training, and model FLOPs utilisation = analytic
FLOPs per second (``advisor.training.counting.MeteringCallback``: 6N per token plus attention, Kaplan et al. 2020)
÷ the machine's matrix-multiply peak, measured here with ``torch.matmul`` in the same precision and
thread count. Timings are medians over rounds that alternate the methods.

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --quick --data "my data/sentences.csv" --out /tmp/results

Each training's measurement is appended to ``<out>/<name>.jsonl`` as it finishes and the table so far
is printed after every round; ``<name>`` comes from the data's slug (file stem + content hash).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import data_slug, fixed_split, markdown_table, median, open_results, run_cli, say


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", default="uncertainty", help="built-in dataset name, a file or a folder (sentence-length texts)"
    )
    p.add_argument("--out", default=None, help="folder for the results (default benchmarks/results/)")
    p.add_argument("--model", default="minilm-l6", help="ladder rung or model folder")
    p.add_argument("--train-rows", type=int, default=640, help="rows trained on per measurement (one epoch)")
    p.add_argument("--max-length", type=int, default=128, help="truncation length, and the padded length")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16-autocast run of greenladder's path")
    p.add_argument("--matmul-size", type=int, default=2048, help="square matmul size for the peak measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="384 rows, 2 rounds: a few minutes")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="train and measure the peak here")
    return p


def _bf16_hardware() -> str:
    """Whether the CPU advertises bf16 matrix instructions (Linux /proc/cpuinfo flags)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "CPU flags unknown"
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"CPU flags {', '.join(found)}" if found else "no avx512_bf16 or amx_bf16 CPU flag: bf16 is emulated"


def matmul_peak(n: int, dtype: Any, repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """Median FLOP/s of an n x n x n product (2 n^3 FLOPs) in ``dtype`` on the CPU, two ways.

    ``torch.matmul`` and ``F.linear`` (what ``nn.Linear`` runs) can take different kernels: on this
    CPU bf16 ``matmul`` falls back to a slow path while bf16 ``linear`` goes through oneDNN. The peak
    is the faster of the two.
    """
    import torch
    import torch.nn.functional as F

    a = torch.randn(n, n).to(device=device, dtype=dtype)
    b = torch.randn(n, n).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)  # GPU kernels run asynchronously
    out = {}
    for name, fn in (("matmul", torch.matmul), ("linear", F.linear)):
        fn(a, b)  # warm-up: allocations and kernel selection
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn(a, b)
            sync()
            times.append(time.perf_counter() - start)
        out[name] = 2 * n**3 / median(times)
    out["peak"] = max(out["matmul"], out["linear"])
    return out


def train_once(method: str, source: str, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One epoch over ``data.train`` with ``method``'s path; wall time of ``trainer.train()`` and metered counts."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator, set_seed

    from advisor.config.settings import MeteringConfig, TrainConfig
    from advisor.metering.cost import Meter
    from advisor.models.loading import load_for_classification
    from advisor.training.batching import BucketTrainer
    from advisor.training.counting import MeteringCallback
    from advisor.training.inference import tokenize
    from advisor.training.train import quiet_libraries

    set_seed(args.seed)
    ours = method.startswith("greenladder")
    with quiet_libraries():
        model, tok = load_for_classification(source, tuple(data.label_names))
        if ours:
            train = tokenize(data.train, tok, args.max_length)
            collator: Any = DataCollatorWithPadding(tok)
        else:

            def enc(batch: dict[str, list[Any]]) -> Any:
                return tok(batch["text"], truncation=True, max_length=args.max_length, padding="max_length")

            train = data.train.map(enc, batched=True, remove_columns=["text"])
            collator = default_data_collator
    if ours and TrainConfig().freeze_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            learning_rate=1e-4,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            use_cpu=args.device == "cpu",
            disable_tqdm=True,
            seed=args.seed,
            bf16=method.endswith("bf16"),
        )
        # clocks only (no codecarbon, no sampler thread): the counts are arithmetic either way
        with Meter(MeteringConfig(enabled=False), phase=method) as meter:
            trainer = (BucketTrainer if ours else Trainer)(
                model=model,
                args=targs,
                train_dataset=train,
                data_collator=collator,
                callbacks=[MeteringCallback(meter, model.config, num_labels=len(data.label_names))],
            )
            start = time.perf_counter()
            trainer.train()
            wall = time.perf_counter() - start
    cost = meter.cost
    del trainer, model
    torch.set_num_threads(args.threads)
    return {
        "wall_s": wall,
        "real_tokens": cost.tokens,
        "padding_tokens": cost.padded_tokens,
        "train_flops": cost.train_flops,
        "padding_flops": cost.padding_flops,
        "steps": -(-data.train.num_rows // args.batch_size),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.slug = data_slug(args.data)  # before anything is trained: a missing file fails here
    if args.quick:
        # HF's length grouping sorts within mega-batches of min(rows // (4 x batch), 50) batches, so
        # below 256 rows at batch 32 it groups nothing; 384 rows give mega-batches of 3 batches
        args.train_rows = min(args.train_rows, 384)
        args.rounds = min(args.rounds, 2)
        args.matmul_size = min(args.matmul_size, 1024)
    return args


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    """File name and title of the results, from the data's slug."""
    quick = "-quick" if args.quick else ""
    cuda = "-cuda" if getattr(args, "device", "cpu") == "cuda" else ""
    return f"throughput-{args.slug}{quick}{cuda}", f"Training throughput on {args.slug}" + (
        " (quick)" if args.quick else ""
    )


def split_name(args: argparse.Namespace) -> str:
    """The name of the temporary folder holding the subset (see ``fixed_split``)."""
    return f"throughput-{args.slug}"


def summarise(
    methods: list[str], samples: dict[str, list[dict[str, Any]]], peak: dict[str, float]
) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Table rows and raw rows of the methods measured so far: medians over their rounds."""
    rows, raw_rows = [], []
    padded_tps = None
    for m in methods:
        s = samples[m]
        if not s:
            continue
        wall = median([x["wall_s"] for x in s])
        first = s[0]  # counts are the same in every round (same rows, same batches)
        tps = first["real_tokens"] / wall
        precision = "bf16" if m.endswith("bf16)") else "fp32"
        # against the faster of the two peaks: on a CPU without bf16 hardware the bf16 "peak" is a
        # slow emulation and would make any bf16 run look fully utilised
        denominator = max(peak[precision], peak["fp32"])
        mfu = (first["train_flops"] - first["padding_flops"]) / wall / denominator
        hfu = first["train_flops"] / wall / denominator
        if m.startswith("HF"):
            padded_tps = tps
        pad_share = first["padding_tokens"] / max(1, first["padding_tokens"] + first["real_tokens"])
        rows.append(
            [
                m,
                precision,
                wall,
                first["real_tokens"],
                pad_share,
                tps,
                tps / padded_tps if padded_tps else None,
                mfu,
                hfu,
            ]
        )
        raw_rows.append(
            {
                "method": m,
                "precision": precision,
                "median_wall_s": wall,
                "tokens_per_s": tps,
                "mfu": mfu,
                "hfu": hfu,
                "samples": s,
            }
        )
    return rows, raw_rows


HEADERS = [
    "method",
    "precision",
    "train s (median)",
    "real tokens",
    "padding share",
    "real tokens/s",
    "× padded Trainer",
    "MFU (real-token FLOPs / peak)",
    "FLOPs incl. padding / peak",
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("throughput.py", argv, args, result_name, "training's measurement")
    import torch

    from advisor.models.sources import resolve_source
    from advisor.offline.builtin_models import BUILTIN_SOURCES

    started = time.perf_counter()
    data, _ = fixed_split(args.data, split_name(args), train_rows=args.train_rows, seed=args.seed, progress=say)
    builtin = f"pypi:{args.model}"
    source = str(resolve_source(builtin if builtin in BUILTIN_SOURCES else args.model, progress=say))

    say(f"matmul peak, {args.matmul_size}^3, {' and '.join(['fp32'] if args.no_bf16 else ['fp32', 'bf16'])}")
    # the bf16 peak is only needed for the bf16 row (and takes minutes where bf16 is emulated)
    dtypes = {"fp32": torch.float32} if args.no_bf16 else {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {k: matmul_peak(args.matmul_size, d, device=args.device) for k, d in dtypes.items()}
    writer.record("matmul peak (before)", peaks)
    methods = ["HF Trainer, padding=max_length", "greenladder (fp32)"] + (
        [] if args.no_bf16 else ["greenladder (bf16)"]
    )
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for r in range(args.rounds):
        for m in methods if r % 2 == 0 else list(reversed(methods)):
            res = train_once(m, source, data, args)
            samples[m].append(res)
            say(f"round {r + 1} {m}: {res['wall_s']:.1f} s, {res['real_tokens'] / res['wall_s']:.0f} real tokens/s")
            writer.record(m, {"round": r + 1, **res})
        so_far, _ = summarise(methods, samples, {k: v["peak"] for k, v in peaks.items()})
        writer.show(
            f"{title}: after round {r + 1} (peak measured before the rounds)", [markdown_table(HEADERS, so_far)]
        )
    peaks_after = {k: matmul_peak(args.matmul_size, d, device=args.device) for k, d in dtypes.items()}
    peak = {k: max(peaks[k]["peak"], peaks_after[k]["peak"]) for k in peaks}

    writer.record("matmul peak (after)", peaks_after)
    rows, raw_rows = summarise(methods, samples, peak)
    elapsed = time.perf_counter() - started
    table = markdown_table(HEADERS, rows)
    ours = next(r for r in raw_rows if r["method"] == "greenladder (fp32)")
    speed = ours["tokens_per_s"] / raw_rows[0]["tokens_per_s"]
    targets = markdown_table(
        ["target (issue 7)", "measured", "verdict"],
        [
            ["real tokens/s ≥ 2× the padded Trainer (fp32)", speed, "met" if speed >= 2 else "MISSED"],
            ["MFU ≥ 0.5 of the measured fp32 matmul peak", ours["mfu"], "met" if ours["mfu"] >= 0.5 else "MISSED"],
        ],
    )
    peak_table = markdown_table(
        [
            "precision",
            f"torch.matmul {args.matmul_size}³ GFLOP/s (before, after)",
            "F.linear GFLOP/s (before, after)",
            "peak used (GFLOP/s)",
        ],
        [
            [
                k,
                f"{peaks[k]['matmul'] / 1e9:.1f}, {peaks_after[k]['matmul'] / 1e9:.1f}",
                f"{peaks[k]['linear'] / 1e9:.1f}, {peaks_after[k]['linear'] / 1e9:.1f}",
                peak[k] / 1e9,
            ]
            for k in peaks
        ],
    )
    notes = [
        f"Data: `{args.data}`, {data.train.num_rows} training rows (stratified subset, seed {args.seed}), "
        f"{args.max_length}-token limit, batch {args.batch_size}, one epoch, model `{args.model}`; "
        f"{args.rounds} rounds alternating the methods, medians reported.",
        "Tokens and FLOPs are counted at the model by `MeteringCallback` (attention-mask row sums; analytic FLOPs, "
        "training = 3× forward); MFU counts only the real tokens' FLOPs, the last column also the padding the hardware "
        "computed. Embedding lookups, layer norms, softmax and the optimizer step are not matrix multiplies and are "
        "not counted, as in PaLM's MFU.",
        "greenladder's fine-tuning runs in fp32 on CPUs by default (`train.precision: auto`); the bf16 row shows what autocast "
        f"would change on this CPU ({_bf16_hardware()}), against the faster of the fp32 and bf16 peaks.",
        f"Whole benchmark: {elapsed:.0f} s.",
    ]
    raw = {
        "args": vars(args),
        "peaks_flops_per_s": {"before": peaks, "after": peaks_after},
        "rows": raw_rows,
        "elapsed_s": elapsed,
    }
    writer.finish(title, [table, targets, peak_table], notes, raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
