"""The climb's steps: each encoder's frozen-encoder probe and its fine-tune, in order of forecast compute.

A ladder lists encoders; the climb tries ways of using them. Probing an encoder (one forward pass
per text, :mod:`advisor.training.probe`) usually costs a fraction of fine-tuning it (three passes per text per
epoch), and a probe on a large encoder can cost what a small encoder's fine-tune costs while scoring
more. So the steps are climbed cheapest first by their forecast training FLOPs on this data (a
probe's pass over the training rows, a fine-tune's training passes), not encoder by encoder. Both
kinds also score the validation rows to be judged (a probe once, a fine-tune at each evaluation),
which the forecast of the whole step includes and the order leaves out. Pure functions of the ladder, the configuration and the data's token
lengths: they decide nothing that depends on results.

Forecasts need no download: each encoder's shape comes from its ladder entry (layers, hidden size,
and the usual FFN of 4 x hidden), the tokens from the data as the first encoder's tokenizer cuts it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from advisor import runkey
from advisor.climb.budget import Rates, forecast_cost, forecast_run
from advisor.climb.growth import growth_sizes
from advisor.climb.policy import RungInfo
from advisor.config.settings import Config
from advisor.errors import ConfigError
from advisor.models.ladder import Rung
from advisor.training.probe import probe_forward_flops
from advisor.types import Cost


def probe_name(encoder: str) -> str:
    """The step (and run id) of ``encoder``'s probe."""
    return runkey.probe(encoder).run_id


def steps_for(rungs: Sequence[Rung], config: Config, train_rows: int = 0) -> list[RungInfo]:
    """The steps a climb over ``rungs`` takes, in ladder order, without forecasts.

    Every encoder's probe when ``ladder.probes`` is on (optional encoders included: a probe is a
    forward pass, not a training run); its fine-tune unless the encoder is optional and not named
    in ``ladder.rungs``. On a training split of ``train_rows`` rows large enough for data-size rungs
    (:func:`growth_sizes`), each of those steps is preceded by its data-size rungs.

    Raises:
        ConfigError: a probe's name is also the name of a rung.
    """
    full = _full_steps(rungs, config)
    sizes = growth_sizes(train_rows, config.tuning.grow_from, config.tuning.grow_factor)[:-1]
    out: list[RungInfo] = []
    for step in full:
        for rows in sizes:
            name = runkey.sized(step.name, rows).run_id
            out.append(
                RungInfo(name, step.params_non_embedding, False, step.method, step.rung, rows=rows, grows=step.name)
            )
        out.append(step)
    return out


def _full_steps(rungs: Sequence[Rung], config: Config) -> list[RungInfo]:
    names = {r.name for r in rungs}
    out: list[RungInfo] = []
    for rung in rungs:
        if config.ladder.probes:
            name = probe_name(rung.name)
            if name in names:
                raise ConfigError(
                    f"The ladder has a rung named {name!r}, which is also the name of {rung.name}'s probe. "
                    "Rename that rung, or set ladder.probes=false."
                )
            out.append(RungInfo(name, rung.params_non_embedding, False, "probe", rung.name))
        if not rung.optional or rung.name in config.ladder.rungs:
            out.append(RungInfo(rung.name, rung.params_non_embedding, False, "finetune", rung.name))
    return out


def shape_of(rung: Rung) -> dict[str, int]:
    """The encoder shape the FLOPs formulas read, from the ladder entry (FFN taken as 4 x hidden, as in
    BERT, MiniLM and MPNet)."""
    return {"num_hidden_layers": rung.layers, "hidden_size": rung.hidden, "intermediate_size": 4 * rung.hidden}


def step_flops(
    step: RungInfo,
    rung: Rung | Any,
    train_lengths: Sequence[int],
    val_lengths: Sequence[int],
    num_labels: int,
    config: Config,
) -> tuple[float, float]:
    """Forecast (training, evaluation) FLOPs of a step: a probe embeds the training rows, then the
    validation rows once; a fine-tune's first trial trains for ``train.epochs`` and scores its
    evaluations (:func:`advisor.climb.budget.forecast_run`).

    ``rung`` is the ladder entry, or a transformers config of the encoder where one is at hand.
    """
    shape = shape_of(rung) if isinstance(rung, Rung) else rung
    if step.rows is not None:  # a data-size rung: as many rows of the same lengths, on average
        train_lengths = _scaled(train_lengths, step.rows)
    if step.method == "probe":
        return (
            sum(probe_forward_flops(shape, n, num_labels) for n in train_lengths),
            sum(probe_forward_flops(shape, n, num_labels) for n in val_lengths),
        )
    t = config.train
    trial = forecast_run(
        shape, train_lengths, val_lengths, t.epochs, t.evals_per_epoch, num_labels, Rates(), t.eval_rows
    )
    return trial.train_flops, trial.eval_flops


def forecast_step(
    step: RungInfo,
    model_config: Any,
    train: Sequence[int],
    val: Sequence[int],
    num_labels: int,
    config: Config,
    rates: Rates,
) -> Cost:
    """What ``step`` is forecast to cost on this data at the speed measured so far: a probe's passes
    over the rows, a fine-tune's first trial (``train``/``val``: token counts of the rows)."""
    if step.method == "probe":
        return forecast_cost(*step_flops(step, model_config, train, val, num_labels, config), rates)
    if step.rows is not None:
        train = _scaled(train, step.rows)
    t = config.train
    return forecast_run(model_config, train, val, t.epochs, t.evals_per_epoch, num_labels, rates, t.eval_rows)


def _scaled(lengths: Sequence[int], rows: int) -> list[int]:
    """``rows`` token counts standing for a stratified prefix of ``lengths``: every k-th of them."""
    if rows >= len(lengths):
        return list(lengths)
    stride = len(lengths) / rows
    return [lengths[int(i * stride)] for i in range(rows)]


def token_lengths(source: str, data: Any, max_length: int) -> tuple[list[int], list[int]]:
    """Token count of every training and validation text with the tokenizer at ``source``."""
    from transformers import AutoTokenizer

    from advisor.data.task import column

    tok = AutoTokenizer.from_pretrained(source)
    limit = min(max_length, tok.model_max_length)

    def lengths(split: Any) -> list[int]:
        return [len(x) for x in tok(column(split, "text"), truncation=True, max_length=limit)["input_ids"]]

    return lengths(data.train), lengths(data.validation)


def order_steps(
    steps: Sequence[RungInfo],
    rungs: Sequence[Rung],
    train_lengths: Sequence[int],
    val_lengths: Sequence[int],
    num_labels: int,
    config: Config,
) -> tuple[RungInfo, ...]:
    """``steps`` with their forecast training FLOPs, cheapest first (ties keep ladder order, a probe
    before its encoder's fine-tune)."""
    by_name = {r.name: r for r in rungs}
    costed = [
        dataclasses.replace(
            s, forecast_flops=step_flops(s, by_name[s.encoder], train_lengths, val_lengths, num_labels, config)[0]
        )
        for s in steps
    ]
    return tuple(sorted(costed, key=lambda s: s.forecast_flops or 0.0))


def order_table(steps: Sequence[RungInfo]) -> list[str]:
    """One line per step for the progress output: the order the climb will take, with forecasts."""
    return [
        f"  {i}. {s.name:<24} {'probe (frozen encoder + linear head)' if s.method == 'probe' else 'fine-tune':<38}"
        f" ~{(s.forecast_flops or 0.0) / 1e15:.2g} training PFLOPs"
        + (f", {s.rows:,} training rows" if s.rows is not None else "")
        for i, s in enumerate(steps, 1)
    ]
