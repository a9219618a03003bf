from __future__ import annotations

from pathlib import Path

from advisor.rules import RuleFiring
from advisor.train import _loss_fell, scratch_dir


def _history(losses: list[float]) -> list[dict[str, float]]:
    return [{"loss": v, "step": i + 1} for i, v in enumerate(losses)]


def test_a_plateau_after_real_learning_counts_as_convergence() -> None:
    firing = RuleFiring("loss_not_decreasing", 60, "loss not decreasing", {"recent_loss": 0.30})
    assert "fell from 0.7 (first 20 steps) to 0.3" in (_loss_fell(_history([0.7] * 20 + [0.3] * 40), firing, 20) or "")


def test_a_loss_that_never_fell_is_not_convergence() -> None:
    firing = RuleFiring("loss_not_decreasing", 40, "loss not decreasing", {"recent_loss": 0.69})
    assert _loss_fell(_history([0.70] * 40), firing, 20) is None


def test_hopeless_rules_are_never_early_stopping_but_overfitting_is() -> None:
    firing = RuleFiring("nan_loss", 5, "NaN", {"recent_loss": 0.1})
    assert _loss_fell(_history([0.7] * 30), firing, 20) is None
    overfit = RuleFiring("overfit", 50, "overfitting", {})
    assert "validation loss started rising" in (_loss_fell(_history([0.7] * 30), overfit, 20) or "")


def test_trainer_scratch_lives_in_the_run_dir_and_a_killed_runs_leftover_is_removed(tmp_path: Path) -> None:
    leftover = tmp_path / ".scratch" / "trainer-minilm-l3-t1-abc123"
    leftover.mkdir(parents=True)
    (leftover / "partial.bin").write_bytes(b"x")
    other = tmp_path / ".scratch" / "trainer-minilm-l6-t1-def456"  # another run's: left alone
    other.mkdir()
    fresh = scratch_dir(tmp_path, "minilm-l3-t1")
    assert fresh.parent == tmp_path / ".scratch" and fresh.is_dir()
    assert not leftover.exists() and other.exists()
