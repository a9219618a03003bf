"""One source of truth for configuration: typed dataclasses, YAML files and ``--set`` overrides.

Defaults live in the section dataclasses (:mod:`advisor.config.sections`; each field says why it has its
value), gathered here into :class:`Config`; a YAML file (``configs/*.yaml``, read with
``yaml.safe_load``) and ``--set section.key=value`` overrides land in the same object (layered by
:mod:`advisor.config.layering`). Unknown keys, wrong types and impossible
values are collected, and all of them are reported at once in one :class:`~advisor.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from advisor.acceptance import AcceptanceCriteria
from advisor.atomic import write_text_atomic
from advisor.config.layering import build_dataclass, merge_sources
from advisor.config.sections import (
    DataConfig,
    IncrementalConfig,
    LadderConfig,
    MeteringConfig,
    OutputConfig,
    RulesConfig,
    TrainConfig,
    TuningConfig,
)
from advisor.config.sections import OptimConfig as OptimConfig  # distill's teacher and students read it from here
from advisor.errors import ConfigError, RunDirError

#: folder holding the YAML a user copies (shipped inside the package so installs find it)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
#: bounds of the automatically sized validation split (data.validation_fraction unset): never less
#: than the 15% a fixed split used to take, never so much that training keeps under half the rows
MIN_VALIDATION_FRACTION = 0.15
MAX_VALIDATION_FRACTION = 0.35


@dataclass(frozen=True)
class Config:
    task: str = "text-classification"
    data: DataConfig = field(default_factory=DataConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    criteria: AcceptanceCriteria = field(default_factory=AcceptanceCriteria)
    metering: MeteringConfig = field(default_factory=MeteringConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    incremental: IncrementalConfig = field(default_factory=IncrementalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SUPPORTED_TASKS = ("text-classification",)


def build_config(
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve the configuration: dataclass defaults < YAML files (in order) < ``extra`` < overrides.

    Args:
        files: YAML files, later ones win.
        overrides: ``section.key=value`` strings as typed after ``--set``.
        extra: a nested mapping from CLI flags (``--target``, ``--data`` ...), already in sections.

    Raises:
        ConfigError: listing every problem found, not just the first.
    """
    merged = merge_sources(files, overrides, extra)
    problems: list[str] = []
    config: Config = build_dataclass(Config, merged, "", problems)
    if config.task not in SUPPORTED_TASKS:
        problems.append(f"The task must be one of {', '.join(SUPPORTED_TASKS)}. Got {config.task!r} instead.")
    problems.extend(config.criteria.problems())
    problems.extend(_range_problems(config))
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def floor_given(
    files: Iterable[str | Path] = (), overrides: Iterable[str] = (), extra: Mapping[str, Any] | None = None
) -> bool:
    """Whether a YAML file, a flag or an override sets a floor that some model could fail.

    The built-in default does not count, and neither does a floor of 0 on a metric that cannot go
    below 0 (any model "passes" it); on ``mcc`` (-1 to 1) a floor of 0 means better than chance and
    counts. Without such a floor ``advise`` refuses to run rather than report a pass that says nothing.
    """
    criteria = merge_sources(files, overrides, extra).get("criteria")
    if not isinstance(criteria, Mapping) or "floor" not in criteria:
        return False
    floor, metric = criteria["floor"], criteria.get("metric", "accuracy")
    return (
        not isinstance(floor, (int, float)) or floor > 0 or metric == "mcc"
    )  # a wrong type is build_config's to report


#: the criteria that make up the bar a model was chosen for (not the budgets of the search that chose it)
BAR_KEYS = ("metric", "floor", "confidence", "max_params", "max_size_mb", "max_latency_ms", "latency_device")


def earlier_bar(run_dir: str | Path) -> dict[str, Any]:
    """The bar an earlier run chose its model for (its report's criteria), or {} when it cannot be read.

    ``advise --from`` without ``--target`` continues towards the same bar.
    """
    import json

    try:
        criteria = json.loads((Path(run_dir) / "report.json").read_text(encoding="utf-8")).get("criteria")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(criteria, Mapping) or not isinstance(criteria.get("floor"), (int, float)):
        return {}
    return {k: criteria[k] for k in BAR_KEYS if criteria.get(k) is not None}


#: the one-line refusal when no floor was set (see :func:`floor_given`)
NO_FLOOR = (
    "No acceptance criterion was given (a floor of 0 accepts any model). Pass --target METRIC=VALUE "
    "(e.g. --target accuracy=0.9), or set criteria.floor in a --config file."
)


