"""Several advise workers share one study (a journal file, a PostgreSQL server): the trial budget is
split, no trial runs twice, and nobody climbs past a rung another worker passed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from advisor.climb.tuning import open_storage
from advisor.store.ledger import Ledger
from tests.conftest import (
    KEYWORD_TASK_SETS,
    make_tiny_model,
    set_flags,
    synthetic_rows,
    tiny_rung,
    write_csv,
    write_ladder,
)


def _two_workers(args: list[str], tmp_path: Path) -> list[tuple[int, str]]:
    """Run two ``advise`` processes side by side (``--out`` w0 and w1): their exit codes and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "advisor.cli", *args, "--out", str(tmp_path / f"w{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errors = [w.communicate(timeout=600)[1] for w in workers]
    return [(w.returncode, err) for w, err in zip(workers, errors, strict=True)]


def _trials_run(storage: optuna.storages.BaseStorage, rung: str) -> list[optuna.trial.FrozenTrial]:
    """The rung's trials that a worker ran: not a probe queued after the budget was taken (WAITING,
    never started), nor a trial asked for with the last one and given back unrun (over_budget)."""
    found = [s for s in optuna.get_all_study_summaries(storage) if s.study_name.endswith(rung)]
    every = optuna.load_study(study_name=found[0].study_name, storage=storage).get_trials() if found else []
    return [t for t in every if t.state != optuna.trial.TrialState.WAITING and not t.user_attrs.get("over_budget")]


# two fresh `advise` processes side by side: ~30-50 s on 2 cores, out of the default suite
@pytest.mark.multiprocess
def test_two_workers_share_each_rungs_trial_budget(tmp_path: Path) -> None:
    rng = random.Random(0)
    # random labels: nothing reaches the floor, so the workers use the whole budget between them
    rows = [(text, rng.choice(["pos", "neg"])) for text, _ in synthetic_rows(120)]
    data = write_csv(tmp_path / "noise.csv", rows)
    ladder = write_ladder(
        tmp_path / "ladder.yaml", [tiny_rung(make_tiny_model(tmp_path / "tiny-a", layers=1), "tiny-a")]
    )
    journal = tmp_path / "study.journal"
    common = [
        "--data",
        str(data),
        "--ladder",
        str(ladder),
        "--target",
        "accuracy=0.99",
        "--set",
        f"tuning.storage=journal:{journal}",
        "--set",
        "tuning.trials_per_rung=3",
        "--set",
        "metering.codecarbon=false",
        "--set",
        "rules.enabled=false",
        "--set",
        "train.epochs=1",
        "--set",
        "tuning.epochs_max=1",
        "--set",
        "train.batch_size=16",
        "--set",
        "ladder.probes=false",  # the shared study is the fine-tunes' (probes have no trials)
    ]
    for returncode, err in _two_workers(common, tmp_path):
        assert returncode == 1, err[-2000:]  # no model met the floor

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    for rung in ("tiny-a",):
        trials = _trials_run(storage, rung)
        assert len(trials) == 3, [t.params for t in trials]  # the budget, not twice the budget
        params = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(params)) == 3  # no settings tried twice
    runs = []
    for i in range(2):
        with Ledger(tmp_path / f"w{i}") as led:
            runs += [r for r in led.all() if r.candidate.kind == "finetune"]
    assert len(runs) == 3  # each trial trained by exactly one worker


