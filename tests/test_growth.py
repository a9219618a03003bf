"""Data-size rungs: each step first on a stratified prefix of the training rows, grown while its
learning curve can reach the floor. Decisions on hand-made records; one small climb end to end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from advisor import runkey
from advisor.advise import advise
from advisor.climb import steps
from advisor.climb.forecast import forecast_curve
from advisor.climb.policy import Evidence, Probe, RungInfo, Skip, Stop, Train, candidates_planned, decide
from advisor.config.settings import build_config
from advisor.data.splitting import stratified_order, stratified_prefix
from advisor.models.ladder import Rung
from advisor.training.probe import EmbeddingCache
from advisor.types import Candidate, Cost, RunResult
from tests.conftest import synthetic_rows, write_csv
from tests.test_policy import LABELS, predictions
from tests.test_probe import _config as probe_config

TRAIN_ROWS = 10_000


@pytest.mark.parametrize(
    ("rows", "grow_from", "expected"),
    [
        (50_000, 2000, (2000, 8000, 50_000)),
        (200_000, 2000, (2000, 8000, 32_000, 200_000)),
        (4000, 2000, (2000, 4000)),
        (3999, 2000, (3999,)),
        (50_000, None, (50_000,)),
    ],
)
def test_sizes_grow_geometrically_while_at_most_half_the_rows(rows: int, grow_from: int | None, expected) -> None:  # type: ignore[no-untyped-def]
    assert steps.growth_sizes(rows, grow_from, 4.0) == expected


def test_every_prefix_of_the_stratified_order_holds_each_class_in_its_share() -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice(5, size=3000, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    order = stratified_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(3000))  # a permutation
    share = Counter(labels.tolist())
    for n in (40, 200, 1000, 2999):
        got = Counter(labels[order[:n]].tolist())
        for cls, total in share.items():
            assert abs(got[cls] - n * total / 3000) <= 2.0, (n, cls)
    small, large = set(stratified_prefix(labels, 200, 0)), set(stratified_prefix(labels, 800, 0))
    assert small < large  # a grown step keeps the rows it had
    assert np.array_equal(stratified_order(labels, 0), order) and not np.array_equal(stratified_order(labels, 1), order)


def _rung(name: str, layers: int) -> Rung:
    return Rung(name, f"/m/{name}", name, 10 * layers * 64**2, 9 * layers * 64**2, layers, 64, False)


def _cfg(*sets: str):  # type: ignore[no-untyped-def]
    return build_config(overrides=["criteria.floor=0.75", "tuning.trials_per_rung=2", *sets])


def test_each_step_is_preceded_by_its_data_size_rungs_cheapest_first() -> None:
    rungs = (_rung("a", 1), _rung("b", 4))
    listed = steps.steps_for(rungs, _cfg(), TRAIN_ROWS)
    assert [(s.name, s.rows, s.family) for s in listed[:3]] == [
        ("a-probe-n2000", 2000, "a-probe"),
        ("a-probe", None, "a-probe"),
        ("a-n2000", 2000, "a"),
    ]
    lengths = [20] * TRAIN_ROWS
    ordered = steps.order_steps(listed, rungs, lengths, [20] * 500, 2, _cfg())
    names = [s.name for s in ordered]
    for step in ordered:  # within a step, smaller sizes come first
        if step.grows:
            assert names.index(step.name) < names.index(step.grows)
    assert ordered[0].name == "a-probe-n2000"
    # off, or on too few rows: the steps as before
    assert [s.rows for s in steps.steps_for(rungs, _cfg("tuning.grow_from=null"), TRAIN_ROWS)] == [None] * 4
    assert [s.rows for s in steps.steps_for(rungs, _cfg(), 3000)] == [None] * 4


STEPS = (
    RungInfo("a-probe-n2000", 1, False, "probe", "a", rows=2000, grows="a-probe"),
    RungInfo("a-n2000", 1, False, "finetune", "a", rows=2000, grows="a"),
    RungInfo("a-probe-n8000", 1, False, "probe", "a", rows=8000, grows="a-probe"),
    RungInfo("a-probe", 1, False, "probe", "a"),
    RungInfo("a", 1, False, "finetune", "a"),
)


def _run(key: runkey.RunKey, accuracy: float, kind: str = "finetune", **kw) -> RunResult:  # type: ignore[no-untyped-def]
    return RunResult(
        key=key,
        candidate=Candidate(key.run_id if key.role != "baseline" else "baseline", kind, "x", params_total=1),  # type: ignore[arg-type]
        hyperparameters={},
        status="ok",
        metrics={"accuracy": accuracy},
        cost=Cost(train_flops=1e12, wall_s=1),
        val_predictions=predictions(accuracy, seed=len(key.run_id)),
        **kw,
    )


def _ev(*runs: RunResult) -> Evidence:
    return Evidence(STEPS, tuple(runs), LABELS, 2, train_rows=TRAIN_ROWS)


def test_the_climb_takes_the_smallest_size_first_and_recommends_a_size_that_passes() -> None:
    base = _run(runkey.BASELINE, 0.55, "baseline")
    assert decide(_ev(base), _cfg()) == Probe("a", runkey.sized("a-probe", 2000), 2000)
    small = _run(runkey.sized("a-probe", 2000), 0.62, "probe")
    assert decide(_ev(base, small), _cfg()) == Train("a", runkey.sized("a", 2000), 2000)
    passing = _run(runkey.sized("a", 2000), 0.90)
    stop = decide(_ev(base, small, passing), _cfg())
    assert isinstance(stop, Stop) and stop.recommendation == "a-n2000" and stop.outcome == "met"


def test_a_step_whose_curve_cannot_reach_the_floor_is_left_with_its_larger_sizes() -> None:
    base = _run(runkey.BASELINE, 0.55, "baseline")
    p2 = _run(runkey.sized("a-probe", 2000), 0.60, "probe")
    f2 = _run(runkey.sized("a", 2000), 0.61)
    # one size: the assumed power law is optimistic, so the probe grows
    assert decide(_ev(base, p2, f2), _cfg()) == Probe("a", runkey.sized("a-probe", 8000), 8000)
    # two sizes and no gain: the fitted curve's optimistic end misses 0.75, so all rows are not probed
    p8 = _run(runkey.sized("a-probe", 8000), 0.60, "probe")
    skip = decide(_ev(base, p2, f2, p8), _cfg())
    assert isinstance(skip, Skip) and skip.key == runkey.skipped("a-probe") and skip.method == "probe"
    assert "left at 8,000 training rows" in skip.message and skip.forecast["optimistic"] < 0.75
    left = RunResult(skip.key, Candidate("a-probe", "probe", "x"), {}, "skipped", {}, Cost(), message=skip.message)
    # the probe's step is done: the climb goes on to the fine-tune, whose 2,000-row run promised more
    assert decide(_ev(base, p2, f2, p8, left), _cfg()) == Train("a", runkey.trial("a", 1))
    # the same two sizes climbing steeply: grown to all rows
    p8_up = _run(runkey.sized("a-probe", 8000), 0.70, "probe")
    assert decide(_ev(base, p2, f2, p8_up), _cfg()) == Probe("a", runkey.probe("a"))


def test_a_size_that_fails_only_a_ceiling_is_not_grown() -> None:
    cfg = _cfg("criteria.max_params=10", "ladder.distil_on_ceiling=false")
    base = _run(runkey.BASELINE, 0.55, "baseline")
    big = _run(runkey.sized("a-probe", 2000), 0.95, "probe")
    big = RunResult(**{**big.__dict__, "candidate": Candidate("a-probe-n2000", "probe", "x", params_total=1000)})
    f2 = _run(runkey.sized("a", 2000), 0.61)
    skip = decide(_ev(base, big, f2), cfg)
    assert isinstance(skip, Skip) and "which more rows cannot change" in skip.message


def test_each_data_size_rung_is_one_candidate_of_the_bonferroni_family() -> None:
    # baseline + 3 sized/probe runs + one full probe + 2 trials of the fine-tune + one student
    assert candidates_planned(_ev(), _cfg()) == 1 + 2 + 1 + 1 + 2 + 1


def test_the_learning_curve_fits_the_exponent_the_sizes_show() -> None:
    # error 0.4 at 1,000 rows and 0.2 at 16,000: exponent 0.25, error 0.1 at 256,000
    f = forecast_curve([(1000, 0.6), (16_000, 0.8)], 256_000, 10_000_000)
    assert f.mean == pytest.approx(0.9, abs=1e-6) and "exponent 0.25" in f.method
    flat = forecast_curve([(1000, 0.6), (4000, 0.59)], 64_000, 2000)
    assert flat.mean == pytest.approx(0.59) and flat.optimistic < 0.75


def test_a_grown_probe_embeds_only_the_rows_it_did_not_have() -> None:
    cache, asked = EmbeddingCache(10), []

    def compute(missing: np.ndarray) -> np.ndarray:
        asked.append(missing.tolist())
        return np.stack([np.full(3, float(i)) for i in missing])

    first, reused = cache.train_rows(np.array([1, 4, 7]), compute)
    assert reused == 0 and first[:, 0].tolist() == [1, 4, 7]
    second, reused = cache.train_rows(np.array([0, 1, 4, 7, 9]), compute)
    assert asked == [[1, 4, 7], [0, 9]] and reused == 3 and second[:, 0].tolist() == [0, 1, 4, 7, 9]


def test_a_climb_on_enough_rows_recommends_a_probe_fitted_on_a_prefix(tmp_path: Path, weak_baseline: None) -> None:
    lines: list[str] = []
    data = write_csv(tmp_path / "big.csv", synthetic_rows(700))
    config = probe_config(tmp_path, floor=0.7, extra=(f"data.source={data}", "tuning.grow_from=100"))
    report = advise(config, progress=lines.append)
    assert report.recommendation == "tiny-a-probe-n100", report.stop_reason
    rec = report.recommended
    assert rec is not None and rec.train_examples == 100
    assert any("100 training rows" in line for line in lines)  # the order says each size's rows
    assert rec.test_metrics["accuracy"] >= 0.7
    assert (tmp_path / "run" / "model" / "head.safetensors").is_file()
    # the process's peak resident memory is in the report (the kernel's high-water mark: at least
    # the torch and transformers this process imported)
    assert report.details["peak_rss_mb"] > 100
    assert "peak memory" in (tmp_path / "run" / "report.md").read_text()


def test_a_probe_killed_mid_embedding_has_its_spending_counted_as_lost_on_the_rerun(
    tmp_path: Path, weak_baseline: None
) -> None:
    import multiprocessing
    import os
    import signal

    import torch

    torch.set_num_threads(1)
    config = probe_config(tmp_path, floor=0.7, extra=("ladder.rungs=[tiny-a]", "ladder.probes=true"))

    def child() -> None:
        os.environ["GREENLADDER_FAULT"] = "probe:tiny-a-probe"
        advise(config, progress=lambda _m: None)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode == -signal.SIGKILL  # killed after its first embedding batch
    report = advise(config, progress=lambda _m: None)
    assert report.recommendation == "tiny-a-probe", report.stop_reason
    lost = report.details["lost_to_interruption"]
    (fact,) = lost["runs"]
    # checkpointed after the first batch: some, not all, of the probe's forward passes
    assert fact["run_id"] == "tiny-a-probe" and 0 < fact["cost"]["train_flops"] < report.recommended.cost.train_flops
    assert report.total_cost.train_flops == pytest.approx(
        report.baseline.cost.train_flops + report.recommended.cost.train_flops + fact["cost"]["train_flops"]
    )


def test_on_many_training_rows_the_cheap_models_skip_cross_validation_and_search_c_on_a_sample() -> None:
    from advisor.training import baseline

    def never(_fit: np.ndarray, _held: np.ndarray) -> np.ndarray:
        raise AssertionError("no fold is fitted past CV_MAX_TRAIN_ROWS")

    labels = [i % 3 for i in range(baseline.CV_MAX_TRAIN_ROWS + 2000)]
    assert baseline.cross_validate(labels, baseline.CV_MAX_TRAIN_ROWS + 1, 0, never) is None
    sample = baseline._search_rows(labels, seed=0)
    assert len(sample) == baseline.SEARCH_ROWS and Counter(labels[i] for i in sample)[0] == pytest.approx(
        baseline.SEARCH_ROWS / 3, abs=2
    )
    assert len(baseline._search_rows(labels[:500], seed=0)) == 500  # small data: every row, as before
