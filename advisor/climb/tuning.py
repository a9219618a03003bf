"""Frugal search per rung: the cheap default first, then TPE, warm-started, pruned on paired evidence.

A rung's study is an optuna study driven with ask/tell, so the advisor stays in charge of the
order of work and can stop the moment a trial meets the criteria. Trials already in the ledger
(a resumed or repeated ``advise``) are told to the study before it asks for anything new, and the
best settings of the rung below are tried second, right after the known-good default. Then comes a
probe: the default's learning rate moved up or down by a fixed factor, in the direction its
validation loss points (still falling at the end: under-trained; turned up or failed: too hot). Left
to itself, TPE's first draw is random and can land next to the default, which teaches it nothing.
A trial is stopped early only when it is worse than the rung's best on the same sampled rows, with
confidence (:mod:`advisor.climb.pruning`).
"""

from __future__ import annotations

import datetime
import importlib.util
import math
import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from advisor import distributed
from advisor.climb.pruning import PairedPruner, PruningCallback
from advisor.config.settings import Config
from advisor.errors import ConfigError
from advisor.types import RunResult

__all__ = ["PruningCallback", "RungTuner", "default_trial", "open_storage", "probe_trial", "search_space"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search_space(config: Config) -> dict[str, optuna.distributions.BaseDistribution]:
    """At most three hyperparameters, ranges from ``config.tuning``: lr (log), epochs, warm-up."""
    u = config.tuning
    return {
        "learning_rate": optuna.distributions.FloatDistribution(u.lr_min, u.lr_max, log=True),
        "epochs": optuna.distributions.FloatDistribution(u.epochs_min, u.epochs_max, step=1.0),
        "warmup_ratio": optuna.distributions.CategoricalDistribution(tuple(u.warmup_choices)),
    }


def default_trial(config: Config) -> dict[str, Any]:
    """The known cheap, good default: ``config.train``'s values, clipped into the search space."""
    t, u = config.train, config.tuning
    warm = t.warmup_ratio if t.warmup_ratio in u.warmup_choices else u.warmup_choices[0]
    return {
        "learning_rate": min(max(t.learning_rate, u.lr_min), u.lr_max),
        "epochs": float(min(max(round(t.epochs), u.epochs_min), u.epochs_max)),
        "warmup_ratio": warm,
    }


def probe_trial(
    config: Config, tried: Mapping[str, Any], eval_losses: Sequence[float | None], ok: bool
) -> tuple[dict[str, Any], str] | None:
    """The settings to try after ``tried``, and why; None when the lr already sits at that end of its range.

    The learning rate goes up by ``tuning.probe_factor`` when the run ended with its lowest
    validation loss (still improving), down when the loss had turned up by the end, or when the run
    failed or diverged (no finite loss). Epochs and warm-up stay as they were.
    """
    u = config.tuning
    losses = [x for x in eval_losses if x is not None and math.isfinite(x)]
    if not ok or not losses:
        up, why = False, "the first trial did not finish cleanly"
    elif losses[-1] <= min(losses):
        up, why = True, "validation loss still falling at the end"
    else:
        up, why = False, f"validation loss turned up after {min(losses):.3g}"
    lr = float(tried["learning_rate"]) * (u.probe_factor if up else 1.0 / u.probe_factor)
    lr = min(max(lr, u.lr_min), u.lr_max)
    if math.isclose(lr, float(tried["learning_rate"]), rel_tol=1e-6):
        return None
    arrow = "up" if up else "down"
    return {**dict(tried), "learning_rate": lr}, f"probe: lr {arrow} ({why})"


def open_storage(url: str) -> optuna.storages.BaseStorage | str:
    """An optuna storage from a URL: ``journal:PATH`` is a journal file (no server needed; several
    processes on one machine or a shared file system), anything else is an RDB URL
    (``sqlite:///study.db``, ``postgresql://user@host/db``) handed to optuna (SQLAlchemy).

    A plain ``postgresql://`` URL is given the psycopg (3) driver, the one the ``distributed``
    extra installs: SQLAlchemy 2.0 would otherwise look for psycopg2, 2.1 for psycopg.

    Raises:
        ConfigError: the URL names PostgreSQL and no driver for it is installed.
    """
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg://") and importlib.util.find_spec("psycopg") is None:
        raise ConfigError(
            "tuning.storage names a PostgreSQL server but its driver is not installed. "
            "Run: pip install 'greenladder[distributed]' (it brings psycopg)."
        )
    return _rdb_storage(url)


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """optuna's RDB storage, retried a few times: workers that start together on an empty database
    all try to create its tables, and all but one fail on a duplicate key the first time."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())  # let the worker that won finish creating the tables
    raise AssertionError("unreachable")


#: user attribute of a trial given back unrun because the rung's budget was taken (RungTuner.claim)
OVER_BUDGET = "over_budget"


def _counts(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts against the rung's budget: started, and not given back unrun."""
    return trial.state != optuna.trial.TrialState.WAITING and not trial.user_attrs.get(OVER_BUDGET)


def told(runs: Sequence[RunResult], metric: str) -> list[tuple[Mapping[str, Any], float | None]]:
    """What a tuner is told of finished trials: each one's settings and ``metric`` (None for a trial
    that did not finish ``ok``)."""
    return [(r.hyperparameters, r.metrics.get(metric) if r.status == "ok" else None) for r in runs]


def rung_tuner(
    config: Config,
    rung: str,
    done: Sequence[RunResult],
    warm: Mapping[str, Any] | None,
    where: tuple[Path, str],
    train_rows: int,
) -> RungTuner:
    """The climb's tuner for ``rung``: told the trials the ledger holds (``done``), starting from
    ``warm``, its study named after the run directory's fingerprint (``where``: the resolved run
    directory and its fingerprint). Workers sharing a study (``tuning.storage``) each get their own
    seed, so that they do not propose the same settings."""
    run_dir, fingerprint = where
    shared = zlib.crc32(str(run_dir).encode()) if config.tuning.storage else 0
    return RungTuner(
        config,
        previous=told(done, config.criteria.metric),
        warm_start=warm,
        seed=config.train.seed + shared,
        study_name=f"greenladder-{fingerprint}-{rung}",
        prune_after=math.ceil(train_rows / config.train.batch_size),
        worker=str(run_dir),
    )


class RungTuner:
    """Proposes hyperparameters for one rung.

    Args:
        config: resolved configuration (tuning section).
        previous: (hyperparameters, objective) of trials of this rung already finished (resume).
            Ignored with a shared storage, which holds them already.
        warm_start: best hyperparameters of the rung below, tried right after the default.
        seed: sampler seed; the same seed gives the same trials.
        study_name: name of the study in a shared storage (``config.tuning.storage``); workers
            that use the same storage and name share the rung's trial budget.
        prune_after: training steps before the pruner may stop a trial (one epoch, from the
            advisor): the first evaluations are noisy, and a lower learning rate starts slower.
        worker: this worker's name in a shared study (its run directory), recorded on each trial
            it runs so that another worker can say where a passing model lives.
    """

    def __init__(
        self,
        config: Config,
        previous: Sequence[tuple[Mapping[str, Any], float | None]] = (),
        warm_start: Mapping[str, Any] | None = None,
        seed: int = 0,
        study_name: str | None = None,
        prune_after: int = 0,
        worker: str | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self.space = search_space(config)
        sampler: optuna.samplers.BaseSampler
        if config.tuning.sampler == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            # few startup trials: budgets here are a handful of trials per rung
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=2)
        pruner: optuna.pruners.BasePruner = (
            PairedPruner(config.criteria.metric, config.criteria.confidence, warmup_steps=prune_after)
            if config.tuning.pruning
            else optuna.pruners.NopPruner()
        )
        self.shared = config.tuning.storage is not None
        if self.shared and distributed.world_size() > 1:
            raise ConfigError(
                "tuning.storage (a study shared by workers) cannot be combined with a multi-process job yet. "
                "Run each worker as one process, or drop tuning.storage under accelerate launch."
            )
        if self.shared:
            self.study = optuna.create_study(
                storage=open_storage(str(config.tuning.storage)),
                study_name=study_name,
                load_if_exists=True,
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
            )
        else:
            self.study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
            for known, value in previous:
                self._tell_known(known, value)
        self.default = default_trial(config) if config.tuning.default_first else None
        if warm_start and config.tuning.warm_start:
            self.warm: dict[str, Any] | None = {k: warm_start[k] for k in self.space if k in warm_start}
        else:
            self.warm = None
        self.probe: dict[str, Any] | None = None
        self.probe_origin = ""
        tried = [t.params for t in self.study.get_trials(deepcopy=False)]
        for queued in (self.default, self.warm):
            if queued and queued not in tried:
                # skip_if_exists: a second worker does not queue the same settings again
                self.study.enqueue_trial(queued, skip_if_exists=True)

    def queue_probe(self, hyperparameters: Mapping[str, Any], eval_losses: Sequence[float | None], ok: bool) -> None:
        """After the default trial (``hyperparameters``, its validation losses, whether it finished
        cleanly): queue the probe behind the warm start, if one is queued."""
        if self.default is None or not self.config.tuning.probe:
            return
        if {k: hyperparameters.get(k) for k in self.space} != self.default:
            return  # another worker ran the default; this run is something else
        found = probe_trial(self.config, self.default, eval_losses, ok)
        if found is None:
            return
        probe, self.probe_origin = found
        tried = [t.params for t in self.study.get_trials(deepcopy=False)]
        if probe in tried or probe == self.warm:
            return
        self.probe = probe
        self.study.enqueue_trial(probe, skip_if_exists=True)

    def _tell_known(self, params: Mapping[str, Any], value: float | None) -> None:
        known = {k: v for k, v in params.items() if k in self.space}
        if len(known) != len(self.space):
            return
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.PRUNED
        self.study.add_trial(
            optuna.trial.create_trial(params=known, distributions=self.space, value=value, state=state)
        )

    def started(self) -> int:
        """Trials of this rung started so far, by every worker sharing the study (a trial given
        back by :meth:`claim` was never run and does not count)."""
        return sum(_counts(t) for t in self.study.get_trials(deepcopy=False))

    def claim(self, trial: optuna.trial.Trial) -> bool:
        """Whether ``trial``, just asked for, is within the rung's trial budget.

        Two workers that both see one trial of the budget left may both ask for it. The storage
        numbers trials in the order they were created, so the later one finds the budget started
        before its own number, gives its trial back (marked failed and ``over_budget``, never run)
        and returns False; the worker then reads the study again instead of training.
        """
        if not self.shared:
            return True  # one worker: the policy counted its own trials
        trials = self.study.get_trials(deepcopy=False)
        before = sum(_counts(t) for t in trials if t.number < trial.number)
        if before < self.config.tuning.trials_per_rung:
            return True
        trial.set_user_attr(OVER_BUDGET, True)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return False

    def best_value(self) -> float | None:
        done = [t.value for t in self.study.get_trials(deepcopy=False) if t.value is not None]
        return max(done) if done else None

    def best_elsewhere(self) -> str:
        """Which trial holds the best value, with its settings and the worker that ran it."""
        done = [t for t in self.study.get_trials(deepcopy=False) if t.value is not None]
        if not done:
            return "no finished trial"
        best = max(done, key=lambda t: float(t.value))  # type: ignore[arg-type]
        settings = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        where = best.user_attrs.get("worker", "an unnamed worker")
        return f"trial {best.number} ({settings}), run by the worker writing to {where}"

    def wait_for_others(
        self, progress: Callable[[str], None] | None = None, poll_s: float = 2.0, min_patience_s: float = 60.0
    ) -> float | None:
        """Wait until no other worker is still running a trial of this rung; then the best value.

        A worker that finds the rung's trial budget spent must not climb while a trial of the rung
        is still running elsewhere: it may pass, and the rung above would be trained for nothing.
        A trial that has run for twice as long as the slowest finished one (at least a minute) is
        taken for abandoned (its worker was killed) and no longer waited for; ``min_patience_s``
        is that minute.
        """
        while True:
            trials = self.study.get_trials(deepcopy=False)
            durations = [
                (t.datetime_complete - t.datetime_start).total_seconds()
                for t in trials
                if t.datetime_complete is not None and t.datetime_start is not None
            ]
            patience = max(min_patience_s, 2.0 * max(durations, default=0.0))
            now = datetime.datetime.now()
            running = [
                t
                for t in trials
                if t.state == optuna.trial.TrialState.RUNNING
                and t.datetime_start is not None
                and (now - t.datetime_start).total_seconds() < patience
            ]
            if not running:
                return self.best_value()
            if progress is not None:
                progress(f"waiting for {len(running)} trial(s) of this rung still running in other workers")
                progress = None  # say it once
            time.sleep(poll_s)

    def ask(self) -> tuple[optuna.trial.Trial, dict[str, Any], str]:
        """Next trial, its hyperparameters, and where they came from (default / warm start / sampler)."""
        trial = self.study.ask(self.space)
        if self.shared and self.worker:
            trial.set_user_attr("worker", self.worker)
        params = dict(trial.params)
        if self.default is not None and params == self.default:
            origin = "default"
        elif self.warm is not None and params == self.warm:
            origin = "warm start from rung below"
        elif self.probe is not None and params == self.probe:
            origin = self.probe_origin
        else:
            origin = type(self.study.sampler).__name__
        return trial, params, origin

    def tell(self, trial: optuna.trial.Trial, value: float | None, pruned: bool = False) -> None:
        if pruned or value is None:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, value)
