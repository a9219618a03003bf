"""The climb reaches distillation through an interface its callers hand it; the climb never imports distill."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from advisor.climb.distiller import DistilRequest, unavailable
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, RunResult

ROOT = Path(__file__).resolve().parent.parent


#: the entry points that compose the product: they hand the climb distill.compact.distil_run
COMPOSERS = {"__init__.py", "cli.py"}


def test_no_module_in_advisor_but_its_entry_points_imports_distill():
    offenders = []
    for path in sorted((ROOT / "advisor").rglob("*.py")):
        if path.relative_to(ROOT / "advisor").as_posix() in COMPOSERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n == "distill" or n.startswith("distill.")]
    assert offenders == []


@pytest.mark.parametrize("entry", ["cli", "select_model"])
def test_the_command_and_the_python_api_hand_the_climb_greenladders_distiller(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import advisor.advise
    from advisor import select_model
    from advisor.cli import main
    from distill.compact import distil_run
    from tests.conftest import synthetic_rows, write_csv

    handed = []

    def record(*_a, distiller=None, **_k):  # type: ignore[no-untyped-def]
        handed.append(distiller)
        raise SystemExit(0)

    monkeypatch.setattr(advisor.advise, "advise", record)
    data = write_csv(tmp_path / "d.csv", synthetic_rows(40))
    with pytest.raises(SystemExit):
        if entry == "cli":
            main(["--data", str(data), "--target", "accuracy=0.9", "--out", str(tmp_path / "o")])
        else:
            select_model(str(data), {"accuracy": 0.9}, tmp_path / "o")
    # the real function object: a checkout used without pip install distils too (no entry point is read)
    assert handed == [distil_run]


def test_without_a_distiller_the_student_run_says_why_and_is_retried_later():
    teacher = RunResult(
        key=RunKey("trial", "rung", 1),
        candidate=Candidate(name="rung", kind="finetune", source="x"),
        hyperparameters={},
        status="ok",
        metrics={"accuracy": 0.9},
        cost=Cost(),
        artifact="runs/rung-t1/model",
    )
    messages: list[str] = []
    request = DistilRequest(teacher, None, None, Path("."), RunKey("student", "rung-t1"))  # type: ignore[arg-type]
    run = unavailable()(request, messages.append)
    assert run.status == "failed" and run.run_id == "rung-t1-student"  # failed runs are retried by the ledger
    message = run.message or ""
    assert "distillation unavailable" in message and "distil_run" in message and "distil_on_ceiling" in message
    assert messages and "distillation unavailable" in messages[0]
