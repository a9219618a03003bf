"""Frozen-encoder probes: embed every text once with a pre-trained encoder, fit a linear head on top.

The cheapest transfer learning there is: no gradient flows through the encoder, so a probe costs one
forward pass per text (a fine-tune costs three per text per epoch, plus its evaluations). Sentence
encoders such as the offline ladder's are trained so that their pooled embeddings are useful as they
are; a logistic regression on them is how SetFit's head and the MTEB classification tasks use them.

Because the embeddings are computed once, the head can be refitted as often as needed for free: its
regularisation is chosen by cross-validation on the training split, and its verdict rests on
out-of-fold predictions over train + validation with folds the size of the training split, as the
TF-IDF baseline's does (:func:`advisor.training.baseline.cross_validate`).

A probe is saved as a folder any transformers + torch user can read without greenladder::

    encoder/            the frozen encoder and its tokenizer (save_pretrained, safetensors)
    head.safetensors    weight [num_labels, hidden] and bias [num_labels] of the linear head
    probe.json          pooling ("mean" or "cls"), max_length, labels

``logits = pool(encoder(text)) @ weight.T + bias``; :class:`ProbeModel` does exactly that, and the
model card shows the same few lines.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advisor.atomic import atomic_copytree
from advisor.config.settings import Config
from advisor.data.task import TaskData, column
from advisor.errors import ModelError
from advisor.faults import fault_point
from advisor.metering.cost import Meter
from advisor.metering.flops import encoder_shape, forward_coefficients
from advisor.models.ladder import POOLINGS
from advisor.models.loading import count_parameters, load_encoder
from advisor.runkey import RunKey
from advisor.training.baseline import cross_validate, latency_ms
from advisor.types import Candidate, Cost, Footprint, RunResult
from advisor.verdicts.criteria import compute_metrics

Progress = Callable[[str], None]

#: inverse regularisation strengths the head's cross-validation on the training split chooses from
#: (standardised features: 0.01 is strong shrinkage for a few hundred rows, 10 nearly none)
C_GRID = (0.01, 0.1, 1.0, 10.0)
#: texts per forward pass while embedding
EMBED_BATCH = 64
#: the head's C is chosen on a stratified sample of at most this many training rows: on more, a fit
#: costs what a forward pass does and C barely matters (the chosen head is then fitted on every row)
HEAD_SEARCH_ROWS = 4000
#: seconds between two checkpoints of a probe's running cost (what a kill mid-embedding would lose)
CHECKPOINT_EVERY_S = 30.0
HEAD_FILE, SPEC_FILE, ENCODER_DIR = "head.safetensors", "probe.json", "encoder"


def checkpoint_pooling(folder: Path | str, declared: str | None) -> str:
    """How to pool ``folder``'s hidden states: its sentence-transformers pooling config where it ships
    one (``1_Pooling/config.json``), else what the ladder declares, else mean pooling."""
    config = Path(folder) / "1_Pooling" / "config.json"
    if config.is_file():
        try:
            modes = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            modes = {}
        if modes.get("pooling_mode_mean_tokens"):
            return "mean"
        if modes.get("pooling_mode_cls_token"):
            return "cls"
    return declared if declared in POOLINGS else "mean"


def pool(hidden: Any, mask: Any, how: str) -> Any:
    """Pooled sentence vectors ``[B, H]`` from last hidden states ``[B, T, H]`` and attention mask ``[B, T]``."""
    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def probe_forward_flops(model_config: Any, seq_len: int, num_labels: int) -> float:
    """FLOPs of embedding one sequence and applying the linear head: the encoder's matrix multiplies
    and attention (:func:`advisor.metering.flops.forward_coefficients`, Kaplan et al. 2020) and ``2 H k`` for
    the head, with no pooler (the probe does not run one)."""
    a, b, _ = forward_coefficients(model_config, num_labels)
    return a * seq_len + b * seq_len * seq_len + 2.0 * encoder_shape(model_config).hidden * num_labels


def embed(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    pooling: str,
    max_length: int,
    meter: Meter | None = None,
    kind: str = "train",
    say: Progress | None = None,
    on_batch: Callable[[], None] | None = None,
) -> np.ndarray:
    """Pooled embeddings ``[N, H]`` (float32, input order) of ``texts`` by the frozen ``model``.

    Each batch's analytic FLOPs (padding included, at the batch's padded length) are added to
    ``meter`` under ``kind``: "train" for the rows the head is fitted on, "eval" for the rows it is
    judged on, "inference" for scoring. ``on_batch`` is called after each batch is counted.
    """
    import torch

    from advisor.training.inference import length_sorted_batches

    model.eval()
    out: np.ndarray | None = None
    done, step = 0, max(1, len(texts) // 4)
    with torch.inference_mode():
        for idx, enc in length_sorted_batches(tokenizer, texts, max_length, EMBED_BATCH):
            hidden = model(**enc).last_hidden_state
            vectors = pool(hidden, enc["attention_mask"], pooling).float().numpy()
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx.numpy()] = vectors
            if meter is not None:
                real = enc["attention_mask"].sum(1).tolist()
                padded = int(enc["attention_mask"].shape[1])
                total = len(real) * probe_forward_flops(model.config, padded, 0)
                useful = sum(probe_forward_flops(model.config, int(n), 0) for n in real)
                meter.add_flops(kind, total, total - useful)  # type: ignore[arg-type]
                meter.add_tokens(int(sum(real)), padded * len(real) - int(sum(real)))
            if on_batch is not None:
                on_batch()
            done += len(idx)
            if say is not None and len(texts) >= 4 * EMBED_BATCH and done // step != (done - len(idx)) // step:
                say(f"  embedded {done}/{len(texts)} texts")
    if out is None:
        return np.zeros((0, int(encoder_shape(model.config).hidden)), dtype=np.float32)
    return out


@dataclass(frozen=True)
class LinearHead:
    """``logits = x @ weight.T + bias`` on raw pooled embeddings (standardisation folded in)."""

    weight: np.ndarray  # [k, H]
    bias: np.ndarray  # [k]
    C: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((x @ self.weight.T + self.bias).argmax(-1), dtype=int)


def fit_head(x: np.ndarray, y: Sequence[int], num_labels: int, seed: int, c: float | None = None) -> LinearHead:
    """Logistic regression on standardised embeddings; C by 5-fold cross-validation on (x, y) unless given.

    The scaler is folded into the weights, so the saved head is one linear layer over raw embeddings.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    labels = np.asarray(y)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-8] = 1.0
    z = (x - mean) / scale
    lr = LogisticRegression(max_iter=3000, random_state=seed)
    if c is None:
        pick = np.arange(len(labels))
        if len(pick) > HEAD_SEARCH_ROWS:
            from advisor.data.splitting import stratified_prefix

            pick = stratified_prefix(labels, HEAD_SEARCH_ROWS, seed)
        counts = np.bincount(labels[pick])
        folds = min(5, int(counts[counts > 0].min()))
        if folds >= 2 and len(C_GRID) > 1:
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            search = GridSearchCV(lr, {"C": list(C_GRID)}, cv=cv, scoring="accuracy").fit(z[pick], labels[pick])
            c = float(search.best_params_["C"])
        else:
            c = 1.0
    lr.set_params(C=c).fit(z, labels)
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row, the second class's logit against 0
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    # a class absent from the fitted rows gets a logit it can never win with
    weight, bias = np.zeros((num_labels, x.shape[1])), np.full(num_labels, -1e9)
    for row, cls in enumerate(lr.classes_):
        weight[int(cls)] = coef[row] / scale
        bias[int(cls)] = intercept[row] - float((coef[row] * mean / scale).sum())
    return LinearHead(weight.astype(np.float32), bias.astype(np.float32), c)


