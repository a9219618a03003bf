"""greenladder's advisor: find the smallest model that meets your bar, metered.

Scripted model selection::

    from advisor import select_model
    report = select_model(data="reviews.csv", target={"macro_f1": 0.8}, out="runs/reviews")

``select_model`` takes the same configuration as the ``advise`` CLI (YAML files and
``section.key=value`` overrides) and returns the :class:`~advisor.outcome.Report`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from advisor.outcome import Report

__all__ = ["select_model"]


def select_model(
    data: str | None = None,
    target: Mapping[str, float] | None = None,
    out: str | Path | None = None,
    config_files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    from_run: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    restart: bool = False,
) -> Report:
    """Run the advisor from Python and return its report.

    Args:
        data: dataset (built-in name, file, folder or hub id); the config's ``data.source`` when None.
        target: one metric floor, e.g. ``{"accuracy": 0.9}``.
        out: run directory.
        config_files: YAML files, later ones win.
        overrides: ``section.key=value`` strings, as after ``--set``.
        from_run: continue from an earlier run directory's recommendation (incremental training);
            without ``target`` (or a floor in the config) towards the bar of that earlier run.
        progress: receives one line per step of work (silent when None).
        restart: move the earlier records of ``out`` to ``<out>.old-<time>`` and start afresh (records
            made on other data, models or settings are otherwise refused).

    Raises:
        advisor.errors.GreenladderError: for bad configuration, data, models or run directory.
    """
    from advisor.advise import advise
    from advisor.config.settings import build_config, earlier_bar, floor_given
    from advisor.errors import ConfigError
    from advisor.verdicts.criteria import validate_metric_name

    extra: dict[str, Any] = {}
    if data is not None:
        extra["data"] = {"source": data}
    if target:
        if len(target) != 1:
            raise ConfigError(f"The target must name one metric, e.g. {{'accuracy': 0.9}}. Got {dict(target)} instead.")
        ((metric, floor),) = target.items()
        extra["criteria"] = {"metric": metric, "floor": float(floor)}
    if out is not None:
        extra["output"] = {"out": str(out)}
    if from_run is not None and not floor_given(config_files, overrides, extra):
        bar = earlier_bar(from_run)  # continue towards the bar the earlier model was chosen for
        if bar:
            extra["criteria"] = bar
    config = build_config(config_files, overrides, extra)
    if not floor_given(config_files, overrides, extra):
        raise ConfigError(
            "No acceptance criterion was given (a floor of 0 accepts any model). Pass target, e.g. "
            "{'accuracy': 0.9}, or set criteria.floor in a config file."
        )
    validate_metric_name(config.criteria.metric)
    from distill.compact import distil_run  # the climb's compaction step, composed here (advisor.climb.distiller)

    return advise(config, from_run=from_run, progress=progress, distiller=distil_run, restart=restart)
