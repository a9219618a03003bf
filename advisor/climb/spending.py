"""What is left of a budget: pure functions of the configured limits and what was spent.

The policy (:mod:`advisor.climb.policy`) asks them before a step starts and the ``--from`` continuation
before each trial; inside a run the budget watch (:class:`advisor.climb.budget.BudgetCallback`) stops
the step that would cross.
"""

from __future__ import annotations

from advisor.acceptance import AcceptanceCriteria
from advisor.config.settings import Config
from advisor.types import Cost
from advisor.verdicts.criteria import fmt_num

PFLOP = 1e15


def any_budget(criteria: AcceptanceCriteria) -> bool:
    """Whether any budget (compute, energy, wall time) is set."""
    return any(x is not None for x in (criteria.budget_pflops, criteria.budget_kwh, criteria.budget_seconds))


_BUDGETS = (
    ("budget_pflops", "compute", "PFLOPs", lambda c: c.flops / PFLOP),
    ("budget_kwh", "energy", "kWh", lambda c: c.energy_kwh),
    ("budget_seconds", "wall time", "s", lambda c: c.wall_s),
)


def budget_exhausted(config: Config, spent: Cost) -> str | None:
    """Why the search may spend nothing more (a budget already reached), or None."""
    for name, label, unit, used in _BUDGETS:
        limit = getattr(config.criteria, name)
        if limit is not None and used(spent) >= limit:
            return f"the {label} budget of {fmt_num(limit)} {unit} is spent ({fmt_num(used(spent))} {unit})"
    return None


def budget_refuses(config: Config, spent: Cost, forecast: Cost) -> str | None:
    """Why work forecast to cost ``forecast`` cannot fit in what is left of a budget, or None."""
    for name, label, unit, used in _BUDGETS:
        limit = getattr(config.criteria, name)
        if limit is None or used(forecast) <= 0:
            continue
        left = limit - used(spent)
        if used(forecast) > left:
            return (
                f"its forecast {fmt_num(used(forecast))} {unit} does not fit in the {fmt_num(max(left, 0.0))} {unit} "
                f"left of the {label} budget ({fmt_num(limit)} {unit})"
            )
    return None