def _range_problems(config: Config) -> list[str]:
    out = []
    d, t, u = config.data, config.train, config.tuning
    val = d.validation_fraction if d.validation_fraction is not None else MAX_VALIDATION_FRACTION
    if not (0 < val < 1 and 0 < d.test_fraction < 1 and val + d.test_fraction < 1):
        out.append("data.validation_fraction and data.test_fraction must each be in (0, 1) and sum to less than 1.")
    if d.held_out_cap is not None and d.held_out_cap < 100:
        out.append(
            f"data.held_out_cap must be at least 100 rows, or null for the fractions alone. Got {d.held_out_cap}."
        )
    if not 0 < d.validation_margin < 0.5:
        out.append(f"data.validation_margin must be in (0, 0.5). Got {d.validation_margin} instead.")
    for name in ("learning_rate", "epochs", "batch_size", "max_length", "evals_per_epoch"):
        if getattr(t, name) <= 0:
            out.append(f"The config key train.{name} must be positive. Got {getattr(t, name)} instead.")
    if t.eval_rows < 0:
        out.append(f"The config key train.eval_rows must be 0 (the whole split) or more. Got {t.eval_rows} instead.")
    if u.trials_per_rung < 1:
        out.append(f"The config key tuning.trials_per_rung must be at least 1. Got {u.trials_per_rung} instead.")
    if t.precision not in ("auto", "fp32", "bf16", "fp16"):
        out.append(f"The config key train.precision must be auto, fp32, bf16 or fp16. Got {t.precision!r} instead.")
    if u.sampler not in ("tpe", "random"):
        out.append(f"The config key tuning.sampler must be 'tpe' or 'random'. Got {u.sampler!r} instead.")
    r = config.rules
    if not 0 <= r.loss_min_progress <= 1 or not 0 < r.early_stop_share <= 1:
        out.append("rules.loss_min_progress must be in [0, 1] and rules.early_stop_share in (0, 1].")
    if r.early_stop_min_patience < 1 or r.divergence_factor <= 1:
        out.append("rules.early_stop_min_patience must be at least 1 and rules.divergence_factor above 1.")
    if u.grow_from is not None and (not isinstance(u.grow_from, int) or u.grow_from < 100):
        out.append(f"The config key tuning.grow_from must be 100 rows or more, or null. Got {u.grow_from!r} instead.")
    if not u.grow_factor > 1:
        out.append(f"The config key tuning.grow_factor must be greater than 1. Got {u.grow_factor} instead.")
    if not 0 <= u.small_fraction < 1:
        out.append(f"The config key tuning.small_fraction must be in [0, 1). Got {u.small_fraction} instead.")
    if u.probe_factor <= 1:
        out.append(
            f"The config key tuning.probe_factor must be above 1 (tuning.probe=false turns the probe off). "
            f"Got {u.probe_factor} instead."
        )
    if not 0 < u.lr_min <= u.lr_max:
        out.append("tuning.lr_min must be positive and no larger than tuning.lr_max.")
    if not 0 < u.epochs_min <= u.epochs_max:
        out.append("tuning.epochs_min must be positive and no larger than tuning.epochs_max.")
    unlabeled = config.ladder.distil_unlabeled
    if unlabeled is not None and not Path(unlabeled).is_file():
        out.append(f"The config key ladder.distil_unlabeled must name a file of unlabelled texts. Got {unlabeled!r}.")
    if not 0 <= config.ladder.distil_augment <= 20:
        out.append(
            "The config key ladder.distil_augment must be a number of copies from 0 to 20. "
            f"Got {config.ladder.distil_augment} instead."
        )
    inc = config.incremental
    if not 0 < inc.lr_factor <= 1:
        out.append(f"The config key incremental.lr_factor must be in (0, 1]. Got {inc.lr_factor} instead.")
    if inc.epochs <= 0:
        out.append(f"The config key incremental.epochs must be positive. Got {inc.epochs} instead.")
    if not 0 <= inc.replay_fraction <= 1:
        out.append(f"The config key incremental.replay_fraction must be in [0, 1]. Got {inc.replay_fraction} instead.")
    return out


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config beside a result, as YAML that ``build_config`` reads back.

    Written to a temporary name and moved into place, so a reader never sees half a file.

    Raises:
        RunDirError: the folder cannot be written (read-only, disk full).
    """
    path = Path(path)
    try:
        write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    except OSError as exc:
        raise RunDirError(
            f"Cannot write {path} ({exc.strerror or exc}). Free disk space or pick another --out."
        ) from None
