"""Carve the validation and test splits a dataset does not bring out of its train rows.

Stratified by label with ``data.split_seed`` (scikit-learn's ``train_test_split``), so reruns see
the same rows. The validation share is sized from the rows an interval of the configured width
needs, and on a large dataset both held-out splits are capped (``data.held_out_cap``): there a rare
class can be too small for a proportional cut to give it a row, so every class then gets its share
rounded but at least one row in each held-out split (:func:`_carve_with_floor`). A class with fewer
rows than the cuts need is a :class:`~advisor.errors.DataError` naming it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from advisor.config.settings import MAX_VALIDATION_FRACTION, MIN_VALIDATION_FRACTION, DataConfig
from advisor.errors import DataError


def validation_share(cfg: DataConfig, total_rows: int, wanted_rows: int | None) -> float:
    """The validation fraction to carve: the configured one, or ``wanted_rows`` within the bounds.

    The bounds are 15% and 35% of the rows; on a large dataset the lower one is ``held_out_cap``
    rows instead of 15%, so 100,000 rows give the ~2,000 an interval needs, not 15,000.
    """
    if cfg.validation_fraction is not None:
        return cfg.validation_fraction
    if total_rows <= 0:
        return MIN_VALIDATION_FRACTION
    lowest = MIN_VALIDATION_FRACTION
    if cfg.held_out_cap is not None:
        lowest = min(lowest, cfg.held_out_cap / total_rows)
    return min(max((wanted_rows or 0) / total_rows, lowest), MAX_VALIDATION_FRACTION)


def test_share(cfg: DataConfig, total_rows: int) -> float:
    """The test fraction to carve: ``test_fraction``, at most ``held_out_cap`` rows on a large dataset.

    The test split scores the baseline and the pick once; 2,000 rows give it an interval of about
    +-2 points, and a share of a large dataset beyond that only withholds training rows.
    """
    if cfg.held_out_cap is None or total_rows <= 0:
        return cfg.test_fraction
    return min(cfg.test_fraction, cfg.held_out_cap / total_rows)


def _min_class_rows(fractions: Sequence[float]) -> int:
    """Fewest rows a class needs so that each stratified cut, taken in turn, gets at least one and leaves one.

    scikit-learn allocates each class at least floor(share x rows) to a held-out part, so we
    simulate the cuts with the worst-case rounding (ceil when taking away, floor when checking).
    """
    for rows in range(2, 10_000):
        left, remaining_share, ok = rows, 1.0, True
        for fraction in fractions:
            share = fraction / remaining_share
            if math.floor(left * share) < 1:
                ok = False
                break
            left -= math.ceil(left * share)
            remaining_share -= fraction
        if ok and left >= 1:
            return rows
    return 10_000


def carve_missing_splits(
    rows: dict[str, tuple[list[str], list[str]]],
    label_names: tuple[str, ...],
    cfg: DataConfig,
    where: str,
    validation_fraction: float,
) -> dict[str, tuple[list[str], list[str]]]:
    """Take the missing validation and/or test splits out of train, stratified, with the fixed seed.

    When both are missing each fraction is a share of all rows; when one is, a share of train.
    """
    test_fraction = test_share(cfg, len(rows["train"][0]))  # the held-out splits are carved out of train
    wanted = [(name, fraction) for name, fraction in (("test", test_fraction), ("validation", validation_fraction))]
    wanted = [(name, f) for name, f in wanted if name not in rows]
    if not wanted:
        return rows
    texts, labels = rows["train"]
    minimum = _min_class_rows([f for _, f in wanted])
    counts = Counter(labels)
    small = [(name, counts[name]) for name in label_names if 0 < counts[name] < minimum]
    capped = test_fraction < cfg.test_fraction or validation_fraction < MIN_VALIDATION_FRACTION  # held_out_cap
    if small and capped and all(counts[name] > len(wanted) for name, _ in small):
        return {**rows, **_carve_with_floor(texts, labels, wanted, cfg.split_seed)}  # at least a row of each
    if small:
        minimum = min(minimum, len(wanted) + 1) if capped else minimum
        name, count = min(small, key=lambda item: item[1])
        cut = " and ".join(f"{n}_fraction={f}" for n, f in wanted)
        raise DataError(
            f"{where}: class {name!r} has only {count} rows; the stratified split ({cut}) needs at least {minimum} per class. "
            "Add examples of it, drop it, or provide your own train/validation/test splits."
        )
    out = dict(rows)
    pool = np.arange(len(texts))
    remaining_share = 1.0
    for name, fraction in wanted:
        pool_labels = [labels[i] for i in pool]
        keep, held = train_test_split(
            pool, test_size=fraction / remaining_share, stratify=pool_labels, random_state=cfg.split_seed
        )
        held = np.sort(held)
        out[name] = ([texts[i] for i in held], [labels[i] for i in held])
        pool = np.sort(keep)
        remaining_share -= fraction
    out["train"] = ([texts[i] for i in pool], [labels[i] for i in pool])
    return out


def _carve_with_floor(
    texts: list[str], labels: list[str], wanted: list[tuple[str, float]], seed: int
) -> dict[str, tuple[list[str], list[str]]]:
    """Each held-out split in ``wanted`` takes every class's share of its rows, rounded, and at least
    one row of each class; the rest trains. Classes are shuffled with ``seed``; rows keep their order."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    held: dict[str, list[int]] = {name: [] for name, _ in wanted}
    train: list[int] = []
    for cls in sorted(set(labels)):
        rows = rng.permutation(np.flatnonzero(y == cls))
        start = 0
        for name, fraction in wanted:
            take = max(1, round(len(rows) * fraction))
            held[name] += rows[start : start + take].tolist()
            start += take
        train += rows[start:].tolist()
    parts = {**held, "train": train}
    return {name: ([texts[i] for i in sorted(idx)], [labels[i] for i in sorted(idx)]) for name, idx in parts.items()}


def stratified_order(labels: Sequence[int] | np.ndarray, seed: int) -> np.ndarray:
    """An order of the rows whose every prefix is stratified: each class's rows, shuffled with
    ``seed``, are spread evenly through the order, so the first ``n`` hold every class in its share
    to within two rows. Data-size rungs and small experiments train on such prefixes; a larger one
    holds a smaller one, so a step grown from one size to the next keeps the rows it had."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    position = np.empty(len(y), dtype=float)
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        rng.shuffle(rows)
        # the i-th of a class's m rows sits at (i + u) / m of the way through, u a per-class offset
        position[rows] = (np.arange(len(rows)) + rng.random()) / len(rows)
    return np.argsort(position, kind="stable")


def stratified_prefix(labels: Sequence[int] | np.ndarray, rows: int, seed: int) -> np.ndarray:
    """The indices of the first ``rows`` rows of :func:`stratified_order`, ascending (the split's order)."""
    return np.sort(stratified_order(labels, seed)[:rows])