def test_a_worker_whose_last_trial_another_worker_took_does_not_train_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the subprocess test above can only hit by chance, made certain: just before this
    worker asks for the rung's last trial, a rival on the same study asks for (and finishes) one."""
    from advisor.advise import advise
    from advisor.climb.tuning import RungTuner
    from advisor.config.settings import build_config

    rng = random.Random(0)
    rows = [(text, rng.choice(["pos", "neg"])) for text, _ in synthetic_rows(120)]  # nothing passes
    data = write_csv(tmp_path / "noise.csv", rows)
    ladder = write_ladder(
        tmp_path / "ladder.yaml", [tiny_rung(make_tiny_model(tmp_path / "tiny-a", layers=1), "tiny-a")]
    )
    journal = tmp_path / "study.journal"
    sets = [
        f"data.source={data}", f"ladder.name={ladder}", "criteria.floor=0.99", f"output.out={tmp_path / 'run'}",
        f"tuning.storage=journal:{journal}", "tuning.trials_per_rung=2", "metering.codecarbon=false",
        "rules.enabled=false", "train.epochs=1", "tuning.epochs_max=1", "train.batch_size=16",
        "ladder.probes=false",
    ]  # fmt: skip
    config = build_config(overrides=sets)
    real_ask = RungTuner.ask
    rivals: list[int] = []

    def ask_after_a_rival(self: RungTuner):  # type: ignore[no-untyped-def]
        if self.started() == 1 and not rivals:  # this worker is about to ask for the last trial
            rival = RungTuner(config, study_name=self.study.study_name, worker="/runs/rival", seed=99)
            trial, _, _ = real_ask(rival)
            rival.tell(trial, 0.5)
            rivals.append(trial.number)
        return real_ask(self)

    monkeypatch.setattr(RungTuner, "ask", ask_after_a_rival)
    said: list[str] = []
    report = advise(config, progress=said.append)
    assert rivals, "the rival never asked: the test did not set up the race"
    assert report.recommendation is None
    assert [r.run_id for r in report.runs] == ["tiny-a-t1"]  # the second trial was the rival's
    assert any("another worker took the rung's last trial" in line for line in said), said
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    [summary] = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[-1].user_attrs.get("over_budget") is True  # given back, never trained


@pytest.mark.postgres
def test_two_workers_on_a_real_postgresql_study(tmp_path: Path) -> None:
    """Two ``advise`` processes share one study on a PostgreSQL server started here (pgserver, from
    the dev extra): no trial runs twice, nobody climbs past a rung another worker passed, and both
    name the same smallest model."""
    pgserver = pytest.importorskip("pgserver", reason="the dev extra installs pgserver (a PostgreSQL server)")
    pytest.importorskip("psycopg", reason="the distributed extra installs the PostgreSQL driver (psycopg)")
    rows = synthetic_rows(384, seed=1)  # a keyword task tiny-a learns in 96 steps at lr 3e-3
    data = write_csv(tmp_path / "data.csv", rows)
    rungs = []
    for i, (name, layers) in enumerate((("tiny-a", 1), ("tiny-b", 2))):
        folder = make_tiny_model(tmp_path / name, seed=i, layers=layers)
        rungs.append(
            tiny_rung(folder, name, layers=layers, params_total=11_000 * layers, params_non_embedding=8_000 * layers)
        )
    ladder = write_ladder(tmp_path / "ladder.yaml", rungs)
    # its own folder outside tmp_path: the server runs as a user of its own (pgserver's, when we are root)
    # and must reach its data directory
    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="greenladder-pg-")), cleanup_mode="delete")
    try:
        uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket folder>
        storage = open_storage(uri)  # with the driver named, as the workers open it
        sets = {**KEYWORD_TASK_SETS, "tuning.storage": uri, "tuning.trials_per_rung": "3"}
        common = ["--data", str(data), "--ladder", str(ladder), "--target", "accuracy=0.9", *set_flags(sets)]
        for returncode, err in _two_workers(common, tmp_path):
            # 1: this worker's own runs met nothing (see below); a crash exits 1 too, with a traceback
            assert returncode in (0, 1) and "Traceback" not in err, err[-3000:]

        trials = {}
        for rung in ("tiny-a", "tiny-b"):
            trials[rung] = _trials_run(storage, rung)
        # no trial runs twice: every trial is told once, and each ledger run is a distinct trial
        runs = {}
        for i in range(2):
            with Ledger(tmp_path / f"w{i}") as led:
                runs[i] = [r for r in led.all() if r.candidate.kind == "finetune"]
        trained = [
            (r.candidate.name, tuple(sorted((k, r.hyperparameters[k]) for k in ("learning_rate", "epochs"))))
            for i in range(2)
            for r in runs[i]
        ]
        assert len(trained) == len(set(trained)), trained
        finished = [t for rung in trials for t in trials[rung] if t.state.is_finished()]
        assert len(finished) == len(trained)
        assert all(len(trials[rung]) <= 3 for rung in trials)  # each rung's budget, not twice it
        # tiny-a met the floor, so no worker trained tiny-b: one whose own trials failed waited for the others'
        passed = [t for t in trials["tiny-a"] if t.value is not None and t.value >= 0.9]
        assert passed, [(t.params, t.value) for t in trials["tiny-a"]]
        assert trials["tiny-b"] == [], [
            (t.datetime_start, min(t.datetime_complete for t in passed)) for t in trials["tiny-b"]
        ]
        # the same recommendation: each worker recommends its own passing tiny-a run, or names the
        # trial of the worker that passed it
        reports = [json.loads((tmp_path / f"w{i}" / "report.json").read_text(encoding="utf-8")) for i in range(2)]
        for i, report in enumerate(reports):
            rec = report["recommendation"]
            if rec is not None:
                assert rec["candidate"]["name"] == "tiny-a"
            else:
                other = str((tmp_path / f"w{1 - i}").resolve())
                assert "on tiny-a: trial" in report["stop_reason"] and other in report["stop_reason"]
                assert reports[1 - i]["recommendation"]["candidate"]["name"] == "tiny-a"
    finally:
        server.cleanup()