# ----------------------------------------------------------------------------- the saved probe


def save_probe(
    dest: Path, model: Any, tokenizer: Any, head: LinearHead, pooling: str, max_length: int, labels: Sequence[str]
) -> None:
    """Write the probe folder (see the module docstring) atomically: a reader never sees half of it."""
    import torch
    from safetensors.torch import save_file

    from advisor.training.train import quiet_libraries

    def build(tmp: Path) -> None:
        with quiet_libraries():  # no "Writing model shards" bar
            model.save_pretrained(tmp / ENCODER_DIR, safe_serialization=True)
            tokenizer.save_pretrained(tmp / ENCODER_DIR)
        save_file({"weight": torch.from_numpy(head.weight), "bias": torch.from_numpy(head.bias)}, str(tmp / HEAD_FILE))
        spec = {"pooling": pooling, "max_length": int(max_length), "labels": list(labels), "C": head.C}
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")

    atomic_copytree(build, dest)


def is_probe_folder(folder: Path | str) -> bool:
    return (Path(folder) / SPEC_FILE).is_file() and (Path(folder) / HEAD_FILE).is_file()


class ProbeModel:
    """A saved probe, loaded back: ``predict(texts)`` gives label ids.

    Raises:
        ModelError: the folder is not a probe folder, or its encoder cannot be loaded safely.
    """

    def __init__(self, folder: Path | str) -> None:
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not is_probe_folder(folder):
            raise ModelError(f"{folder} is not a probe folder (it needs {SPEC_FILE} and {HEAD_FILE}).")
        spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / HEAD_FILE))
        self.pooling, self.max_length, self.labels = spec["pooling"], int(spec["max_length"]), list(spec["labels"])
        self.head = LinearHead(tensors["weight"], tensors["bias"], float(spec.get("C", 0.0)))
        from advisor.training.train import quiet_libraries

        with quiet_libraries():
            self.model, self.tokenizer = load_encoder(folder / ENCODER_DIR)

    def embed(self, texts: Sequence[str], meter: Meter | None = None, kind: str = "inference") -> np.ndarray:
        return embed(self.model, self.tokenizer, texts, self.pooling, self.max_length, meter, kind)

    def predict(self, texts: Sequence[str], meter: Meter | None = None) -> np.ndarray:
        return self.head.predict(self.embed(texts, meter))


