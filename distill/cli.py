"""`distill`: parse flags, call :func:`distill.pipeline.distill`, print; the only place that exits."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.errors import ConfigError, GreenladderError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill",
        description="Distil a fine-tuned teacher into a smaller student; compare with the same student "
        "trained without the teacher, and measure size, speed and compute.",
    )
    _add_models_and_data(p)
    _add_settings(p)
    _add_criteria(p)
    p.add_argument(
        "--keep-control",
        action="store_true",
        default=None,
        help="keep the no-teacher controls' models too (by default only the delivered student is kept)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="move a used --out folder aside (to <out>.old-<n>) and start afresh instead of resuming",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _add_models_and_data(p: argparse.ArgumentParser) -> None:
    """The teacher, the student, and the data they learn from."""
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


def _add_settings(p: argparse.ArgumentParser) -> None:
    """Config files, overrides and the flags for the most used distillation settings."""
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


def _add_criteria(p: argparse.ArgumentParser) -> None:
    """What the student must meet."""
    p.add_argument(
        "--target",
        metavar="METRIC=VALUE",
        help="metric floor on the validation split, e.g. accuracy=0.9 or macro_f1=0.8; the metric also chooses "
        "and compares the students (default metric: accuracy)",
    )
    p.add_argument(
        "--min-retention",
        type=float,
        metavar="SHARE",
        help="keep at least this share of the teacher's score, e.g. 0.97",
    )
    p.add_argument("--max-latency-ms", type=float, help="ceiling on the student's p95 CPU latency at batch 1 (ms)")
    p.add_argument("--max-size-mb", type=float, help="ceiling on the delivered student's size on disk (MB)")


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
    put(None, "keep_control", args.keep_control)
    put("criteria", "min_retention", args.min_retention)
    put("criteria", "max_latency_ms", args.max_latency_ms)
    put("criteria", "max_size_mb", args.max_size_mb)
    if args.target is not None:
        name, sep, value = args.target.partition("=")
        if not sep:
            raise ConfigError(
                f"The --target value must look like metric=value, e.g. accuracy=0.9. Got {args.target!r}."
            )
        try:
            put("criteria", "floor", float(value))
        except ValueError:
            raise ConfigError(f"The --target value {value!r} is not a number. Use e.g. accuracy=0.9.") from None
        put("criteria", "metric", name.strip())
    if args.seeds is not None:
        try:
            put("distill", "seeds", [int(x) for x in args.seeds.split(",") if x.strip()])
        except ValueError:
            raise ConfigError(
                f"The --seeds value must be comma-separated integers. Got {args.seeds!r} instead."
            ) from None
    return extra


def check_paths(config: Any) -> None:
    """Refuse a data file or unlabelled-text file that does not exist, or a teacher or student that is
    nowhere, before the libraries load (they take ~20 s). A built-in dataset's or hub id's name is not a path."""
    from advisor.errors import DataError
    from distill.config import check_source

    for source in (config.teacher, config.student.checkpoint):
        if source:
            check_source(source)

    for value, what in ((config.data.source, "--data"), (config.unlabeled, "--unlabeled")):
        if value is None:
            continue
        path = Path(value).expanduser()
        # as advisor.data.readers tells a path from a built-in name or a hub id ("org/name")
        looks_like_path = value.startswith(("/", ".", "~")) or bool(path.suffix) or "\\" in value
        if looks_like_path and not path.exists():
            raise DataError(
                f"{path}: no such file or folder ({what}). Check the path, or use a built-in dataset "
                "(`advise --list-datasets`)."
            )


def _print_result(report: Any, out: str) -> None:
    from advisor.verdicts.criteria import fmt_num
    from distill.report import verdict_lines

    s = report.summary
    gain = s.get("gain_over_control")
    print(f"wrote {out}/distill_report.md, distill_report.json and the student in {report.student_dir}")
    print(
        f"retention {100 * (s.get('retention') or 0):.1f}% (validation {s['metric']}), "
        f"speed-up {s.get('speedup_p50_student') or 0:.2f}x at batch 1"
    )
    if gain:
        print(
            f"gain over the no-teacher control {gain['points']:+.1f} [{gain['low']:+.1f}, {gain['high']:+.1f}] pts "
            f"(paired, {gain['n']} validation rows{'' if gain['distinguishable'] else '; not distinguishable from 0'})"
        )
    per = (s.get("gain_per_unit") or {}).get("per_pflop")
    if per:
        print(f"  = {fmt_num(per['value'])} pts per PFLOP of the distillation's {fmt_num(per['denominator'])} PFLOPs")
    for line in verdict_lines(s):
        print(f"verdict: {line}")
    folder = s.get("folder") or {}
    if folder.get("deleted"):
        print(
            f"kept each model once: freed {fmt_num(folder['freed_mb'])} MB ({len(folder['deleted'])} models not delivered)"
        )


def _passed(report: Any) -> bool:
    verdicts = report.summary.get("verdicts")
    return not verdicts or any(v["state"] == "pass" for v in verdicts.values())


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0: done (and, with criteria, a delivered form passed); 1: no form passed; 2: bad input; 130: interrupted."""
    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("GREENLADDER_DEBUG"))
    try:
        from distill.config import build_distill_config, save_distill_config

        config = build_distill_config(args.config, args.overrides, _extra(args))
        check_paths(config)
        from distill.run import distill

        report = distill(config, progress=lambda msg: print(msg, file=sys.stderr, flush=True), restart=args.restart)
        save_distill_config(config, os.path.join(config.out, "distill_config.yaml"))
    except GreenladderError as exc:
        if debug:
            traceback.print_exc()
        else:
            print(f"distill: error: {exc} (run with --debug or GREENLADDER_DEBUG=1 for the traceback)", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("distill: interrupted; finished runs are in the ledger and a rerun resumes", file=sys.stderr)
        return 130
    _print_result(report, config.out)
    return 0 if _passed(report) else 1


if __name__ == "__main__":
    raise SystemExit(main())
