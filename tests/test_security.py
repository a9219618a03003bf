"""Hostile files let nothing in: pickles, remote code, YAML tags, path traversal, shells.

Each hostile input carries a payload that would leave a marker file if it ever ran; the tests
assert the clean refusal the user sees and that the marker never appears.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from advisor.cli import main
from advisor.config.settings import TrainConfig, build_config
from advisor.errors import ConfigError
from advisor.models.ladder import Rung, load_ladder
from advisor.models.loading import load_for_classification
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(REPO / "advisor").rglob("*.py"), *(REPO / "distill").rglob("*.py")])
FAST = ["--set", "metering.codecarbon=false", "--set", "tuning.trials_per_rung=1", "--set", "train.epochs=1"]
FAST += ["--set", "ladder.probes=false"]  # the fine-tune loads the weights (a probe opens them the same way)


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _rung(name: str, source: Path | str) -> dict:
    return {
        "name": name,
        "source": str(source),
        "description": "tiny",
        "params_total": 10_000,
        "params_non_embedding": 9_000,
        "layers": 1,
        "hidden": 32,
    }


def _ladder(path: Path, *rungs: dict) -> Path:
    path.write_text(yaml.safe_dump({"rungs": list(rungs)}))
    return path


def _pickled_model(folder: Path, payload: object | None = None) -> Path:
    """A tiny model whose weights are only a pickled pytorch_model.bin (optionally with a payload inside)."""
    import torch
    from safetensors.torch import load_file

    make_tiny_model(folder, layers=1)
    state = load_file(folder / "model.safetensors")
    if payload is not None:
        state["evil"] = payload  # type: ignore[assignment]
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def _errors(err: str) -> list[str]:
    return [line.removeprefix("advise: error: ") for line in err.splitlines() if line.startswith("advise: error: ")]


# ----------------------------------------------------------------------------- pickled weights


def test_pickled_weights_are_refused_unless_allowed_then_loaded_weights_only(
    tmp_path: Path, weak_baseline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _pickled_model(tmp_path / "pickled")
    ladder = _ladder(tmp_path / "ladder.yaml", _rung("pickled", folder))
    data = write_csv(tmp_path / "data.csv", synthetic_rows(80))
    argv = ["--data", str(data), "--ladder", str(ladder), "--target", "accuracy=0.75", *FAST]

    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    assert _errors(capsys.readouterr().err) == [
        f"{folder} holds only pickled weights (pytorch_model.bin), which can run code when loaded. Re-save them as "
        "safetensors, or set train.allow_pickle: true if you trust their origin (they are then loaded with "
        "weights_only=True)."
    ]
    assert not (tmp_path / "refused").exists()  # refused before anything was written

    # explicitly allowed: the plain-tensor pickle loads (weights_only) and the rung trains
    code = main([*argv, "--out", str(tmp_path / "allowed"), "--set", "train.allow_pickle=true"])
    assert code in (0, 1)  # met or not met: the weights loaded and trained either way
    doc = json.loads((tmp_path / "allowed" / "report.json").read_text())
    (run,) = doc["runs"]
    assert run["run_id"] == "pickled-t1" and run["status"] == "ok" and run["metrics"]
    kept = tmp_path / "allowed" / ("model" if doc["recommendation"] else "runs/pickled-t1/model")
    assert (kept / "model.safetensors").is_file()  # what we write is safetensors


def test_a_pickle_that_would_run_code_is_refused_even_when_pickles_are_allowed(
    tmp_path: Path, weak_baseline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    folder = _pickled_model(tmp_path / "evil", payload=_Payload(marker))
    ladder = _ladder(tmp_path / "ladder.yaml", _rung("evil", folder))
    data = write_csv(tmp_path / "data.csv", synthetic_rows(80))
    code = main(
        [
            "--data",
            str(data),
            "--ladder",
            str(ladder),
            "--target",
            "accuracy=0.75",
            "--out",
            str(tmp_path / "run"),
            "--set",
            "train.allow_pickle=true",
            *FAST,
        ]
    )
    assert code == 2
    assert _errors(capsys.readouterr().err) == [
        f"The pickled weights in {folder} hold objects other than tensors, which can run code when loaded; they "
        "were refused. Use safetensors weights from a source you trust."
    ]
    assert not marker.exists()


# ----------------------------------------------------------------------------- remote code


def test_trust_remote_code_is_off_by_default_and_passed_through_as_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    assert TrainConfig().trust_remote_code is False
    assert build_config().train.trust_remote_code is False
    seen: list[tuple[str, object]] = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        real = cls.from_pretrained

        def spy(*args, _real=real, _name=cls.__name__, **kwargs):  # type: ignore[no-untyped-def]
            seen.append((_name, kwargs.get("trust_remote_code", "missing")))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    folder = make_tiny_model(tmp_path / "tiny", layers=1)
    load_for_classification(folder, ["neg", "pos"])
    assert seen == [("AutoTokenizer", False), ("AutoModelForSequenceClassification", False)]
    seen.clear()
    load_for_classification(folder, ["neg", "pos"], trust_remote_code=True)
    assert seen == [("AutoTokenizer", True), ("AutoModelForSequenceClassification", True)]


def test_library_code_never_turns_remote_code_on_by_itself() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in SOURCES
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"trust_remote_code\s*=\s*True", line)
    ]
    assert offenders == []


# ----------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("where", ["config", "ladder"])
def test_yaml_tags_that_build_python_objects_are_refused(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    hostile = tmp_path / f"{where}.yaml"
    hostile.write_text(f'train: !!python/object/apply:os.system ["touch {marker}"]\n')
    flag = "--config" if where == "config" else "--ladder"
    data = write_csv(tmp_path / "data.csv", synthetic_rows(40))
    code = main(["--data", str(data), flag, str(hostile), "--out", str(tmp_path / "run"), "--target", "accuracy=0.8"])
    kind = "Config" if where == "config" else "Ladder"
    assert code == 2
    assert _errors(capsys.readouterr().err) == [
        f"{kind} file {hostile} is not valid YAML (could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'). Fix the syntax and retry."
    ]
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_yaml_is_only_ever_read_with_safe_load() -> None:
    unsafe = re.compile(r"yaml\.(load|unsafe_load|full_load|load_all)\(|Loader\s*=")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in SOURCES
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unsafe.search(line)
    ]
    assert offenders == []


# ----------------------------------------------------------------------------- path traversal


@pytest.mark.parametrize("name", ["../../evil", "/abs", "..", "a/b", ".hidden", "x\\y", ""])
def test_rung_names_that_could_escape_the_run_directory_are_refused(tmp_path: Path, name: str) -> None:
    folder = make_tiny_model(tmp_path / "tiny", layers=1)
    ladder = _ladder(tmp_path / "ladder.yaml", _rung(name, folder))
    with pytest.raises(ConfigError) as info:
        load_ladder(str(ladder))
    if name:
        assert (
            f"name {name!r} must start with a letter or digit and hold only letters, digits, '.', '_' and '-' "
            "(it names the run's folder in the run directory)" in str(info.value)
        )
    with pytest.raises(ValueError):
        Rung(**_rung(name, folder))


def test_a_traversing_rung_name_stops_advise_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_tiny_model(tmp_path / "tiny", layers=1)
    ladder = _ladder(tmp_path / "ladder.yaml", _rung("../../evil", folder))
    data = write_csv(tmp_path / "data.csv", synthetic_rows(40))
    out = tmp_path / "deep" / "er" / "run"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["--data", str(data), "--ladder", str(ladder), "--out", str(out), "--target", "accuracy=0.3"]) == 2
    assert _errors(capsys.readouterr().err) == [
        f"Ladder file {ladder} has 1 problem(s): rungs[0] (../../evil): name '../../evil' must start with a letter "
        "or digit and hold only letters, digits, '.', '_' and '-' (it names the run's folder in the run directory)."
    ]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_from_report_naming_a_traversing_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    earlier = tmp_path / "earlier"
    (earlier / "model").mkdir(parents=True)
    from advisor.runkey import RunKey
    from advisor.types import Candidate, Cost, RunResult

    run = RunResult(
        RunKey("trial", "x", 1), Candidate("../../evil", "finetune", "x"), {}, "ok", {"accuracy": 0.9}, Cost()
    )
    report = {
        "recommendation": {"run_id": run.run_id, "candidate": run.candidate.to_dict()},
        "runs": [run.to_dict()],
        "dataset": {"label_names": ["neg", "pos"]},
    }
    (earlier / "report.json").write_text(json.dumps(report))
    data = write_csv(tmp_path / "data.csv", synthetic_rows(40))
    out = tmp_path / "run"
    argv = ["--data", str(data), "--from", str(earlier), "--out", str(out), "--target", "accuracy=0.8"]
    code = main([*argv, "--set", "metering.codecarbon=false"])
    assert code == 2
    assert _errors(capsys.readouterr().err) == [
        f"{earlier / 'report.json'} names the model '../../evil', not a valid rung name. "
        "Pass the run directory of a finished advise with --from."
    ]
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


# ----------------------------------------------------------------------------- shells


def test_nothing_is_passed_to_a_shell() -> None:
    shell = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.getoutput|subprocess\.getstatusoutput")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in SOURCES
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if shell.search(line)
    ]
    assert offenders == []
    # the one subprocess (pip download in advisor/offline/fetch.py) gets an argument list, never a string
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for call in re.findall(r"subprocess\.(?:run|Popen|call|check_call|check_output)\(\s*([^,\)]+)", text):
            assert not call.strip().startswith(('f"', "'", '"', "f'")), f"{path}: {call}"
