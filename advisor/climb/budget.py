"""Hard budgets: forecast a run's cost before it starts, and stop it inside before it crosses a budget.

The search has one meter: the sum of every recorded phase's :class:`Cost` (baseline, small
experiments, trials with their evaluations, distillation, test scoring). Two things keep it under
the user's ``budget_pflops`` / ``budget_kwh`` / ``budget_seconds``:

* :func:`forecast_run` says, before a rung starts, what one full trial will cost: FLOPs from the
  model's shape and the data's token lengths (the same forward formula the meter counts with,
  Kaplan et al. 2020, times 3 for training), seconds from the FLOP rate measured on this machine
  earlier in the search, kWh from the energy rate measured so far. The policy refuses a rung whose
  forecast does not fit (:func:`advisor.climb.policy.budget_refuses`).
* :class:`BudgetCallback` watches a run step by step and stops it when the next step, plus one
  evaluation pass to judge the partial model, would cross a budget. The run is recorded with status
  ``budget`` and judged like any early-stopped run. The climb hands the same callback to the
  distiller, which charges it with the phases it runs outside the Trainer (the teacher's pass, its
  logits) and tells it what judging the student costs (:meth:`BudgetCallback.charge`,
  :meth:`BudgetCallback.reserve`).
* :class:`FitBudget` does the same between the fits of a phase without steps (the TF-IDF
  baseline's C grid and cross-validation folds): the next fit, forecast as the longest one so far,
  does not start when it would cross the seconds or kWh budget.

Seconds are metered wall time of the phases; the minutes spent outside them (loading data and
libraries, about a few seconds per run for loading a model) are the "start-up" the budget check
does not see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.acceptance import AcceptanceCriteria
from advisor.metering.flops import PASSES, encoder_forward_flops
from advisor.training.stopping import StopsRun
from advisor.types import Cost, RunResult

PFLOP = 1e15
#: validation passes that judge the partial model once the budget stops a run (one evaluation,
#: forced at the stopping step; the best evaluation's weights are the ones kept)
JUDGING_PASSES = 1


@dataclass(frozen=True)
class Rates:
    """Speeds measured earlier in this search: FLOPs per wall second, kWh per wall second."""

    flops_per_s: float | None = None
    kwh_per_s: float | None = None

    @classmethod
    def measured(cls, runs: Iterable[RunResult]) -> Rates:
        runs = list(runs)
        flops = sum(r.cost.flops for r in runs if r.cost.flops > 0)
        flop_wall = sum(r.cost.wall_s for r in runs if r.cost.flops > 0)
        energy = [r.cost for r in runs if r.cost.provenance.get("energy") in ("measured", "estimated")]
        kwh, kwh_wall = sum(c.energy_kwh for c in energy), sum(c.wall_s for c in energy)
        return cls(
            flops / flop_wall if flop_wall > 0 and flops > 0 else None,
            kwh / kwh_wall if kwh_wall > 0 and kwh > 0 else None,
        )


def forecast_run(
    model_config: Any,
    train_lengths: Sequence[int],
    val_lengths: Sequence[int],
    epochs: float,
    evals_per_epoch: int,
    num_labels: int,
    rates: Rates,
    eval_rows: int = 0,
) -> Cost:
    """Forecast one full trial: training FLOPs, every evaluation pass, and the seconds and kWh they take.

    Args:
        model_config: the rung's transformers config (its shape gives the FLOPs per token).
        train_lengths, val_lengths: token count of every training / validation text, truncated.
        epochs: epochs of the trial.
        evals_per_epoch: evaluations per epoch during training.
        eval_rows: rows each of those scores (``train.eval_rows``; 0: the whole split); one pass
            over the whole split at the end judges the kept weights.
        num_labels: classes of the task.
        rates: speeds measured earlier in the search; without them seconds and kWh are 0 (unknown).
    """
    fwd_train = sum(encoder_forward_flops(model_config, n, num_labels) for n in train_lengths)
    fwd_val = sum(encoder_forward_flops(model_config, n, num_labels) for n in val_lengths)
    train = PASSES["train"] * fwd_train * epochs
    per_eval, _ = evaluation_reserve(fwd_val, len(val_lengths), eval_rows)
    # on a sample, one more pass over the whole split judges the kept weights
    evals = per_eval * max(1, round(evals_per_epoch * epochs)) + (fwd_val if per_eval < fwd_val else 0.0)
    return forecast_cost(train, evals, rates)


def forecast_cost(train_flops: float, eval_flops: float, rates: Rates) -> Cost:
    """A forecast Cost of work of ``train_flops + eval_flops``, its seconds and kWh at measured ``rates``
    (0, unknown, without them)."""
    seconds = (train_flops + eval_flops) / rates.flops_per_s if rates.flops_per_s else 0.0
    kwh = seconds * rates.kwh_per_s if rates.kwh_per_s else 0.0
    return Cost(
        wall_s=seconds,
        train_flops=train_flops,
        eval_flops=eval_flops,
        energy_cpu_kwh=kwh,
        provenance={"flops": "analytic", "time": "estimated", "energy": "estimated"},
    )


def evaluation_reserve(full_pass_flops: float, n_rows: int, eval_rows: int) -> tuple[float, float]:
    """What a watched run's passes cost: (one evaluation during training, judging it once stopped).

    With every evaluation on the whole split (``train.eval_rows`` 0, or a split no larger), both are
    a full pass. With a sample, an evaluation costs the sample's share of a full pass, and a stopped
    run is judged by the Trainer's evaluation at the stop (on the sample) and then one full pass
    over the kept weights.
    """
    if eval_rows <= 0 or n_rows <= eval_rows:
        return full_pass_flops, JUDGING_PASSES * full_pass_flops
    sample = full_pass_flops * eval_rows / n_rows
    return sample, sample + full_pass_flops


def _left(criteria: AcceptanceCriteria, spent: Cost) -> dict[str, float]:
    out = {}
    if criteria.budget_pflops is not None:
        out["flops"] = criteria.budget_pflops * PFLOP - spent.flops
    if criteria.budget_kwh is not None:
        out["kwh"] = criteria.budget_kwh - spent.energy_kwh
    if criteria.budget_seconds is not None:
        out["seconds"] = criteria.budget_seconds - spent.wall_s
    return out


class BudgetCallback(StopsRun):
    """Stops a run before its next step (plus one evaluation to judge it) would cross a budget.

    Reads the run's own meter as it goes: FLOPs counted so far (the metering callback's pending
    tallies included) and wall seconds since the phase began; kWh are the seconds times the
    energy rate measured earlier in the search (codecarbon reports energy only when a phase ends).

    Args:
        criteria: the budgets.
        spent: what the search spent before this run, or a function that says so when a run starts.
        eval_flops: FLOPs of one validation pass (reserved so the partial model can be judged).
        rates: speeds measured earlier in the search, or a function that measures them when a run
            starts (``--from`` makes its callback before the phases that give it a kWh rate run).

    ``train_run`` calls :meth:`bind` with the run's open :class:`advisor.metering.cost.Meter` and its
    :class:`advisor.training.counting.MeteringCallback` before training starts.
    """

    #: train_run records a run this callback stopped with this status
    stop_status = "budget"

    def __init__(
        self,
        criteria: AcceptanceCriteria,
        spent: Cost | Callable[[], Cost],
        eval_flops: float,
        rates: Rates | Callable[[], Rates],
    ) -> None:
        super().__init__()
        self.criteria = criteria
        self._spent_now = spent if callable(spent) else (lambda: spent)
        self._rates_now = rates if callable(rates) else (lambda: rates)
        self.rates = self._rates_now()
        self._charged = Cost()
        self.spent = self._spent_now()
        self.reserve(eval_flops)
        self.meter: Any = None
        self.counter: Any = None
        self._last: tuple[float, float] = (0.0, 0.0)
        self._steps = 0

    def reserve(self, eval_flops: float, judging_flops: float | None = None, evaluate_on_stop: bool = True) -> None:
        """What the passes of the watched runs cost, once the caller knows (a distiller, its student).

        Args:
            eval_flops: one validation pass due during training.
            judging_flops: judging the partial model once stopped; None: ``JUDGING_PASSES`` validation passes.
            evaluate_on_stop: the judging is an evaluation the Trainer runs at the stopping step
                (``train_run`` keeps the best evaluation's weights); False when the caller judges the
                model itself after training (a distillation scores its student on validation and test).
        """
        self.eval_flops = eval_flops
        self.judging_flops = judging_flops if judging_flops is not None else JUDGING_PASSES * eval_flops
        self.evaluate_on_stop = evaluate_on_stop

    def charge(self, cost: Cost) -> None:
        """Count ``cost``, spent outside any watched Trainer (a distillation's teacher pass and logits,
        an earlier student), as spent before the next run this callback watches."""
        self._charged = self._charged + cost
        self.spent = self._spent_now() + self._charged

    def refuses(self, what: str, flops: float) -> str | None:
        """Why a pass of ``flops`` outside any Trainer (a distillation's teacher scoring, its logits)
        cannot start on what is left, or None. Its seconds and kWh are the FLOPs at the rates measured
        earlier in the search; a budget whose rate is unknown is not checked here."""
        rate, kwh_rate = self.rates.flops_per_s, self.rates.kwh_per_s
        seconds = flops / rate if rate else None
        need = {"flops": flops, "seconds": seconds, "kwh": seconds * kwh_rate if seconds and kwh_rate else None}
        unit = {"flops": "PFLOPs", "seconds": "s", "kwh": "kWh"}
        for key, left in _left(self.criteria, self.spent).items():
            cost = need[key]
            if cost is not None and cost > left:
                scale = PFLOP if key == "flops" else 1.0
                return (
                    f"budget: {what} was not started: forecast {cost / scale:.3g} {unit[key]} "
                    f"({flops / PFLOP:.3g} PFLOPs), past the {max(left, 0.0) / scale:.3g} {unit[key]} left"
                )
        return None

    def bind(self, meter: Any, counter: Any) -> None:
        """Watch a new run: its meter and counter; the search's spend and rates are read again (one
        callback may serve several runs in turn, as ``--from`` does)."""
        self.meter, self.counter = meter, counter
        self.spent = self._spent_now() + self._charged
        self.rates = self._rates_now()
        self.stop_message = None
        self._last, self._steps = (0.0, 0.0), 0

    def _now(self) -> tuple[float, float]:
        flops, seconds = self.meter.so_far()
        pending = self.counter.pending_flops() if self.counter is not None else 0.0
        return flops + pending, seconds

    def check(self, evaluating: bool) -> str | None:
        """Why the run must stop now (the next step would cross a budget), or None."""
        flops, seconds = self._now()
        step_flops, step_s = flops - self._last[0], seconds - self._last[1]
        self._last = (flops, seconds)
        self._steps += 1
        rate = flops / seconds if seconds > 0 and flops > 0 else self.rates.flops_per_s
        # what is spent once the next step, an evaluation due now, and the judging passes are done
        passes = (self.eval_flops if evaluating else 0.0) + self.judging_flops
        need_flops = flops + step_flops + passes
        need_s = seconds + step_s + (passes / rate if rate else 0.0)
        kwh_rate = self.rates.kwh_per_s or 0.0
        need = {"flops": need_flops, "seconds": need_s, "kwh": need_s * kwh_rate}
        for key, left in _left(self.criteria, self.spent).items():
            if key == "kwh" and not kwh_rate:
                continue
            if need[key] > left:
                shown = {
                    "flops": f"{need_flops / PFLOP:.3g} PFLOPs",
                    "seconds": f"{need_s:.3g} s",
                    "kwh": f"{need['kwh']:.3g} kWh",
                }[key]
                room = left / PFLOP if key == "flops" else left
                unit = {"flops": "PFLOPs", "seconds": "s", "kwh": "kWh"}[key]
                return (
                    f"budget: after {self._steps} steps, one more step and judging the model would bring this run "
                    f"to {shown}, past the {max(room, 0.0):.3g} {unit} left"
                )
        return None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stop_message is not None or self.meter is None:
            return
        self._stop_if(self.check(bool(getattr(control, "should_evaluate", False))), control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # an evaluation per epoch (a distillation's) is asked for after the last step's check: it
        # must fit too, with the judging passes after it
        if self.stop_message is not None or self.meter is None or not getattr(control, "should_evaluate", False):
            return
        self._steps -= 1  # no step was taken since the last check
        self._stop_if(self.check(True), control)

    def _stop_if(self, why: str | None, control: Any) -> None:
        if why is not None:
            self.stop_message = why
            control.should_training_stop = True
            # judge the partial model now (its pass was reserved), unless the caller judges it itself
            control.should_evaluate = self.evaluate_on_stop
            control.should_save = False


class FitBudget:
    """Checks the seconds and kWh budgets between the fits of a phase that has no steps (the baseline).

    Before each fit, the next one is forecast as the longest fit timed so far (the first always runs:
    there is nothing to forecast it from); it does not start when the phase's elapsed time plus that
    forecast would cross what is left. kWh are the meter's live energy reading (codecarbon's running
    total, :meth:`advisor.metering.cost.Meter.energy_so_far`) plus the next fit at this phase's own kWh per
    second, so a fresh search (the baseline comes first) is checked too; when the reader cannot say,
    seconds times the energy rate measured earlier in the search; without either, kWh are not
    checked. FLOPs do not apply (a TF-IDF fit has no meaningful FLOPs count).

    Args:
        criteria: the budgets.
        spent: what the search spent before this phase.
        rates: speeds measured earlier in the search.
    """

    #: the phase is recorded with this status when a fit was refused
    stop_status = "budget"

    def __init__(self, criteria: AcceptanceCriteria, spent: Cost, rates: Rates) -> None:
        self.criteria, self.spent, self.rates = criteria, spent, rates
        self.meter: Any = None
        self.stop_message: str | None = None
        self._started: float | None = None
        self._longest = 0.0
        self._fits = 0

    def bind(self, meter: Any) -> None:
        """Watch a new phase: its open :class:`advisor.metering.cost.Meter`."""
        self.meter, self.stop_message = meter, None
        self._started, self._longest, self._fits = None, 0.0, 0

    def next_fit(self, what: str) -> bool:
        """True when the next fit (``what``, for the message) may start; False once a budget refuses it."""
        if self.stop_message is not None:
            return False
        if self.meter is None:
            return True
        _, now = self.meter.so_far()
        if self._started is not None:
            self._longest = max(self._longest, now - self._started)
            self._fits += 1
        self._started = now
        if self._fits == 0:
            return True
        need_s = now + self._longest
        need = {"seconds": need_s, "kwh": self._kwh_after(now, need_s)}
        for key, left in _left(self.criteria, self.spent).items():
            if key == "flops" or (key == "kwh" and need["kwh"] is None):
                continue
            if need[key] > left:  # type: ignore[operator]
                unit = {"seconds": "s", "kwh": "kWh"}[key]
                self.stop_message = (
                    f"budget: after {self._fits} fits, {what} (forecast {self._longest:.3g} s, the longest fit so far) "
                    f"would bring this phase to {need[key]:.3g} {unit}, past the {max(left, 0.0):.3g} {unit} left"
                )
                return False
        return True

    def _kwh_after(self, now: float, need_s: float) -> float | None:
        """kWh of the phase once the next fit is done: the meter's live energy and this phase's own
        rate when the reader can say, else the rate measured earlier in the search, else None."""
        if self.criteria.budget_kwh is None:
            return None
        read = getattr(self.meter, "energy_so_far", None)
        kwh_now = read() if read is not None else None
        if kwh_now is not None and now > 0:
            return kwh_now + self._longest * kwh_now / now
        return need_s * self.rates.kwh_per_s if self.rates.kwh_per_s else None


def search_spent(runs: Iterable[RunResult], extra: Iterable[Cost] = ()) -> Cost:
    """The one meter of the search: every run's cost plus other phases (test scoring)."""
    return sum((r.cost for r in runs), Cost()) + sum(extra, Cost())


def spent_against_allowed(criteria: AcceptanceCriteria, spent: Cost) -> dict[str, dict[str, float]]:
    """For each budget that was set: what the search spent and what it was allowed (the report's table)."""
    out: dict[str, dict[str, float]] = {}
    if criteria.budget_pflops is not None:
        out["pflops"] = {"spent": spent.flops / PFLOP, "allowed": criteria.budget_pflops}
    if criteria.budget_kwh is not None:
        out["kwh"] = {"spent": spent.energy_kwh, "allowed": criteria.budget_kwh}
    if criteria.budget_seconds is not None:
        out["seconds"] = {"spent": spent.wall_s, "allowed": criteria.budget_seconds}
    return out
