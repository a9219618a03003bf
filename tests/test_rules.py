"""Training-health rules: each one provoked on a tiny BERT trained by the real HF Trainer.

Every test asserts what a user would see: which rule fired, at which step, with which numbers,
and that training stopped there instead of running to the end; and that a healthy run is left alone.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import torch
from datasets import Dataset
from transformers import BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from advisor.config.settings import RulesConfig
from advisor.errors import ConfigError
from advisor.health.rules import (
    DivergenceRule,
    LossNotDecreasingRule,
    NanLossRule,
    RuleFiring,
    VanishingGradientRule,
    first_firing,
    health_callbacks,
    steps_saved,
)
from advisor.health.watchdog import LowUtilisationRule, Stalled, StallRule
from tests.conftest import tiny_classifier


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """A tiny model gains nothing from threads, and on a shared 2-core machine OpenMP threads that
    spin-wait for each other make every step tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def examples(n: int, seed: int = 0, flip: bool = False) -> Dataset:
    """``n`` random 8-token texts labelled by whether their first token is above 50 (learnable)."""
    ids = torch.randint(5, 99, (n, 8), generator=torch.Generator().manual_seed(seed))
    labels = (ids[:, 0] > 50).long()
    if flip:
        labels = 1 - labels
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def train(
    callbacks: list[TrainerCallback],
    tmp_path,
    *,
    lr: float,
    max_steps: int,
    train_ds: Dataset | None = None,
    eval_ds: Dataset | None = None,
    model: BertForSequenceClassification | None = None,
    **args,
) -> Trainer:
    train_ds = train_ds if train_ds is not None else examples(32)
    if eval_ds is not None:
        args = {"eval_strategy": "steps", **args}
    trainer = Trainer(
        model=model if model is not None else tiny_classifier(),
        args=TrainingArguments(
            output_dir=str(tmp_path),
            max_steps=max_steps,
            learning_rate=lr,
            per_device_train_batch_size=args.pop("batch_size", 8),
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_steps=args.pop("logging_steps", 1),
            disable_tqdm=True,
            seed=0,
            **args,
        ),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        callbacks=callbacks,
    )
    trainer.train()
    return trainer


def test_nan_rule_stops_a_run_whose_learning_rate_explodes(tmp_path):
    # Adam with LayerNorm stays finite at lr 1e4 (the loss is just huge); 1e8 overflows to NaN
    rule = NanLossRule()
    trainer = train([rule], tmp_path, lr=1e8, max_steps=50)
    assert rule.firing is not None and rule.firing.rule == "nan_loss"
    assert rule.firing.step <= 20
    assert trainer.state.global_step == rule.firing.step  # stopped at the step it fired
    assert "non-finite gradients" in rule.firing.message


