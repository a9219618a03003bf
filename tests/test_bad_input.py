"""Bad input, table-driven: each case gives one exact `advise: error:` line, exit code 2, and leaves
an existing run directory exactly as it was.

Every case runs the real CLI entry point (``advisor.cli.main``) against a run directory that already
holds a finished run; the directory is snapshotted before and after (file bytes, and the ledger's
records by content, since SQLite rewrites its header on any write).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from advisor.cli import main
from advisor.errors import DataError
from tests.conftest import SPECIAL, make_tiny_model, synthetic_rows, write_csv


@dataclasses.dataclass(frozen=True)
class World:
    root: Path
    data: Path  # a good dataset
    ladder: Path  # a good ladder of one tiny local model
    existing: Path  # a run directory holding a finished run


def _ladder(path: Path, *rungs: tuple[str, str]) -> Path:
    entries = [
        {
            "name": name,
            "source": source,
            "description": "tiny",
            "params_total": 10_000,
            "params_non_embedding": 9_000,
            "layers": 1,
            "hidden": 32,
        }
        for name, source in rungs
    ]
    path.write_text(yaml.safe_dump({"rungs": entries}))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    tiny = make_tiny_model(root / "tiny", layers=1)
    data = write_csv(root / "data.csv", synthetic_rows(120))
    ladder = _ladder(root / "ladder.yaml", ("tiny", str(tiny)))
    existing = root / "existing-run"
    # a finished run (the baseline passes, so it takes seconds); every case below points --out at it
    code = main(
        [
            "--data",
            str(data),
            "--ladder",
            str(ladder),
            "--target",
            "accuracy=0.7",
            "--out",
            str(existing),
            "--set",
            "metering.codecarbon=false",
        ]
    )
    assert code == 0 and (existing / "report.json").is_file()
    return World(root, data, ladder, existing)


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file's SHA-256, and the ledger's tables by content (SQLite rewrites its header on any write)."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(run_dir))
        if path.name == "ledger.sqlite":
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                out[rel] = "\n".join(sorted(db.iterdump()))  # rows by content: a same-value rewrite moves a rowid
            finally:
                db.close()
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- inputs the cases build


def _file(world: World, name: str, content: str | bytes) -> str:
    path = world.root / "cases" / name
    path.parent.mkdir(exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def _csv(world: World, name: str, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> str:
    folder = world.root / "cases"
    folder.mkdir(exist_ok=True)
    return str(write_csv(folder / name, rows, header))


def _model_folder(world: World, name: str, damage: Callable[[Path], None]) -> str:
    folder = world.root / "models" / name
    if not folder.exists():
        make_tiny_model(folder, layers=1)
        damage(folder)
    return str(_ladder(world.root / "models" / f"{name}.yaml", (name, str(folder))))


def _no_config(folder: Path) -> None:
    (folder / "config.json").unlink()


def _foreign_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizerFast

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + [f"word{i}" for i in range(200)]) + "\n", encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    BertTokenizerFast(vocab=str(vocab)).save_pretrained(folder)


def _truncated_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


def _pickled_weights(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


# ----------------------------------------------------------------------------- the table

# (case id, argv after the common part (a function of the world), the expected error line)
Case = tuple[str, Callable[[World], list[str]], Callable[[World], str]]
CASES: list[Case] = []


def case(case_id: str, argv: Callable[[World], list[str]], message: Callable[[World], str]) -> None:
    CASES.append((case_id, argv, message))


case(
    "missing-file",
    lambda w: ["--data", str(w.root / "nope.csv")],
    lambda w: (
        f"{w.root / 'nope.csv'}: no such file or folder. Check the path, or use a built-in dataset "
        "(uncertainty, movie-sentences, bbc-news, drug-reviews, drug-reviews-binary, spamassassin)."
    ),
)
case(
    "empty-file",
    lambda w: ["--data", _file(w, "empty.csv", "")],
    lambda w: f"{w.root / 'cases/empty.csv'} is empty; pass a file with a header row and at least a few labelled rows.",
)
case(
    "header-only",
    lambda w: ["--data", _file(w, "header.csv", "text,label\n")],
    lambda w: (
        f"{w.root / 'cases/header.csv'} has no data rows; pass a file with a header row and at least a few labelled rows."
    ),
)
case(
    "wrong-format",
    lambda w: ["--data", _file(w, "data.xlsx", b"PK\x03\x04 not a csv")],
    lambda w: (
        f"{w.root / 'cases/data.xlsx'}: unsupported file type .xlsx; save the data as CSV, TSV, JSON, JSONL "
        "or Parquet (a .gz on the text formats is fine)."
    ),
)
case(
    "malformed-json",
    lambda w: ["--data", _file(w, "broken.jsonl", '{"text": "fine", "label": "pos"}\n{"text": "cut off\n')],
    lambda w: (
        f"{w.root / 'cases/broken.jsonl'} could not be read as JSONL (JSON parse error: Invalid encoding in "
        "string. in row 1); check that it is valid."
    ),
)
case(
    "non-utf8",
    lambda w: ["--data", _file(w, "latin1.csv", "text,label\ncaf\u00e9 ok,pos\nbad film,neg\n".encode("cp1252"))],
    lambda w: (
        f"{w.root / 'cases/latin1.csv'} is not UTF-8 (byte 0xe9 at offset 14 is not valid); re-save it as "
        "UTF-8, e.g. `iconv -f cp1252 -t utf-8 in.csv > out.csv`."
    ),
)
case(
    "missing-text-column",
    lambda w: ["--data", str(w.data), "--text-column", "body"],
    lambda w: "data.csv: no column 'body'; the columns are text, label. Set data.text_column to one of them.",
)
case(
    "missing-label-column",
    lambda w: ["--data", str(w.data), "--label-column", "lable"],
    lambda w: (
        "data.csv: no column 'lable'; the columns are text, label. did you mean 'label'? "
        "Set data.label_column to one of them."
    ),
)
case(
    "nan-labels",
    lambda w: ["--data", _file(w, "nan.csv", "text,label\ngood film,pos\nbad film,\ngreat plot,pos\ndull plot,neg\n")],
    lambda w: "nan.csv: 1 of 4 rows have an empty or missing label in column 'label'; fill them in or drop those rows.",
)
case(
    "single-class",
    lambda w: ["--data", _csv(w, "one-class.csv", [(t, "pos") for t, _ in synthetic_rows(40)])],
    lambda w: (
        "one-class.csv: column 'label' holds a single class ('pos', 40 rows); a classifier needs at least "
        "two. Check data.label_column or add examples of the other classes."
    ),
)
case(
    "class-too-small",
    lambda w: ["--data", _csv(w, "tiny-class.csv", [*synthetic_rows(40), ("odd one", "other"), ("odd two", "other")])],
    lambda w: (
        # the validation share is sized from the floor (35% here, the cap, since 42 rows are few)
        "tiny-class.csv: class 'other' has only 2 rows; the stratified split (test_fraction=0.15 and "
        "validation_fraction=0.35) needs at least 7 per class. Add examples of it, drop it, or provide your own "
        "train/validation/test splits."
    ),
)
case(
    "empty-strings",
    lambda w: ["--data", _csv(w, "blank.csv", [*synthetic_rows(40), ("   ", "pos")])],
    lambda w: "blank.csv: 1 of 41 rows have an empty text in column 'text'; drop those rows.",
)
case(
    "unknown-model-offline",
    lambda w: ["--ladder", str(_ladder(w.root / "hub-ladder.yaml", ("hubby", "acme/not-a-model")))],
    lambda w: (
        "'acme/not-a-model' is not a local folder and the Hugging Face hub is unreachable (offline). "
        "Pass a local model folder (one written by save_pretrained), or use the offline ladder (--ladder offline)."
    ),
)
case(
    "folder-without-config",
    lambda w: ["--ladder", _model_folder(w, "noconfig", _no_config)],
    lambda w: (
        f"{w.root / 'models/noconfig'} has no config.json, so it is not a transformers model folder. "
        "Point at the folder written by save_pretrained (it holds config.json and the weights)."
    ),
)
case(
    "tokenizer-mismatch",
    lambda w: ["--ladder", _model_folder(w, "foreign", _foreign_tokenizer)],
    lambda w: (
        f"The tokenizer of {w.root / 'models/foreign'} has 205 tokens but the model's embedding table has 27 "
        "rows, so ids 27 and above would crash. Use the tokenizer saved with this model."
    ),
)
case(
    "corrupt-safetensors",
    lambda w: ["--ladder", _model_folder(w, "truncated", _truncated_weights)],
    lambda w: (
        f"{w.root / 'models/truncated/model.safetensors'} is not a readable safetensors file (Error while "
        "deserializing header: invalid header length). Delete the folder and materialise or save the model again."
    ),
)
case(
    "pickled-weights",
    lambda w: ["--ladder", _model_folder(w, "pickled", _pickled_weights)],
    lambda w: (
        f"{w.root / 'models/pickled'} holds only pickled weights (pytorch_model.bin), which can run code when "
        "loaded. Re-save them as safetensors, or set train.allow_pickle: true if you trust their origin (they are "
        "then loaded with weights_only=True)."
    ),
)
case(
    "malformed-yaml",
    lambda w: ["--config", _file(w, "broken.yaml", "train:\n  epochs: [1, 2\n")],
    lambda w: (
        f"Config file {w.root / 'cases/broken.yaml'} is not valid YAML (while parsing a flow sequence). "
        "Fix the syntax and retry."
    ),
)
case(
    "malformed-ladder-yaml",
    lambda w: ["--ladder", _file(w, "broken-ladder.yaml", "rungs: [{name: a\n")],
    lambda w: (
        f"Ladder file {w.root / 'cases/broken-ladder.yaml'} is not valid YAML (while parsing a flow mapping). "
        "Fix the syntax and retry."
    ),
)
case(
    "unknown-ladder",
    lambda w: ["--ladder", "offlien"],
    lambda w: "Unknown ladder 'offlien'. Available ladders: hub, offline; or pass the path of a ladder YAML file.",
)
case(
    "unknown-rung",
    lambda w: ["--set", "ladder.rungs=[tinny]"],
    lambda w: f"ladder.rungs names 'tinny', not a rung of ladder {w.ladder}; its rungs are tiny. Did you mean tiny?",
)
case(
    "unknown-config-key",
    lambda w: ["--set", "train.learning_rat=1e-4"],
    lambda w: "Unknown config key train.learning_rat. Did you mean train.learning_rate?",
)
case(
    "wrong-type",
    lambda w: ["--set", "train.epochs=many"],
    lambda w: "The config key train.epochs must be float. Got 'many' instead.",
)
case(
    "several-problems-at-once",
    lambda w: ["--set", "train.batch_size=0", "--set", "tuning.sampler=grid"],
    lambda w: (
        "The config key train.batch_size must be positive. Got 0 instead.; "
        "The config key tuning.sampler must be 'tpe' or 'random'. Got 'grid' instead."
    ),
)
case(
    "negative-budget",
    lambda w: ["--budget-kwh", "-1"],
    lambda w: "The criterion budget_kwh must be positive (or left unset). Got -1.0 instead.",
)
case(
    "zero-budget",
    lambda w: ["--budget-seconds", "0"],
    lambda w: "The criterion budget_seconds must be positive (or left unset). Got 0.0 instead.",
)
case(
    "impossible-floor",
    lambda w: ["--target", "accuracy=1.5"],
    lambda w: "The metric floor must be between 0 and 1. Got 1.5 instead.",
)
case(
    "binary-metric-on-three-classes",
    lambda w: [
        "--data",
        _csv(w, "three.csv", [(t, ["a", "b", "c"][i % 3]) for i, (t, _) in enumerate(synthetic_rows(60))]),
        "--target",
        "precision=0.8",
    ],
    lambda w: (
        "The metric 'precision' is defined for two classes, but the data has 3. Use macro_precision (or "
        "macro_f1) instead."
    ),
)
case(
    "unknown-metric",
    lambda w: ["--target", "acuracy=0.9"],
    lambda w: (
        "The criteria.metric must be one of accuracy, macro_f1, micro_f1, weighted_f1, f1, precision, recall, "
        "macro_precision, macro_recall, balanced_accuracy, mcc. Got 'acuracy' instead. Did you mean accuracy?"
    ),
)
case(
    "abbreviated-metric",
    lambda w: ["--target", "acc=0.8"],
    lambda w: (
        "The criteria.metric must be one of accuracy, macro_f1, micro_f1, weighted_f1, f1, precision, recall, "
        "macro_precision, macro_recall, balanced_accuracy, mcc. Got 'acc' instead. Did you mean accuracy?"
    ),
)
case(
    "config-is-a-directory",
    lambda w: ["--config", str(w.root)],
    lambda w: f"Config file {w.root} is a directory. Pass a YAML file, e.g. configs/demo.yaml.",
)
case(
    "target-without-value",
    lambda w: ["--target", "accuracy"],
    lambda w: "The --target value must look like metric=value, e.g. accuracy=0.9. Got 'accuracy' instead.",
)
case(
    "unknown-dataset-offline",
    lambda w: ["--data", "bbc-newz"],
    lambda w: (
        "'bbc-newz' is not a file or built-in, and the hub is unreachable (did you mean the built-in "
        "'bbc-news'?); download the data and pass --data path/to/file.csv."
    ),
)
case(
    "run-dir-not-writable",
    lambda w: ["--out", str(w.existing / "report.json" / "sub")],
    lambda w: (
        f"Cannot create the run directory {w.existing / 'report.json' / 'sub'} (Not a directory). "
        "Pass a writable --out."
    ),
)


def _common(world: World) -> list[str]:
    return [
        "--data",
        str(world.data),
        "--ladder",
        str(world.ladder),
        "--target",
        "accuracy=0.7",
        "--out",
        str(world.existing),
        "--set",
        "metering.codecarbon=false",
    ]


@pytest.mark.parametrize(("case_id", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(
    world: World,
    case_id: str,
    argv: Callable[[World], list[str]],
    message: Callable[[World], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(world.existing)
    capsys.readouterr()
    code = main([*_common(world), *argv(world)])  # later flags win over the common ones
    err = capsys.readouterr().err
    errors = [line.removeprefix("advise: error: ") for line in err.splitlines() if line.startswith("advise: error: ")]
    assert code == 2, err[-2000:]
    assert errors == [message(world)]
    assert "Traceback" not in err
    assert snapshot(world.existing) == before


def test_at_least_25_cases() -> None:
    assert len(CASES) >= 25


def test_debug_shows_the_traceback(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        main([*_common(world), "--data", str(world.root / "nope.csv"), "--debug"])


def test_debug_by_environment_variable(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GREENLADDER_DEBUG", "1")
    with pytest.raises(DataError, match="no such file or folder"):
        main([*_common(world), "--data", str(world.root / "nope.csv")])


def test_without_debug_the_error_says_how_to_get_the_traceback(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_common(world), "--data", str(world.root / "nope.csv")]) == 2
    assert "(set GREENLADDER_DEBUG=1 or pass --debug for the traceback)" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["config", "reports"])
def test_a_disk_that_fills_up_mid_write_leaves_the_old_files_and_says_to_free_space(
    world: World, where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rerunning the finished run rewrites its config.yaml, then its reports; the disk fills half-way through.

    ENOSPC is simulated where every file of the run directory is written (advisor.atomic): half the
    text lands in the temporary file, then the write fails, as a full disk does.
    """
    import builtins
    import io
    import os

    before = snapshot(world.existing)
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real_open = builtins.open
    # the atomic writer's temporary files are named after their destination: .config.yaml.*, .report.*
    filling = ".config.yaml." if where == "config" else ".report."

    class FillingUp(io.TextIOWrapper):
        def write(self, text: str) -> int:
            super().write(text[: len(text) // 2])
            self.flush()
            raise enospc

    def full_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        path = Path(file) if isinstance(file, (str, os.PathLike)) else None
        if path is not None and path.parent == world.existing and path.name.startswith(filling) and "w" in mode:
            return FillingUp(real_open(file, "wb"), encoding="utf-8")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)
    if where == "config":
        expected = f"Cannot write {world.existing / 'config.yaml'} (No space left on device). Free disk space or pick another --out."
    else:
        expected = f"Cannot write the reports into {world.existing} (No space left on device). Free space or pick another --out."
    code = main(_common(world))
    monkeypatch.undo()
    err = capsys.readouterr().err
    errors = [line.removeprefix("advise: error: ") for line in err.splitlines() if line.startswith("advise: error: ")]
    assert code == 2
    assert errors == [expected]
    assert snapshot(world.existing) == before  # no half-written file, and the old ones intact


def test_extremely_long_texts_are_truncated_not_a_crash(
    world: World, tmp_path: Path, weak_baseline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # the tiny model has 64 positions; texts of thousands of words must be cut to fit, in training and test
    rows = [(" ".join([text] * 400), label) for text, label in synthetic_rows(60)]
    data = write_csv(tmp_path / "long.csv", rows)
    out = tmp_path / "run"
    code = main(
        [
            "--data",
            str(data),
            "--ladder",
            str(world.ladder),
            "--target",
            "accuracy=0.75",
            "--out",
            str(out),
            "--set",
            "metering.codecarbon=false",
            "--set",
            "train.epochs=1",
            "--set",
            "tuning.trials_per_rung=1",
            "--set",
            "ladder.probes=false",  # the fine-tune's training and test passes are what must cut the texts
        ]
    )
    # one epoch on 60 rows decides nothing (exit 1: not met); what matters is that nothing crashed
    assert code in (0, 1), capsys.readouterr().err[-2000:]
    doc = json.loads((out / "report.json").read_text())
    (run,) = doc["runs"]
    assert run["status"] == "ok" and len(run["val_predictions"]) == doc["dataset"]["splits"]["validation"]["rows"]
    # trained and validated on the long texts; the closest (or recommended) model is kept and loads
    kept = out / "model" if doc["recommendation"] else out / "runs" / "tiny-t1" / "model"
    assert (kept / "model.safetensors").is_file()
    shutil.rmtree(out)


def test_a_disk_that_fills_up_while_saving_a_model_says_so_and_records_nothing_half_done(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    weak_baseline: None,  # a baseline wrong on every row: a rung is trained and saved
    capsys: pytest.CaptureFixture[str],
) -> None:
    import os

    import advisor.training.train as train_mod

    def full(model, tokenizer, dest: Path) -> None:  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))

    monkeypatch.setattr(train_mod, "save_model_folder", full)
    out = tmp_path / "run"
    argv = ["--data", str(world.data), "--ladder", str(world.ladder), "--target", "accuracy=0.75", "--out", str(out)]
    code = main(
        [
            *argv,
            "--set",
            "metering.codecarbon=false",
            "--set",
            "tuning.trials_per_rung=1",
            "--set",
            "ladder.probes=false",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    dest = out / "runs" / "tiny-t1" / "model"
    assert [line for line in err.splitlines() if line.startswith("advise: error: ")] == [
        f"advise: error: the disk is full (writing {dest}). Free disk space and rerun the same command: finished "
        "runs are kept in the ledger."
    ]
    db = sqlite3.connect(out / "ledger.sqlite")
    try:  # the finished baseline is kept; the run whose model could not be saved is not recorded, so a rerun trains it
        assert [r[0] for r in db.execute("SELECT run_id FROM runs")] == ["baseline"]
    finally:
        db.close()
