"""Metering: Cost totals and provenance through Meter, energy readers, token counting in training."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from advisor.config.settings import MeteringConfig
from advisor.errors import ConfigError
from advisor.metering.cost import Meter
from advisor.metering.energy import EnergyReading, NullReader, grid_intensity_g_per_kwh
from advisor.metering.flops import batch_flops
from advisor.training.counting import MeteringCallback
from advisor.types import Cost

NO_CODECARBON = MeteringConfig(codecarbon=False)
HAS_RAPL = Path("/sys/class/powercap/intel-rapl").exists()


class FakeReader:
    """An energy reader that reports fixed figures, as a measuring one would."""

    def __init__(self, cpu_kwh: float, gpu_kwh: float = 0.0, ram_kwh: float = 0.0, emissions_g: float | None = None):
        self.reading = EnergyReading(cpu_kwh, gpu_kwh, ram_kwh, emissions_g, provenance="measured")
        self.started = self.stopped = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> EnergyReading:
        self.stopped += 1
        return self.reading


def test_emissions_are_energy_times_the_grid_intensity_when_the_reader_gives_none():
    cfg = MeteringConfig(country_iso_code="FRA")
    reader = FakeReader(cpu_kwh=0.5, gpu_kwh=1.0, ram_kwh=0.5)
    with Meter(cfg, reader=reader) as meter:
        pass
    cost = meter.cost
    assert (reader.started, reader.stopped) == (1, 1)
    assert cost.energy_kwh == pytest.approx(2.0)
    assert cost.emissions_g == pytest.approx(2.0 * grid_intensity_g_per_kwh(cfg))
    assert cost.location == "FRA"
    assert cost.provenance["energy"] == "measured"
    # an annual grid average is not the grid at the hour of the run
    assert cost.provenance["emissions"] == "estimated"


def test_emissions_computed_by_the_reader_are_kept():
    with Meter(reader=FakeReader(cpu_kwh=1.0, emissions_g=12.5)) as meter:
        pass
    assert meter.cost.emissions_g == 12.5


def test_cloud_region_intensity_is_used_instead_of_the_country():
    cfg = MeteringConfig(country_iso_code="USA", cloud_provider="gcp", cloud_region="europe-north1")
    with Meter(cfg, reader=FakeReader(cpu_kwh=1.0)) as meter:
        pass
    assert meter.cost.location == "gcp:europe-north1"
    assert meter.cost.emissions_g == pytest.approx(grid_intensity_g_per_kwh(cfg))
    assert grid_intensity_g_per_kwh(cfg) < grid_intensity_g_per_kwh(MeteringConfig(country_iso_code="USA"))


def test_unknown_grid_locations_are_config_errors_that_say_what_to_use():
    with pytest.raises(ConfigError, match="alpha-3"):
        grid_intensity_g_per_kwh(MeteringConfig(country_iso_code="XXX"))
    with pytest.raises(ConfigError, match="cloud_region"):
        grid_intensity_g_per_kwh(MeteringConfig(cloud_provider="gcp", cloud_region="mars-1"))


def test_a_mistyped_location_fails_before_the_work_starts():
    with pytest.raises(ConfigError, match="country_iso_code"):
        Meter(MeteringConfig(country_iso_code="FR"))


def test_costs_of_two_phases_add_up_with_merged_provenance():
    with Meter(NO_CODECARBON, phase="train") as train:
        train.add_flops("train", 300.0, padding_flops=30.0)
        train.add_flops("eval", 100.0)
        train.add_tokens(real=40, padded=8)
        time.sleep(0.05)
    with Meter(NO_CODECARBON, phase="baseline") as baseline:
        baseline.not_applicable_flops()
    total = train.cost + baseline.cost
    assert train.cost.wall_s >= 0.05
    assert total.wall_s == pytest.approx(train.cost.wall_s + baseline.cost.wall_s)
    assert (total.train_flops, total.eval_flops, total.padding_flops, total.flops) == (300.0, 100.0, 30.0, 400.0)
    assert (total.tokens, total.padded_tokens) == (40, 8)
    assert train.cost.provenance["flops"] == "analytic"
    assert baseline.cost.provenance["flops"] == "not_applicable"
    assert total.provenance["flops"] == "analytic+not_applicable"
    assert total.provenance["time"] == "measured"


def test_null_reader_labels_energy_and_emissions_not_measured():
    with Meter(NO_CODECARBON) as meter:
        sum(range(10_000))
    cost = meter.cost
    assert isinstance(meter.reader, NullReader)
    assert (cost.energy_kwh, cost.emissions_g) == (0.0, 0.0)
    assert cost.provenance["energy"] == cost.provenance["emissions"] == "not_measured"
    assert cost.provenance["flops"] == "not_measured"  # nothing was counted
    assert cost.provenance["memory"] == "measured"
    assert cost.peak_rss_mb > 0
    assert cost.cpu_s > 0
    assert cost.device.startswith("cpu (") or cost.device.startswith("cuda:")


def test_a_reader_that_cannot_say_gives_no_live_energy():
    with Meter(MeteringConfig(), reader=FakeReader(cpu_kwh=1.0)) as meter:  # no so_far method
        assert meter.energy_so_far() is None
    with Meter(MeteringConfig(codecarbon=False)) as meter:  # the null reader
        assert meter.energy_so_far() is None


def test_disabled_metering_keeps_the_clocks_only():
    with Meter(MeteringConfig(enabled=False)) as meter:
        pass
    assert meter.cost.provenance["memory"] == meter.cost.provenance["energy"] == "not_measured"
    assert meter.cost.peak_rss_mb == 0
    assert meter.cost.wall_s > 0


def test_cost_is_totalled_even_when_the_work_fails():
    meter = Meter(NO_CODECARBON)
    with pytest.raises(ZeroDivisionError), meter:
        meter.add_tokens(real=5, padded=0)
        _ = 1 / 0
    assert meter.cost.tokens == 5


def test_cost_before_close_and_counts_after_close_are_refused():
    meter = Meter(NO_CODECARBON)
    with pytest.raises(RuntimeError, match="closed"):
        _ = meter.cost
    with meter:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        meter.add_flops("train", 1.0)


def _leftovers(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if "codecarbon" in p.name or p.suffix == ".csv"}


def test_codecarbon_phase_is_estimated_here_and_leaves_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tmp = Path(tempfile.gettempdir())
    before = _leftovers(tmp)
    with Meter(MeteringConfig(country_iso_code="DEU")) as meter:
        # a second of real work: codecarbon integrates power over time, and a phase of a few
        # milliseconds can round to zero CPU energy (seen in a fresh-clone run)
        x = torch.randn(256, 256)
        deadline = time.perf_counter() + 1.0
        while time.perf_counter() < deadline:
            x = torch.tanh(x @ x)
        live = meter.energy_so_far()  # what a budget watch reads while the phase runs
    cost = meter.cost
    assert live is not None and 0 < live <= cost.energy_kwh
    assert meter.energy_so_far() is None  # the phase is closed
    assert cost.energy_cpu_kwh > 0 and cost.energy_ram_kwh > 0
    assert cost.emissions_g > 0
    assert cost.provenance["emissions"] == "estimated"
    if not HAS_RAPL and not torch.cuda.is_available():
        # no RAPL counters on this machine: codecarbon models CPU power from TDP and load
        assert cost.provenance["energy"] == "estimated"
    assert "measured" in cost.provenance["energy"] or "estimated" in cost.provenance["energy"]
    assert _leftovers(tmp_path) == set()
    assert _leftovers(tmp) == before


# -- token counting in a real (tiny) Trainer run ---------------------------------------------------


@pytest.fixture()
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefgh"]), encoding="utf-8")
    return BertTokenizer(vocab_file=str(vocab))


def _dataset(lengths: list[int]) -> Dataset:
    return Dataset.from_dict(
        {
            "input_ids": [[2] + [5 + i % 8 for i in range(n - 2)] + [3] for n in lengths],
            "label": [i % 2 for i in range(len(lengths))],
        }
    )


def test_callback_counts_real_and_padded_tokens_of_every_step_exactly(tmp_path, tokenizer):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_labels=2
    )
    model = BertForSequenceClassification(config)
    train_lengths, eval_lengths = [3, 7, 4, 12, 5, 9], [6, 3, 10]
    seen: list[tuple[int, int, int]] = []  # (rows, padded length, real tokens) of every batch the collator made
    pad = DataCollatorWithPadding(tokenizer)

    def spy(features):
        batch = pad(features)
        mask = batch["attention_mask"]
        seen.append((mask.shape[0], mask.shape[1], int(mask.sum())))
        return batch

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,  # batches of 4 and 2 rows
        per_device_eval_batch_size=3,  # one batch of 3 rows
        num_train_epochs=2,
        eval_strategy="epoch",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    with Meter(NO_CODECARBON) as meter:
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_dataset(train_lengths),
            eval_dataset=_dataset(eval_lengths),
            data_collator=spy,
            callbacks=[MeteringCallback(meter)],
        )
        trainer.train()
    cost = meter.cost

    train_batches = [b for b in seen if b[0] != 3]
    eval_batches = [b for b in seen if b[0] == 3]
    assert len(train_batches) == 4 and len(eval_batches) == 2  # 2 epochs x (4 + 2 rows), 2 evaluations
    assert cost.tokens == 2 * sum(train_lengths) + 2 * sum(eval_lengths)
    assert cost.tokens + cost.padded_tokens == sum(rows * length for rows, length, _ in seen)
    assert cost.padded_tokens > 0

    # FLOPs: the same as the formula applied to the batches the model saw
    expected_eval = 2 * batch_flops(config, max(eval_lengths), eval_lengths, kind="eval")[0]
    assert cost.eval_flops == pytest.approx(expected_eval)
    per_batch_train = [
        batch_flops(config, length, [length] * rows, kind="train")[0] for rows, length, _ in train_batches
    ]
    assert cost.train_flops == pytest.approx(sum(per_batch_train))
    unpadded = 2 * sum(batch_flops(config, n, [n], kind="train")[0] for n in train_lengths)
    unpadded += 2 * sum(batch_flops(config, n, [n], kind="eval")[0] for n in eval_lengths)
    assert cost.padding_flops == pytest.approx(cost.flops - unpadded)
    assert cost.provenance["flops"] == "analytic"


@pytest.mark.parametrize("strategy", ["steps", "epoch"])  # advise evaluates every N steps; once an epoch too
def test_checkpoints_hold_the_cost_so_far_before_each_evaluation_and_change_nothing(tmp_path, tokenizer, strategy):
    from advisor.training.counting import CostCheckpoint

    def train(checkpoint: CostCheckpoint | None):
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
        )
        args = TrainingArguments(
            output_dir=str(tmp_path / "out"),
            per_device_train_batch_size=4,
            per_device_eval_batch_size=3,
            num_train_epochs=2,
            eval_strategy=strategy,
            eval_steps=2 if strategy == "steps" else None,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        with Meter(NO_CODECARBON) as meter:
            counter = MeteringCallback(meter)
            if checkpoint is not None:
                checkpoint.bind(meter, counter)
            callbacks = [counter, *([checkpoint] if checkpoint else [])]
            trainer = Trainer(
                model=BertForSequenceClassification(config),
                args=args,
                train_dataset=_dataset([3, 7, 4, 12, 5, 9]),
                eval_dataset=_dataset([6, 3, 10]),
                data_collator=DataCollatorWithPadding(tokenizer),
                callbacks=callbacks,
            )
            trainer.train()
        return meter.cost

    written: list[tuple[int, Cost]] = []
    frozen = CostCheckpoint(lambda cost, step: written.append((step, cost)), every_s=60.0, clock=lambda: 0.0)
    cost = train(frozen)
    # begin, the step before each evaluation (2 steps an epoch), after each evaluation; the clock never came due
    assert [step for step, _ in written] == [0, 2, 2, 4, 4]
    assert written[0][1].flops == 0
    before_eval, after_eval = written[1][1], written[2][1]
    assert before_eval.train_flops > 0 and before_eval.eval_flops == 0 and before_eval.tokens == 3 + 7 + 4 + 12 + 5 + 9
    assert after_eval.train_flops == before_eval.train_flops and after_eval.eval_flops > 0
    assert before_eval.provenance["flops"] == "analytic"
    last = written[-1][1]
    for key in ("train_flops", "eval_flops", "padding_flops", "tokens", "padded_tokens"):
        assert getattr(last, key) == getattr(cost, key), key  # the last checkpoint is the whole run's count
    # checkpointing hands nothing over early: the run's own figures are those of a run without it
    plain = train(None)
    assert (cost.train_flops, cost.eval_flops, cost.tokens) == (plain.train_flops, plain.eval_flops, plain.tokens)
    # a clock that comes due writes between evaluations too
    ticks = iter(range(0, 10_000, 100))
    timed: list[int] = []
    train(CostCheckpoint(lambda cost, step: timed.append(step), every_s=60.0, clock=lambda: next(ticks)))
    # (once an epoch, the epoch's end is one more point before its evaluation)
    assert timed == ([0, 1, 2, 2, 3, 4, 4] if strategy == "steps" else [0, 1, 2, 2, 2, 3, 4, 4, 4])