class PoisonWeights(TrainerCallback):
    """Writes NaN into one weight at the end of a given step: a divergence that starts mid-run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.classifier.weight[0, 0] = float("nan")


def test_nan_rule_catches_a_divergence_within_20_steps_of_its_start(tmp_path):
    rule = NanLossRule()
    trainer = train([PoisonWeights(10), rule], tmp_path, lr=1e-3, max_steps=60)
    assert rule.firing is not None
    assert 10 < rule.firing.step <= 30
    assert trainer.state.global_step == rule.firing.step


def test_loss_not_decreasing_stops_a_run_that_cannot_learn(tmp_path):
    # lr 0, no dropout, full batches: the same loss every step; judged from the start (min_progress 0)
    rule = LossNotDecreasingRule(window=5, min_delta=0.001, min_progress=0.0)
    trainer = train([rule], tmp_path, lr=0.0, max_steps=100, batch_size=32, model=tiny_classifier(dropout=0.0))
    assert rule.firing is not None and rule.firing.rule == "loss_not_decreasing"
    assert rule.firing.step == 10  # as soon as two windows of 5 steps exist
    assert trainer.state.global_step == 10
    assert "steps 6-10 vs steps 1-5" in rule.firing.message
    assert rule.firing.numbers["recent_loss"] == pytest.approx(rule.firing.numbers["previous_loss"])
    assert steps_saved(rule.firing, 100) == 90


def test_loss_rule_works_when_the_trainer_logs_less_often_than_every_step(tmp_path):
    # logs every 4 steps, window 5: each window is the two logs covering 8 steps
    rule = LossNotDecreasingRule(window=5, min_delta=0.001, min_progress=0.0)
    train([rule], tmp_path, lr=0.0, max_steps=100, batch_size=32, model=tiny_classifier(dropout=0.0), logging_steps=4)
    assert rule.firing is not None and rule.firing.step == 16
    assert "steps 9-16 vs steps 1-8" in rule.firing.message


def test_loss_rule_waits_for_the_learning_rate_warmup(tmp_path):
    rule = LossNotDecreasingRule(window=5, min_delta=0.001, min_progress=0.0)
    train([rule], tmp_path, lr=0.0, max_steps=100, batch_size=32, model=tiny_classifier(dropout=0.0), warmup_steps=10)
    assert rule.firing is not None and rule.firing.step == 20  # windows 11-15 and 16-20


def test_loss_rule_judges_a_run_only_from_half_of_its_steps_on(tmp_path):
    # the same run that cannot learn: the default waits until step 50 of 100 before calling it broken
    rule = LossNotDecreasingRule(window=5, min_delta=0.01)
    trainer = train([rule], tmp_path, lr=0.0, max_steps=100, batch_size=32, model=tiny_classifier(dropout=0.0))
    assert rule.firing is not None and rule.firing.step == 50 and trainer.state.global_step == 50
    assert "by 50% of training" in rule.firing.message


def test_divergence_rule_stops_a_run_whose_loss_explodes_but_stays_finite(tmp_path):
    # lr 1e4: Adam with LayerNorm keeps the weights finite but the loss far above its start
    rule, nan = DivergenceRule(window=5, factor=3.0), NanLossRule()
    trainer = train([rule, nan], tmp_path, lr=1e4, max_steps=100)
    assert nan.firing is None, "the NaN rule never sees this run"
    assert rule.firing is not None and rule.firing.rule == "divergence"
    assert rule.firing.step <= 20 and trainer.state.global_step == rule.firing.step
    assert rule.firing.numbers["recent_loss"] > 3 * rule.firing.numbers["start_loss"]


def test_vanishing_gradient_rule_fires_after_a_window_of_small_gradients(tmp_path):
    # a threshold far above any real gradient norm: every step counts as vanishing
    rule = VanishingGradientRule(threshold=1e6, window=5)
    trainer = train([rule], tmp_path, lr=1e-3, max_steps=50)
    assert rule.firing is not None and rule.firing.rule == "vanishing_gradient"
    assert rule.firing.step == 5
    assert trainer.state.global_step == 5
    assert 0 < rule.firing.numbers["max_grad_norm"] < 1e6


class SlowStep(TrainerCallback):
    """Sleeps in one step, as a hung data loader or a stuck collective would."""

    def __init__(self, step: int, seconds: float) -> None:
        self.step, self.seconds = step, seconds

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            time.sleep(self.seconds)


def test_stall_rule_ends_a_step_that_hangs_instead_of_waiting_for_it(tmp_path):
    # the step at 3 would sleep a minute; the watchdog interrupts it after about 3 s (not 1 s: on a
    # loaded machine an ordinary tiny step can take a second)
    rule = StallRule(seconds=3.0)
    began = time.monotonic()
    with pytest.raises(Stalled) as caught:
        train([rule, SlowStep(3, 60.0)], tmp_path, lr=1e-3, max_steps=50)
    assert time.monotonic() - began < 15
    rule.stop()
    assert caught.value.firing is rule.firing and rule.stalled
    assert rule.firing is not None and rule.firing.rule == "stall" and rule.firing.step == 3
    assert rule.firing.numbers["idle_seconds"] > 3.0
    # the watchdog ends, and the signal handler is given back
    assert not any(t.name == "greenladder-stall-watchdog" for t in threading.enumerate())
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_off_the_main_thread_the_stall_rule_stops_at_the_next_callback(tmp_path):
    # no signal can reach another thread: the rule falls back to the flag the next callback reads
    rule, result = StallRule(seconds=3.0), {}

    def work():
        result["trainer"] = train([rule, SlowStep(3, 6.0)], tmp_path, lr=1e-3, max_steps=50)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=60)
    assert rule.stalled and rule.firing is not None and rule.firing.step == 3
    assert result["trainer"].state.global_step == 3


class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        raise RuntimeError("boom")


def test_stall_watchdog_can_be_stopped_when_training_raises(tmp_path):
    rule = StallRule(seconds=60.0)
    with pytest.raises(RuntimeError, match="boom"):
        train([rule, Crash()], tmp_path, lr=1e-3, max_steps=5)
    assert any(t.name == "greenladder-stall-watchdog" for t in threading.enumerate())
    rule.stop()
    assert not any(t.name == "greenladder-stall-watchdog" for t in threading.enumerate())
    assert rule.firing is None


def test_low_utilisation_rule_is_inactive_on_cpu_and_fires_on_an_idle_gpu(tmp_path):
    cpu = LowUtilisationRule(10.0, on_gpu=False)
    assert cpu.inactive_reason is not None and "CPU" in cpu.inactive_reason
    # a fake NVML reading: the GPU is busy 3% of the time
    gpu = LowUtilisationRule(10.0, on_gpu=True, samples=3, interval_s=0.0, warmup_s=0.0, sampler=lambda: 3.0)
    trainer = train([cpu, gpu], tmp_path, lr=1e-3, max_steps=20)
    assert cpu.firing is None
    assert gpu.inactive_reason is None
    assert gpu.firing is not None and gpu.firing.step == 3 and trainer.state.global_step == 3
    assert gpu.firing.numbers["mean_util_percent"] == pytest.approx(3.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU driver")
def test_low_utilisation_rule_without_nvml_says_why_instead_of_crashing(tmp_path):
    rule = LowUtilisationRule(10.0, on_gpu=True, samples=1, interval_s=0.0, warmup_s=0.0)
    trainer = train([rule], tmp_path, lr=1e-3, max_steps=3)
    assert trainer.state.global_step == 3
    assert rule.firing is None
    assert rule.inactive_reason is not None and rule.inactive_reason.startswith("inactive: cannot read GPU utilisation")


def test_healthy_run_trains_to_the_end_with_all_rules_watching(tmp_path):
    rules = health_callbacks(RulesConfig(stall_seconds=30.0), on_gpu=False)
    trainer = train(
        rules, tmp_path, lr=1e-3, max_steps=60, train_ds=examples(64), eval_ds=examples(32, seed=1), eval_steps=20
    )
    assert trainer.state.global_step == 60
    assert first_firing(rules) is None
    assert [r.inactive_reason is not None for r in rules] == [False] * 5 + [True]  # only the GPU rule sleeps


def test_first_firing_is_the_earliest_and_steps_saved_counts_the_rest():
    late, early = NanLossRule(), StallRule(seconds=1.0)
    late.firing = RuleFiring("nan_loss", 30, "late")
    early.firing = RuleFiring("stall", 12, "early", {"idle_seconds": 3})
    quiet = VanishingGradientRule(threshold=1e-7, window=5)
    assert first_firing([quiet, late, TrainerCallback(), early]) is early.firing
    assert first_firing([quiet]) is None
    assert steps_saved(early.firing, 100) == 88
    assert steps_saved(None, 100) == 0
    assert steps_saved(late.firing, 20) == 0
    assert health_callbacks(RulesConfig(enabled=False), on_gpu=False) == []


def test_impossible_settings_name_the_setting_to_fix():
    with pytest.raises(ConfigError, match="rules.loss_window"):
        LossNotDecreasingRule(window=0, min_delta=0.001)
    with pytest.raises(ConfigError, match="rules.stall_seconds"):
        StallRule(seconds=0)
    with pytest.raises(ConfigError, match="rules.divergence_factor"):
        DivergenceRule(window=5, factor=1.0)
    with pytest.raises(ConfigError, match="rules.loss_min_progress"):
        LossNotDecreasingRule(window=5, min_delta=0.01, min_progress=2.0)


def test_loss_rule_lets_a_run_that_learned_and_levelled_off_continue():
    """Neighbouring windows of a levelled-off loss are equal within noise; the run is still fine."""
    from types import SimpleNamespace

    rule = LossNotDecreasingRule(window=20, min_delta=0.01)
    state = SimpleNamespace(global_step=0, max_steps=200)
    control = SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)
    rule.on_train_begin(SimpleNamespace(), state, control)
    losses = [0.70 - 0.01 * i for i in range(20)] + [0.50 + 0.002 * (i % 3) for i in range(120)]
    for step, loss in enumerate(losses, start=1):
        state.global_step = step
        rule.on_log(SimpleNamespace(), state, control, logs={"loss": loss})
    assert rule.firing is None and not control.should_training_stop


def test_loss_rule_leaves_a_slow_starter_alone_that_judging_early_would_stop():
    """A loss flat at chance for the first 30% of the steps, then learning (a mid-epoch plateau)."""
    from types import SimpleNamespace

    losses = [0.693 + 0.001 * (i % 2) for i in range(60)] + [0.69 - 0.002 * i for i in range(140)]

    def replay(rule: LossNotDecreasingRule) -> RuleFiring | None:
        state = SimpleNamespace(global_step=0, max_steps=len(losses))
        control = SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)
        rule.on_train_begin(SimpleNamespace(), state, control)
        for step, loss in enumerate(losses, start=1):
            state.global_step = step
            rule.on_log(SimpleNamespace(), state, control, logs={"loss": loss})
        return rule.firing

    early = replay(LossNotDecreasingRule(window=20, min_delta=0.01, min_progress=0.0))
    assert early is not None and early.step == 40  # what judging from the start would have done
    assert replay(LossNotDecreasingRule(window=20, min_delta=0.01)) is None  # the shipped default waits


def test_loss_rule_lets_a_run_that_learned_within_the_warmup_continue():
    """A distilled student matches its teacher's soft targets within the warm-up, then its loss is
    flat: judged against the first window after the warm-up alone, it was stopped at half of its
    steps (uncertainty, seed 2, distill_transfer.py); its start shows it learned."""
    from types import SimpleNamespace

    def replay(losses: list[float]) -> RuleFiring | None:
        rule = LossNotDecreasingRule(window=20, min_delta=0.01)
        state = SimpleNamespace(global_step=0, max_steps=len(losses))
        control = SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)
        rule.on_train_begin(SimpleNamespace(get_warmup_steps=lambda n: 20), state, control)
        for step, loss in enumerate(losses, start=1):
            state.global_step = step
            rule.on_log(SimpleNamespace(), state, control, logs={"loss": loss})
        return rule.firing

    flat = [0.0788 + 0.0004 * (i % 3) for i in range(175)]
    assert replay([0.9 - 0.04 * i for i in range(20)] + flat) is None  # fell from 0.9 in the warm-up
    never_moved = replay([0.0788 + 0.0004 * (i % 3) for i in range(195)])  # the same run without the fall
    assert never_moved is not None and never_moved.step == 98 and "the start's" in never_moved.message
