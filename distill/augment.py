"""Cheap augmentation of the labelled texts: perturbed copies the teacher labels with its logits.

Where no unlabelled text from the domain is at hand, perturbed copies of the labelled texts give
the teacher more inputs to show its soft targets on (TinyBERT, Jiao et al. 2020, built its transfer
set by replacing words with a language model's and GloVe's neighbours). Nothing here needs a model
or a download: each copy deletes some words, replaces some with words drawn from the labelled
texts' own vocabulary, and shuffles one short span. The copies carry no labels: only the
teacher's logits train the student on them, so the no-teacher control cannot use them.

Off by default (``distill.augment: 0``). Measured in ``benchmarks/distill_transfer.py --augment``
(BENCHMARKS.md §8): +1.2 and +2.7 points over the control pooled over three seeds on two datasets,
t intervals over seeds including zero, at about 15x the control's FLOPs: a hint, not a default.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

#: share of a copy's words deleted, and share replaced by a word of the labelled texts
DELETE_RATE = 0.1
REPLACE_RATE = 0.1
#: words in the span whose order one copy shuffles
SPAN = 3


def perturb(words: Sequence[str], vocabulary: Sequence[str], rng: random.Random) -> list[str]:
    """One perturbed copy of ``words``: deletions, replacements from ``vocabulary``, a shuffled span."""
    out: list[str] = []
    for w in words:
        roll = rng.random()
        if roll < DELETE_RATE:
            continue
        out.append(rng.choice(vocabulary) if roll < DELETE_RATE + REPLACE_RATE else w)
    if not out:  # every word deleted: keep one
        out = [rng.choice(list(words))]
    if len(out) > SPAN:
        start = rng.randrange(len(out) - SPAN + 1)
        span = out[start : start + SPAN]
        rng.shuffle(span)
        out[start : start + SPAN] = span
    return out


def augment(texts: Sequence[str], copies: int, seed: int = 0) -> list[str]:
    """``copies`` perturbed copies of each text, without the originals, repeats or empty texts.

    Args:
        texts: the labelled texts (their labels are not used).
        copies: copies per text (0: none).
        seed: makes the copies, and so the teacher's cached logits on them, reproducible.

    Raises:
        ValueError: ``copies`` is negative.
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0. Got {copies} instead.")
    split = [t.split() for t in texts]
    vocabulary = sorted({w for words in split for w in words})
    if not copies or not vocabulary:
        return []
    rng = random.Random(seed)
    seen = set(texts)
    out: list[str] = []
    for words in split:
        if not words:
            continue
        for _ in range(copies):
            text = " ".join(perturb(words, vocabulary, rng))
            if text not in seen:
                seen.add(text)
                out.append(text)
    return out
