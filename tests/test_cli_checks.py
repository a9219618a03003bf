"""What `advise` checks before it does any work: a target is required, the data path is checked
before the heavy imports, a mistyped metric gets the metric meant, and the files it hands over
carry the user's umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from advisor.atomic import atomic_copytree
from advisor.cli import DEMO_CONFIG, main
from advisor.config.settings import CONFIG_DIR, NO_FLOOR, floor_given
from advisor.verdicts.criteria import closest_metrics
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

REPO = Path(__file__).resolve().parent.parent


def _errors(err: str) -> list[str]:
    return [line.removeprefix("advise: error: ") for line in err.splitlines() if line.startswith("advise: error: ")]


# ----------------------------------------------------------------------------- no target, no silent floor 0


def test_advise_without_a_target_refuses_with_exit_2_naming_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(40))
    out = tmp_path / "run"
    assert main(["--data", str(data), "--out", str(out)]) == 2
    assert _errors(capsys.readouterr().err) == [NO_FLOOR]
    assert "--target" in NO_FLOOR
    assert not out.exists()  # refused before anything was written


def test_a_floor_counts_from_a_config_file_a_flag_or_an_override_but_not_from_the_defaults(tmp_path: Path) -> None:
    assert floor_given([DEMO_CONFIG])  # the embedded demo keeps its bar (configs/demo.yaml)
    assert not floor_given([CONFIG_DIR / "default.yaml"])  # the template's floor of 0 leaves the bar to the user
    assert not floor_given()
    assert floor_given(overrides=["criteria.floor=0.5"])
    assert not floor_given(extra={"criteria": {"metric": "accuracy", "floor": 0.0}})  # any model passes it
    assert floor_given(extra={"criteria": {"metric": "mcc", "floor": 0.0}})  # better than chance: a real bar
    own = tmp_path / "mine.yaml"
    own.write_text("criteria:\n  metric: macro_f1\n  floor: 0.8\n")
    assert floor_given([own])
    metric_only = tmp_path / "metric.yaml"
    metric_only.write_text("criteria:\n  metric: macro_f1\n")
    assert not floor_given([metric_only])


def test_select_model_without_a_target_refuses_too(tmp_path: Path) -> None:
    from advisor import select_model
    from advisor.errors import ConfigError

    data = write_csv(tmp_path / "data.csv", synthetic_rows(40))
    with pytest.raises(ConfigError, match="No acceptance criterion was given"):
        select_model(data=str(data), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- the data path, before heavy imports


def test_a_bad_data_path_fails_before_torch_transformers_or_datasets_are_imported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    code = (
        "import sys\n"
        "from advisor.cli import main\n"
        f"code = main(['--data', {str(missing)!r}, '--target', 'accuracy=0.8', '--out', {str(tmp_path / 'r')!r}])\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "2 []", proc.stderr[-2000:]
    assert f"advise: error: {missing}: no such file or folder." in proc.stderr


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.xlsx", b"PK", "{p}: unsupported file type .xlsx; save the data as CSV, TSV, JSON, JSONL or Parquet"),
        ("data.csv", b"", "{p} is empty; pass a file with a header row"),
    ],
)
def test_unsupported_or_empty_data_files_are_refused_by_the_cli_check(
    tmp_path: Path, name: str, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["--data", str(path), "--target", "accuracy=0.8", "--out", str(tmp_path / "r")]) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert line.startswith(message.format(p=path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_data_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "data.csv", synthetic_rows(20))
    path.chmod(0)
    try:
        assert main(["--data", str(path), "--target", "accuracy=0.8", "--out", str(tmp_path / "r")]) == 2
    finally:
        path.chmod(0o644)
    assert _errors(capsys.readouterr().err) == [
        f"{path}: the file cannot be read (permission denied). Make it readable, e.g. chmod u+r."
    ]


# ----------------------------------------------------------------------------- metric names


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("acc", ["accuracy"]),  # difflib alone suggests mcc
        ("Accuracy", ["accuracy"]),
        ("acuracy", ["accuracy"]),
        ("f1-macro", ["macro_f1"]),
        ("bal_acc", ["balanced_accuracy"]),
        ("macro", ["macro_f1", "macro_precision", "macro_recall"]),
        ("weighted", ["weighted_f1"]),
        ("xyz", []),
    ],
)
def test_a_mistyped_metric_suggests_the_metric_meant(typed: str, meant: list[str]) -> None:
    assert closest_metrics(typed) == meant


# ----------------------------------------------------------------------------- permissions of what is handed over


def _modes(folder: Path) -> set[tuple[str, int]]:
    return {(("d" if p.is_dir() else "f"), stat.S_IMODE(p.stat().st_mode)) for p in [folder, *folder.rglob("*")]}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("umask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_a_built_folder_gets_the_users_umask_not_mkdtemps_owner_only_mode(
    tmp_path: Path, umask: int, folder_mode: int, file_mode: int
) -> None:
    def build(tmp: Path) -> None:
        fd, name = tempfile.mkstemp(dir=tmp)  # owner-only, as safetensors leaves model.safetensors
        os.close(fd)
        os.replace(name, tmp / "model.safetensors")
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "labels.json").write_text("[]")

    before = os.umask(umask)
    try:
        dest = atomic_copytree(build, tmp_path / "model")
    finally:
        os.umask(before)
    assert _modes(dest) == {("d", folder_mode), ("f", file_mode)}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_saved_model_folder_is_readable_by_others_under_umask_022(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertForSequenceClassification

    from advisor.training.train import save_model_folder

    source = make_tiny_model(tmp_path / "tiny", layers=1)
    model = BertForSequenceClassification.from_pretrained(str(source), num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    before = os.umask(0o022)
    try:
        save_model_folder(model, tokenizer, tmp_path / "runs" / "r1" / "model")
    finally:
        os.umask(before)
    modes = _modes(tmp_path / "runs" / "r1" / "model")
    assert modes == {("d", 0o755), ("f", 0o644)}, modes


# ----------------------------------------------------------------------------- --from without --target


class _Captured(Exception):
    def __init__(self, config: object) -> None:
        self.config = config


def _config_of(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> object:
    """The Config the CLI would hand to advise (which is stopped before it does anything)."""
    import advisor.advise

    def capture(config: object, **_kw: object) -> None:
        raise _Captured(config)

    monkeypatch.setattr(advisor.advise, "advise", capture)
    with pytest.raises(_Captured) as caught:
        main([*argv, "--debug"])
    return caught.value.config


def test_from_without_a_target_continues_towards_the_earlier_runs_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    criteria = {"metric": "macro_f1", "floor": 0.85, "max_params": 1000, "budget_kwh": 1.0, "confidence": 0.9}
    (earlier / "report.json").write_text(json.dumps({"criteria": criteria}))
    data = write_csv(tmp_path / "more.csv", synthetic_rows(40))
    argv = ["--data", str(data), "--from", str(earlier), "--out", str(tmp_path / "run")]
    config = _config_of(argv, monkeypatch)
    c = config.criteria  # type: ignore[attr-defined]
    assert (c.metric, c.floor, c.max_params, c.confidence) == ("macro_f1", 0.85, 1000, 0.9)
    assert c.budget_kwh is None  # the earlier search's budget is not this one's
    said = f"criteria from {earlier / 'report.json'} (no --target given): macro_f1 >= 0.85, params <= 1k\n"
    assert said in capsys.readouterr().err
    # a target given now wins, and a flag given now wins over the earlier ceiling
    config = _config_of([*argv, "--target", "accuracy=0.7", "--max-params", "5"], monkeypatch)
    c = config.criteria  # type: ignore[attr-defined]
    assert (c.metric, c.floor, c.max_params) == ("accuracy", 0.7, 5)


def test_from_a_run_without_a_readable_report_still_needs_a_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "more.csv", synthetic_rows(40))
    (tmp_path / "earlier").mkdir()
    assert main(["--data", str(data), "--from", str(tmp_path / "earlier"), "--out", str(tmp_path / "run")]) == 2
    assert _errors(capsys.readouterr().err) == [NO_FLOOR]
