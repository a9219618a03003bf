"""A study shared by workers: who ran a trial, waiting for trials still running elsewhere, storage URLs.

No training here: "another worker" is a second RungTuner on the same journal file.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from advisor.climb.tuning import RungTuner, open_storage
from advisor.config.settings import build_config
from advisor.errors import ConfigError


def _tuner(tmp_path: Path, worker: str) -> RungTuner:
    config = build_config([], [f"tuning.storage=journal:{tmp_path / 'study.log'}", "tuning.trials_per_rung=2"])
    return RungTuner(config, study_name="greenladder-test-tiny-a", worker=worker)


def test_a_worker_waits_for_a_trial_still_running_elsewhere_and_names_who_passed(tmp_path: Path) -> None:
    other, me = _tuner(tmp_path, "/runs/w0"), _tuner(tmp_path, "/runs/w1")
    running, _, _ = other.ask()  # w0 is training this one

    def finish() -> None:
        time.sleep(1.0)
        other.tell(running, 0.95)

    threading.Thread(target=finish).start()
    said: list[str] = []
    start = time.perf_counter()
    assert me.wait_for_others(said.append, poll_s=0.1) == 0.95  # it waited for w0's result
    assert time.perf_counter() - start >= 0.9
    assert said == ["waiting for 1 trial(s) of this rung still running in other workers"]
    assert "run by the worker writing to /runs/w0" in me.best_elsewhere()
    assert f"trial {running.number} (" in me.best_elsewhere()


def test_a_trial_abandoned_long_ago_is_not_waited_for(tmp_path: Path) -> None:
    other, me = _tuner(tmp_path, "/runs/w0"), _tuner(tmp_path, "/runs/w1")
    done, _, _ = other.ask()
    other.tell(done, 0.5)  # finished in milliseconds
    other.ask()  # its worker was killed: this trial stays RUNNING for ever
    time.sleep(1.0)
    start = time.perf_counter()
    # running for longer than twice the slowest finished trial and than the minimum patience: abandoned
    assert me.wait_for_others(poll_s=0.1, min_patience_s=0.5) == 0.5
    assert time.perf_counter() - start < 0.5
    # a trial that started just now is waited for (and here never finishes): the minimum patience holds
    other.ask()
    waiting = threading.Thread(target=me.wait_for_others, kwargs={"poll_s": 0.1, "min_patience_s": 3.0}, daemon=True)
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive()


def test_a_trial_asked_after_the_budget_was_taken_is_given_back_unrun(tmp_path: Path) -> None:
    # both workers saw one trial of the two left and both asked: the later trial is over the budget
    w0, w1 = _tuner(tmp_path, "/runs/w0"), _tuner(tmp_path, "/runs/w1")
    first, _, _ = w0.ask()
    assert w0.claim(first)
    w0.tell(first, 0.5)
    second, _, _ = w1.ask()
    third, _, _ = w0.ask()
    assert w0.claim(third) is False  # asked later: w1's trial has the budget's last number
    assert w1.claim(second)  # the earlier trial stays within the budget whoever checks first
    assert w0.started() == w1.started() == 2  # the given-back trial was never run and does not count
    given_back = [t for t in w1.study.get_trials() if t.number == third.number]
    assert given_back[0].state.name == "FAIL" and given_back[0].user_attrs["over_budget"] is True
    assert w1.study.get_trials()[second.number].state.name == "RUNNING"  # w1 goes on training it


def test_postgresql_urls_get_the_psycopg_driver_or_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    seen: list[str] = []
    monkeypatch.setattr("advisor.climb.tuning._rdb_storage", lambda url: seen.append(url) or url)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    open_storage("postgresql://user@db/study")
    open_storage("postgresql+psycopg://user@db/study")
    assert seen == ["postgresql+psycopg://user@db/study"] * 2
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"pip install 'greenladder\[distributed\]'"):
        open_storage("postgresql://user@db/study")
