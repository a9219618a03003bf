"""The baseline's cross-validation estimates the model it delivers, not a better one."""

from __future__ import annotations

import numpy as np

from advisor import baseline


def test_each_fold_is_fitted_on_as_many_rows_as_the_delivered_model(monkeypatch) -> None:
    fitted: list[int] = []
    real = baseline._pipeline

    def recording(c: float, seed: int):
        pipe = real(c, seed)
        fit = pipe.fit

        def counting_fit(x, y):
            fitted.append(len(x))
            return fit(x, y)

        pipe.fit = counting_fit
        return pipe

    monkeypatch.setattr(baseline, "_pipeline", recording)
    rng = np.random.default_rng(0)
    labels = [int(v) for v in rng.integers(0, 2, 400)]
    texts = [f"{'good' if y else 'bad'} word{rng.integers(0, 50)} row{i}" for i, y in enumerate(labels)]
    cv = baseline._cross_validate(1.0, 0, texts, labels, train_size=100)
    assert cv is not None and cv["folds"] == 5 and cv["train_size"] == 100
    # 5 folds, each fitted on 100 of its 320 rows; every row predicted once, out of fold
    assert fitted == [100] * 5
    assert len(cv["predictions"]) == 400 and cv["labels"] == labels
    assert np.mean(np.array(cv["predictions"]) == np.array(labels)) > 0.9
    fitted.clear()
    # a training split larger than a fold's rows: the fold uses all it has
    baseline._cross_validate(1.0, 0, texts, labels, train_size=10_000)
    assert fitted == [320] * 5