# ----------------------------------------------------------------------------- the rung


class EmbeddingCache:
    """One encoder's pooled embeddings of the training and validation rows, each computed once.

    A probe and its data-size rungs (the same encoder on growing stratified prefixes of the training
    rows) share one: a larger size embeds only the rows the smaller ones did not, and the validation
    rows once. Each run's meter is charged for the rows it embedded; ``reused`` counts the others.
    """

    def __init__(self, train_rows: int) -> None:
        self.train: np.ndarray | None = None
        self.have = np.zeros(train_rows, dtype=bool)
        self.val: np.ndarray | None = None

    def train_rows(self, idx: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, int]:
        """Embeddings of training rows ``idx`` (computing the missing ones), and how many were reused."""
        missing = idx[~self.have[idx]]
        if len(missing):
            vectors = compute(missing)
            if self.train is None:
                self.train = np.zeros((len(self.have), vectors.shape[1]), dtype=np.float32)
            self.train[missing] = vectors
            self.have[missing] = True
        assert self.train is not None or not len(idx)
        out = self.train[idx] if self.train is not None else np.zeros((0, 0), dtype=np.float32)
        return out, int(len(idx) - len(missing))

    def split_rows(
        self, data: TaskData, idx: np.ndarray, vectors: Callable[..., np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Embeddings of training rows ``idx`` and of the validation split, and how many rows were reused.
        ``vectors(texts, kind=...)`` embeds texts, charging its meter under ``kind``."""
        texts = column(data.train, "text")
        e_train, reused = self.train_rows(idx, lambda missing: vectors([texts[i] for i in missing], kind="train"))
        if self.val is None:
            self.val = vectors(column(data.validation, "text"), kind="eval")
        else:
            reused += len(data.validation)
        return e_train, self.val, reused


def _every(checkpoint: Callable[[Cost], None] | None, meter: Meter, run_id: str) -> Callable[[], None]:
    """After each embedding batch: the run's cost so far to ``checkpoint``, at most every
    :data:`CHECKPOINT_EVERY_S` seconds (the first batch always); then the test-only crash point."""
    last: list[float] = []

    def after_batch() -> None:
        now = time.monotonic()
        if checkpoint is not None and (not last or now - last[0] >= CHECKPOINT_EVERY_S):
            checkpoint(meter.snapshot())
            last[:] = [now]
        fault_point(f"probe:{run_id}")  # test-only crash injection mid-embedding

    return after_batch


def fit_probe(
    candidate: Candidate,
    source: str,
    pooling: str,
    data: TaskData,
    config: Config,
    run_dir: Path,
    key: RunKey,
    progress: Progress | None = None,
    rows: int | None = None,
    cache: EmbeddingCache | None = None,
    checkpoint: Callable[[Cost], None] | None = None,
) -> RunResult:
    """Embed train and validation once with the frozen encoder at ``source``, fit and judge the head, save it.

    The head is fitted on the training split (C by cross-validation there) and scored on the
    validation split (``metrics``, ``val_predictions``); ``details["cv"]`` holds out-of-fold
    predictions over train + validation (folds the size of the training split), which the verdict
    uses as the baseline's does. The test split is not touched here. ``rows``: fit on the first
    that many rows of a stratified order only (a data-size rung); ``cache``: embeddings already made;
    ``checkpoint`` gets the running cost as embedding goes (:func:`_every`), for a kill to be counted.
    """
    run_id = key.run_id
    say = progress or (lambda _m: None)
    t = config.train
    cache = cache if cache is not None else EmbeddingCache(len(data.train))
    from advisor.data.splitting import stratified_prefix
    from advisor.training.train import dir_size_mb, quiet_libraries

    with Meter(config.metering, phase=run_id) as meter:
        with quiet_libraries():  # transformers' load report: a headless encoder drops its pooler, as expected
            model, tok = load_encoder(source, allow_pickle=t.allow_pickle, trust_remote_code=t.trust_remote_code)
        all_y = [int(v) for v in column(data.train, "label")]
        idx = np.arange(len(all_y)) if rows is None else stratified_prefix(all_y, rows, t.seed)
        train_y = [all_y[i] for i in idx]
        val_x, val_y = column(data.validation, "text"), [int(v) for v in column(data.validation, "label")]
        new = int((~cache.have[idx]).sum()) + (len(val_x) if cache.val is None else 0)
        say(f"{run_id}: embedding {new} texts with the frozen encoder ({pooling} pooling)")
        every = _every(checkpoint, meter, run_id)
        vectors = functools.partial(
            embed, model, tok, pooling=pooling, max_length=t.max_length, meter=meter, say=say, on_batch=every
        )
        e_train, e_val, reused = cache.split_rows(data, idx, vectors)
        k = len(data.label_names)
        head = fit_head(e_train, train_y, k, t.seed)
        val_pred = head.predict(e_val)
        metrics = compute_metrics(val_y, val_pred, data.label_names)
        both, labels = np.vstack([e_train, e_val]), train_y + val_y

        def fit_predict(fit_idx: np.ndarray, held_idx: np.ndarray) -> np.ndarray:
            return fit_head(both[fit_idx], [labels[i] for i in fit_idx], k, t.seed, c=head.C).predict(both[held_idx])

        cv = cross_validate(labels, len(idx), t.seed, fit_predict)
    dest = run_dir / "runs" / run_id / "model"
    save_probe(dest, model, tok, head, pooling, t.max_length, data.label_names)
    encoder_params = count_parameters(model)[0]
    head_params = int(head.weight.size + head.bias.size)
    lat = latency_ms(lambda batch: head.predict(embed(model, tok, batch, pooling, t.max_length)), val_x)

    say(f"{run_id}: validation {config.criteria.metric} {metrics[config.criteria.metric]:.3f} (C={head.C:g})")
    return RunResult(
        key=key,
        candidate=dataclasses.replace(candidate, kind="probe", params_total=encoder_params + head_params),
        hyperparameters={"C": head.C, "pooling": pooling, "max_length": t.max_length},
        status="ok",
        metrics=metrics,
        cost=meter.cost,
        artifact=str(dest.relative_to(run_dir)),
        cv=cv,
        train_examples=len(idx),
        details={
            "embedding_dim": int(e_train.shape[1]),
            "head_params": head_params,
            "embeddings_reused": reused,
        },
        footprint=Footprint(
            dir_size_mb(dest), lat["latency_ms_p50"], lat["latency_ms_p95"], encoder_params + head_params, "cpu"
        ),
        val_predictions=tuple(int(p) for p in val_pred),
    )
