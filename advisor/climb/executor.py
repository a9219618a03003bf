"""The executor of the climb: asks :func:`advisor.climb.policy.decide` what to do, does it, records it.

Each action's result goes into the ledger the moment it exists. On a rerun the loop is the same:
the policy asks for the same actions in the same order (it is a function of the records), and
asks for an action whose result the ledger already holds to be read back (``ReadBack``) instead of
carried out, so resuming a killed climb is replaying its records.

The executor decides nothing: when to order the steps, which step to forecast, a trial's warm
start, when to read or wait for a shared study and whether to redo a failed record are actions of
the policy too (:mod:`advisor.climb.choices`).

The executor owns everything with side effects that the policy must not do: the per-rung optuna
studies (asked for hyperparameters, told results, read for what other workers did), materialising
models, forecasting a rung's cost from its shape and the data's token lengths, the budget watch
inside each run, and distillation through the ``distiller`` its caller hands in.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advisor import distributed, runkey
from advisor.climb import policy, steps
from advisor.climb.budget import (
    BudgetCallback,
    FitBudget,
    Rates,
    evaluation_reserve,
    search_spent,
)
from advisor.climb.choices import small_curves
from advisor.climb.distiller import Distiller, DistilRequest
from advisor.climb.evidence import Forecast, OrderSteps, ReadBack, ReadShared, Redo, WaitForShared
from advisor.climb.forecast import forecast_full
from advisor.climb.spending import any_budget
from advisor.climb.tuning import PruningCallback, RungTuner, rung_tuner
from advisor.config.settings import Config
from advisor.data.task import TaskData, column
from advisor.faults import fault_point
from advisor.models.ladder import candidate_for, ladder_rungs, materialise
from advisor.outcome import Verdict
from advisor.report.render import step_line, step_reference
from advisor.store.ledger import Ledger
from advisor.training.baseline import fit_baseline
from advisor.training.counting import checkpoint_to
from advisor.training.probe import EmbeddingCache, checkpoint_pooling, fit_probe
from advisor.training.train import train_run
from advisor.types import Cost, RunResult

Progress = Callable[[str], None]


class Climb:
    """Carries out the policy's actions for one run directory.

    Args:
        config: the resolved configuration.
        data: the task's splits.
        run_dir: the run directory (models, scratch).
        ledger: the run directory's ledger (results are recorded and read back here).
        fingerprint: the run directory's fingerprint (names the shared optuna studies).
        say: progress lines.
        distiller: distils a run that meets the floor but not a ceiling; None turns that off.
        before: runs made in this run directory before the climb (a ``--from`` continuation that
            failed): their cost counts against the budgets; the policy does not judge them.
        prior_candidates: how many runs were judged before the climb (see ``Evidence``).
        warm_start: settings for the first rung's first trial when no rung below was climbed here
            (the earlier run's winning settings on the rung below).
    """

    def __init__(
        self,
        config: Config,
        data: TaskData,
        run_dir: Path,
        ledger: Ledger,
        fingerprint: str,
        say: Progress,
        distiller: Distiller | None = None,
        before: Sequence[RunResult] = (),
        prior_candidates: int = 0,
        warm_start: Mapping[str, Any] | None = None,
    ) -> None:
        self.config, self.data, self.run_dir, self.ledger = config, data, run_dir, ledger
        self.fingerprint, self.say, self.distiller = fingerprint, say, distiller
        self.before, self.prior_candidates = tuple(before), prior_candidates
        self.speed_known = any(r.cost.flops > 0 for r in self.before)  # a continuation ran before the climb
        self.warm_start = dict(warm_start) if warm_start else None
        self.recorded = {r.run_id: r for r in ledger.all()}  # what a resumed climb reads back
        self.rungs = {r.name: r for r in ladder_rungs(config)}
        #: the climb's steps (probes and fine-tunes), put in order of forecast compute before the first
        #: step is taken (:meth:`_order`); until then in ladder order, which only their count matters for
        self.steps: tuple[policy.RungInfo, ...] = tuple(
            steps.steps_for(tuple(self.rungs.values()), config, len(data.train))
        )
        self._ordered = False
        self.runs: list[RunResult] = []
        self.tuners: dict[str, RungTuner] = {}
        self.sources: dict[str, str] = {}
        self.forecasts: dict[str, Cost] = {}
        self.shared: dict[str, policy.SharedStudy] = {}
        self.embeddings: dict[str, EmbeddingCache] = {}  # per encoder: a probe's rows, embedded once
        self._lengths: tuple[list[int], list[int]] | None = None
        self.val_labels = tuple(int(y) for y in column(data.validation, "label"))

    # -- the loop -------------------------------------------------------------------------------

    def evidence(self) -> policy.Evidence:
        return policy.Evidence(
            self.steps,
            tuple(self.runs),
            self.val_labels,
            len(self.data.label_names),
            dict(self.forecasts),
            dict(self.shared),
            search_spent([*self.before, *self.runs]),
            self.prior_candidates,
            len(self.data.train),
            recorded=dict(self.recorded),
            warm_start=self.warm_start,
            ordered=self._ordered,
            speed_known=self.speed_known,
        )

    def run(self) -> policy.Stop:
        """Climb until the policy says stop; returns the stop (its reason and recommendation)."""
        while not isinstance(action := policy.decide(self.evidence(), self.config), policy.Stop):
            run = self._do(action)
            if run is not None:
                self.runs.append(run)
                self._announce(run)
        return action

    def _announce(self, run: RunResult) -> None:
        """One line as each step finishes: metric with interval, verdict, cost, gain per PFLOP."""
        metric = self.config.criteria.metric
        reference = step_reference(self.runs[:-1], run, metric)
        self.say(step_line(run, self.verdicts().get(run.run_id), reference, metric))

    def verdicts(self) -> dict[str, Verdict]:
        return policy.verdicts(self.evidence(), self.config)

    def ending(self, stop: policy.Stop) -> dict[str, Any]:
        """How the climb ended, for the report: the outcome, the decision level, the next step's cost."""
        details: dict[str, Any] = {
            "outcome": stop.outcome,
            "decision_level": policy.decision_level(self.evidence(), self.config),
        }
        if stop.next_cost is not None:
            details["next_cost"] = stop.next_cost.to_dict()
        return details

    # -- actions --------------------------------------------------------------------------------

    def _do(self, action: policy.Action) -> RunResult | None:
        """Carry ``action`` out; the run it made or read back, None for a chore that records none."""
        if isinstance(action, OrderSteps):
            self._order()
        elif isinstance(action, Forecast):
            self._forecast(action.step)
        elif isinstance(action, ReadShared):
            self._read_shared(self._tuner(action.trial), action.trial.rung, wait=False)
        elif isinstance(action, WaitForShared):
            self._read_shared(self.tuners[action.rung], action.rung, wait=True)
        elif isinstance(action, ReadBack):
            self.say(f"{action.run.run_id}: read back from the ledger (not {'re' + _verb(action.run)})")
            if isinstance(action.action, policy.Train) and policy.is_trial(action.action):
                self._after_trial(action.action, action.run)
            return action.run
        elif isinstance(action, Redo):
            self.say(f"{action.failed.run_id}: failed last time ({action.failed.message}); trying it again")
            return self._carry_out(action.action)
        elif not isinstance(action, policy.Stop):
            return self._carry_out(action)
        return None

    def _carry_out(self, action: policy.Step) -> RunResult | None:
        """Do ``action`` and record its run; None when another worker took the shared trial first."""
        if isinstance(action, policy.FitBaseline):
            budget = None
            if any_budget(self.config.criteria):
                budget = FitBudget(self.config.criteria, search_spent(self.runs), Rates.measured(self.runs))
            run = fit_baseline(self.data, self.config, self.run_dir, progress=self.say, budget=budget)
            fault_point("baseline")  # test-only crash injection (see advisor.faults.fault_point)
        elif isinstance(action, policy.Skip):
            rung = self.rungs[action.rung]
            run = RunResult(
                key=action.key,
                candidate=dataclasses.replace(candidate_for(rung), name=action.key.step, kind=action.method),
                hyperparameters={},
                status="skipped",
                metrics={},
                cost=Cost(),
                message=action.message,
                details={"forecast": dict(action.forecast)},
            )
            self.say(f"{action.key.step}: {action.message}")
            if action.method == "probe":
                self.embeddings.pop(rung.name, None)  # the probe grows no further
        elif isinstance(action, policy.Distil):
            if self.distiller is None:
                raise RuntimeError("the policy asked for a distillation but no distiller was supplied")
            parent = next(r for r in self.runs if r.run_id == action.parent)
            # the teacher's budget watch: the distiller charges it and reserves its student's passes
            watch = self._budget(parent.candidate.name)
            request = DistilRequest(parent, self.data, self.config, self.run_dir, action.key)
            run = self.distiller(request, progress=self.say, callbacks=watch)
        elif isinstance(action, policy.Probe):
            run = self._probe(action)
        elif isinstance(action, policy.Train) and action.small:
            run = self._train_small(action)
        elif isinstance(action, policy.Train) and action.rows is not None:
            run = self._train_sized(action)
        else:
            trained = self._train_trial(action)
            if trained is None:
                return None
            run = trained
        run = distributed.agree(run)  # one record per job: rank 0's, costed over all ranks
        self.ledger.add(run)
        self.recorded[run.run_id] = run
        return run

    def _order(self) -> None:
        """Put the steps in order of forecast compute on this data, and say so."""
        train, val = self._token_lengths(next(iter(self.rungs)))
        k = len(self.data.label_names)
        self.steps = steps.order_steps(self.steps, tuple(self.rungs.values()), train, val, k, self.config)
        self._ordered = True
        self.say("climb order (cheapest forecast first):")
        for line in steps.order_table(self.steps):
            self.say(line)

    def _probe(self, action: policy.Probe) -> RunResult:
        rung = self.rungs[action.rung]
        source = self._source(rung.name)
        pooling = checkpoint_pooling(source, rung.pooling)
        probe = dataclasses.replace(candidate_for(rung), name=action.run_id, kind="probe")
        keep = self.embeddings.pop if action.rows is None else self.embeddings.setdefault  # kept while it may grow
        cache = keep(rung.name, EmbeddingCache(len(self.data.train)))
        checkpoint = functools.partial(self.ledger.checkpoint, action.run_id)
        return fit_probe(
            probe,
            source,
            pooling,
            self.data,
            self.config,
            self.run_dir,
            action.key,
            self.say,
            action.rows,
            cache,
            checkpoint,
        )

    def _source(self, rung_name: str) -> str:
        if rung_name not in self.sources:
            rung = self.rungs[rung_name]
            t = self.config.train
            self.sources[rung_name] = str(
                materialise(rung, self.config.ladder.cache_dir, progress=self.say, allow_pickle=t.allow_pickle)
            )
        return self.sources[rung_name]

    def _budget(self, rung_name: str) -> list[Any]:
        if not any_budget(self.config.criteria):
            return []
        eval_flops = self._val_pass_flops(rung_name)
        runs = [*self.before, *self.runs]
        watch = BudgetCallback(self.config.criteria, search_spent(runs), eval_flops, Rates.measured(runs))
        watch.reserve(*evaluation_reserve(eval_flops, len(self.data.validation), self.config.train.eval_rows))
        return [watch]

    def _train(self, action: policy.Train, hp: dict[str, Any], callbacks: list[Any], **kw: Any) -> RunResult:
        """Train the action's rung with ``hp`` (the configured batch size added), its budget watched."""
        rung = self.rungs[action.rung]
        candidate = candidate_for(rung)
        if action.key.role == "sized":  # named as its step, as a probe is
            candidate = dataclasses.replace(candidate, name=action.run_id)
        return train_run(
            candidate,
            self._source(rung.name),
            self.data,
            self.config,
            self.run_dir,
            action.key,
            {**hp, "batch_size": self.config.train.batch_size},
            extra_callbacks=[*callbacks, *self._budget(rung.name), checkpoint_to(self.ledger, action.run_id)],
            progress=self.say,
            **kw,
        )

    def _train_small(self, action: policy.Train) -> RunResult:
        self.say(f"{action.rung}: small experiment on {self.config.tuning.small_fraction:.0%} of the training data")
        return self._train(action, {}, [], train_fraction=self.config.tuning.small_fraction, save_model=False)

    def _train_sized(self, action: policy.Train) -> RunResult:
        """A data-size rung: the train section's settings on a stratified prefix (no tuner: its studies
        hold full-size trials)."""
        rows, total = action.rows or 0, len(self.data.train)
        self.say(f"{action.rung}: fine-tuning on {rows:,} of the {total:,} training rows (a data-size rung)")
        return self._train(action, {}, [], train_fraction=rows / total)

    def _tuner(self, trial: policy.Train) -> RungTuner:
        """The rung's tuner, made on first use and started from the trial's warm start."""
        if trial.rung not in self.tuners:
            done = self.ledger.finished_of("trial", trial.rung)
            where = (self.run_dir.resolve(), self.fingerprint)
            warm = dict(trial.warm_start) if trial.warm_start is not None else None
            self.tuners[trial.rung] = rung_tuner(self.config, trial.rung, done, warm, where, len(self.data.train))
        return self.tuners[trial.rung]

    def _read_shared(self, tuner: RungTuner, rung: str, wait: bool) -> None:
        """Read what other workers did on ``rung`` (after waiting for their running trials)."""
        best = tuner.wait_for_others(self.say) if wait else tuner.best_value()
        where = tuner.best_elsewhere() if best is not None else ""
        self.shared[rung] = policy.SharedStudy(tuner.started(), best, where, len(self.runs), wait)

    def _train_trial(self, action: policy.Train) -> RunResult | None:
        rung = self.rungs[action.rung]
        tuner = self._tuner(action)
        trial, hp, origin = tuner.ask()
        if not tuner.claim(trial):
            self.say(f"{rung.name}: another worker took the rung's last trial; not training {action.run_id}")
            self.shared.pop(rung.name, None)  # the study changed: the policy has it read again
            return None
        pruner = PruningCallback(trial, self.config.criteria.metric)
        run = self._train(action, hp, [pruner])
        extra: dict[str, Any] = {"trial_origin": origin}
        small = next((r for r in self.runs if r.key == runkey.small(rung.name) and r.status == "ok"), None)
        if small is not None:
            metric = self.config.criteria.metric
            forecast = forecast_full(
                small.metrics[metric],
                self.config.tuning.small_fraction,
                len(self.val_labels),
                small_curves(self.runs, self.rungs, metric),
            )
            extra["forecast"] = forecast.to_dict()
        run = dataclasses.replace(run, details={**run.details, **extra})
        tuner.tell(
            trial,
            run.metrics.get(self.config.criteria.metric) if run.status == "ok" else None,
            pruned=pruner.stop_message is not None,
        )
        self._after_trial(action, run)
        return run

    def _after_trial(self, action: policy.Train, run: RunResult) -> None:
        """After a rung's first trial (trained or read back): queue the lr probe."""
        if action.key.number == 1:
            losses = [e.loss for e in run.evaluations]
            self._tuner(action).queue_probe(run.hyperparameters, losses, ok=run.status == "ok")

    # -- forecasts ------------------------------------------------------------------------------

    def _token_lengths(self, rung_name: str) -> tuple[list[int], list[int]]:
        """Token count of every training and validation text, with the first rung's tokenizer."""
        if self._lengths is None:
            self._lengths = steps.token_lengths(self._source(rung_name), self.data, self.config.train.max_length)
        return self._lengths

    def _model_config(self, rung_name: str) -> Any:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self._source(rung_name))

    def _val_pass_flops(self, rung_name: str) -> float:
        from advisor.metering.flops import encoder_forward_flops

        _, val = self._token_lengths(rung_name)
        cfg, k = self._model_config(rung_name), len(self.data.label_names)
        return sum(encoder_forward_flops(cfg, n, k) for n in val)

    def _forecast(self, step: policy.RungInfo) -> None:
        """Forecast ``step``'s cost from its encoder's shape, the token lengths and the measured speed."""
        train, val = self._token_lengths(next(iter(self.rungs)))
        rates = Rates.measured([*self.before, *self.runs])
        k = len(self.data.label_names)
        self.forecasts[step.name] = steps.forecast_step(
            step, self._model_config(step.rung), train, val, k, self.config, rates
        )


def _verb(run: RunResult) -> str:
    return {"baseline": "fitted", "probe": "fitted", "sized": "run"}.get(run.key.role, "trained")
