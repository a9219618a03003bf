"""`distill`: parse flags, call :func:`distill.pipeline.distill`, print; the only place that exits."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from advisor.errors import ConfigError, GreenladderError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill",
        description="Distil a fine-tuned teacher into a smaller student; compare with the same student "
        "trained without the teacher, and measure size, speed and compute.",
    )
    p.add_argument("--teacher", help="teacher folder, hub id, or offline rung name (e.g. minilm-l6)")
    p.add_argument("--data", help="built-in dataset name, data file or folder (see `advise --list-datasets`)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--student-layers", type=int, help="keep this many teacher layers (default: half, every other)")
    group.add_argument(
        "--student", help="a smaller pre-trained checkpoint (folder or rung name); its own tokenizer is fine"
    )
    p.add_argument(
        "--unlabeled",
        metavar="FILE",
        help="unlabelled texts from the same domain (.txt one per line, or .csv/.jsonl with a text column): "
        "the teacher's logits on them also train the student",
    )
    p.add_argument(
        "--augment",
        type=int,
        metavar="N",
        help="add N perturbed copies of each labelled text to the transfer set (off by default; see the README)",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="load pytorch_model.bin-only checkpoints (read with weights_only=True); only if you trust them",
    )
    p.add_argument("--config", action="append", default=[], help="YAML file(s), e.g. configs/distill.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. distill.hidden_weight=1",
    )
    p.add_argument("--out", help="output folder (default runs/distill)")
    p.add_argument("--alpha", type=float, help="weight of the hard-label loss (1 - alpha goes to the teacher)")
    p.add_argument("--temperature", type=float, help="softening temperature of the teacher's targets")
    p.add_argument("--epochs", type=float, help="student training epochs")
    p.add_argument("--lr", type=float, help="student learning rate")
    p.add_argument("--seeds", help="comma-separated seeds, one student and one control each (e.g. 0,1,2)")
    p.add_argument("--max-length", type=int, help="truncate texts to this many tokens")
    p.add_argument(
        "--quantize", action="store_true", default=None, help="also quantise the student to int8 and re-measure"
    )
    p.add_argument("--onnx", action="store_true", default=None, help="also export the student to ONNX")
    p.add_argument(
        "--no-control", dest="control", action="store_false", default=None, help="skip the no-teacher control run"
    )
    p.add_argument(
        "--no-finetune-teacher",
        dest="finetune_teacher",
        action="store_false",
        default=None,
        help="refuse (with a message) instead of fine-tuning a teacher that has no head for the labels",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _extra(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a nested mapping in the config's sections (only the flags that were given)."""
    extra: dict[str, Any] = {}

    def put(section: str | None, key: str, value: Any) -> None:
        if value is None:
            return
        (extra.setdefault(section, {}) if section else extra)[key] = value

    put(None, "teacher", args.teacher)
    put(None, "out", args.out)
    put(None, "finetune_teacher", args.finetune_teacher)
    put(None, "unlabeled", args.unlabeled)
    put(None, "allow_pickle", args.allow_pickle)
    put("data", "source", args.data)
    put("student", "layers", args.student_layers)
    put("student", "checkpoint", args.student)
    put("distill", "alpha", args.alpha)
    put("distill", "temperature", args.temperature)
    put("distill", "epochs", args.epochs)
    put("distill", "learning_rate", args.lr)
    put("distill", "max_length", args.max_length)
    put("distill", "control", args.control)
    put("distill", "augment", args.augment)
    put("compress", "quantize", args.quantize)
    put("compress", "onnx", args.onnx)
    if args.seeds is not None:
        try:
            put("distill", "seeds", [int(x) for x in args.seeds.split(",") if x.strip()])
        except ValueError:
            raise ConfigError(
                f"The --seeds value must be comma-separated integers. Got {args.seeds!r} instead."
            ) from None
    return extra


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("GREENLADDER_DEBUG"))
    try:
        from distill.config import build_distill_config, save_distill_config
        from distill.run import distill

        config = build_distill_config(args.config, args.overrides, _extra(args))
        report = distill(config, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        save_distill_config(config, os.path.join(config.out, "distill_config.yaml"))
    except GreenladderError as exc:
        if debug:
            traceback.print_exc()
        else:
            print(f"distill: error: {exc} (run with --debug or GREENLADDER_DEBUG=1 for the traceback)", file=sys.stderr)
        return exc.exit_code
    s = report.summary
    print(f"wrote {config.out}/distill_report.md, distill_report.json and the student in {report.student_dir}")
    print(
        f"retention {100 * (s.get('retention_accuracy') or 0):.1f}%, "
        f"gain over control {100 * (s.get('gain_over_control_accuracy') or 0):+.1f} pts, "
        f"speed-up {s.get('speedup_p50_student') or 0:.2f}x at batch 1"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
