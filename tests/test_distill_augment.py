"""Augmented copies of the labelled texts: reproducible, new, built from the texts' own words."""

from __future__ import annotations

import pytest

from distill.augment import augment

TEXTS = [
    "the plot was thin but the acting carried the whole film",
    "a dull and overlong story with nothing to say",
    "superb from the first scene to the last",
    "fine",
]


def test_copies_are_reproducible_by_seed_and_differ_between_seeds() -> None:
    assert augment(TEXTS, 2, seed=3) == augment(TEXTS, 2, seed=3)
    assert augment(TEXTS, 2, seed=3) != augment(TEXTS, 2, seed=4)


def test_copies_are_new_texts_made_of_the_labelled_texts_words() -> None:
    vocabulary = {w for t in TEXTS for w in t.split()}
    copies = augment(TEXTS, 3, seed=0)
    assert copies and not set(copies) & set(TEXTS)  # no original comes back as "unlabelled"
    assert len(copies) == len(set(copies)) <= 3 * len(TEXTS)  # no repeats
    assert all(c.split() and set(c.split()) <= vocabulary for c in copies)
    # long texts get their copies: a one-word text may have none that differ from it
    for text in TEXTS[:3]:
        near = [c for c in copies if len(set(c.split()) & set(text.split())) >= len(text.split()) // 2]
        assert near, text


def test_no_copies_and_bad_counts() -> None:
    assert augment(TEXTS, 0) == [] and augment([], 2) == []
    with pytest.raises(ValueError, match="copies must be >= 0"):
        augment(TEXTS, -1)
