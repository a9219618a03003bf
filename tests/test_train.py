from __future__ import annotations

from advisor.rules import RuleFiring
from advisor.train import _loss_fell


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