def test_a_worker_that_finds_every_trial_started_elsewhere_waits_for_them_before_climbing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy asks for the wait (``WaitForShared``), the executor only carries it out: a rival
    started both of the rung's trials before this worker read the study; one of them passes while
    this worker waits, so this worker trains nothing and names the rival's trial."""
    from advisor.advise import advise
    from advisor.climb.tuning import RungTuner
    from advisor.config.settings import build_config

    rng = random.Random(0)
    rows = [(text, rng.choice(["pos", "neg"])) for text, _ in synthetic_rows(120)]  # nothing passes here
    data = write_csv(tmp_path / "noise.csv", rows)
    ladder = write_ladder(
        tmp_path / "ladder.yaml", [tiny_rung(make_tiny_model(tmp_path / "tiny-a", layers=1), "tiny-a")]
    )
    sets = [
        f"data.source={data}", f"ladder.name={ladder}", "criteria.floor=0.99", f"output.out={tmp_path / 'run'}",
        f"tuning.storage=journal:{tmp_path / 'study.journal'}", "tuning.trials_per_rung=2",
        "metering.codecarbon=false", "rules.enabled=false", "train.epochs=1", "tuning.epochs_max=1",
        "ladder.probes=false",
    ]  # fmt: skip
    config = build_config(overrides=sets)
    real_started, real_wait = RungTuner.started, RungTuner.wait_for_others
    running: list[tuple[RungTuner, optuna.trial.Trial]] = []
    waited: list[int] = []

    def started_after_a_rival(self: RungTuner) -> int:
        if not running:  # this worker's first reading: the rival has just started both trials
            rival = RungTuner(config, study_name=self.study.study_name, worker="/runs/rival", seed=99)
            running.extend((rival, rival.ask()[0]) for _ in range(2))
        return real_started(self)

    def wait_while_the_rival_finishes(self: RungTuner, progress=None, **kw):  # type: ignore[no-untyped-def]
        waited.append(real_started(self))
        for (rival, trial), value in zip(running, (0.5, 0.995), strict=True):
            rival.tell(trial, value)
        return real_wait(self, progress, poll_s=0.05)

    monkeypatch.setattr(RungTuner, "started", started_after_a_rival)
    monkeypatch.setattr(RungTuner, "wait_for_others", wait_while_the_rival_finishes)
    said: list[str] = []
    report = advise(config, progress=said.append)
    assert waited == [2], "\n".join(said)
    assert [r.run_id for r in report.runs] == []  # nothing trained here: the rival's trial passed
    assert "another worker sharing the study reached accuracy 0.995 on tiny-a" in report.stop_reason
    assert "/runs/rival" in report.stop_reason
