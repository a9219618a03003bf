"""The climb reaches distillation through an interface: found by entry point, never imported by advisor."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from advisor.distiller import ENTRY_POINT_GROUP, DistilRequest, find_distiller
from advisor.types import Candidate, Cost, RunResult

ROOT = Path(__file__).resolve().parent.parent


def test_no_module_in_advisor_imports_distill():
    offenders = []
    for path in sorted((ROOT / "advisor").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n == "distill" or n.startswith("distill.")]
    assert offenders == []


def test_pyproject_declares_distills_distiller():
    from distill.compact import distil_run

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert EntryPoint(name="default", value=declared["default"], group=ENTRY_POINT_GROUP).load() is distil_run


def test_the_distiller_is_found_by_its_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "fake_distiller.py").write_text("def distil(*args):\n    return 'fake student'\n", encoding="utf-8")
    info = tmp_path / "fake_distiller-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-distiller\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nfake = fake_distiller:distil\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_distiller("fake")() == "fake student"
    sys.modules.pop("fake_distiller", None)


def test_without_a_distiller_the_student_run_says_why_and_is_retried_later():
    teacher = RunResult(
        run_id="rung-t1",
        candidate=Candidate(name="rung", kind="finetune", source="x"),
        hyperparameters={},
        status="ok",
        metrics={"accuracy": 0.9},
        cost=Cost(),
        artifact="runs/rung-t1/model",
    )
    messages: list[str] = []
    request = DistilRequest(teacher, None, None, Path("."), "rung-t1-student")  # type: ignore[arg-type]
    run = find_distiller("no-such-distiller")(request, messages.append)
    assert run.status == "failed" and run.run_id == "rung-t1-student"  # failed runs are retried by the ledger
    assert "distillation unavailable" in (run.message or "") and "distil_on_ceiling" in (run.message or "")
    assert messages and "distillation unavailable" in messages[0]
