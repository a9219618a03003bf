"""The baseline's cross-validation estimates the model it delivers, not a better one."""

from __future__ import annotations

import numpy as np

from advisor.training import baseline


def test_each_fold_is_fitted_on_as_many_rows_as_the_delivered_model() -> None:
    fitted: list[int] = []
    rng = np.random.default_rng(0)
    labels = [int(v) for v in rng.integers(0, 2, 400)]
    texts = [f"{'good' if y else 'bad'} word{rng.integers(0, 50)} row{i}" for i, y in enumerate(labels)]

    def fit_predict(fit_idx, held_idx):
        fitted.append(len(fit_idx))
        pipe = baseline._pipeline(1.0, 0).fit([texts[i] for i in fit_idx], [labels[i] for i in fit_idx])
        return pipe.predict([texts[i] for i in held_idx])

    cv = baseline.cross_validate(labels, 100, 0, fit_predict)
    assert cv is not None and cv.folds == 5 and cv.train_size == 100
    # 5 folds, each fitted on 100 of its 320 rows; every row predicted once, out of fold
    assert fitted == [100] * 5
    assert len(cv.predictions) == 400 and list(cv.labels) == labels
    assert np.mean(np.array(cv.predictions) == np.array(labels)) > 0.9
    fitted.clear()
    # a training split larger than a fold's rows: the fold uses all it has
    baseline.cross_validate(labels, 10_000, 0, fit_predict)
    assert fitted == [320] * 5
