"""Shared fixtures: tiny models and synthetic data built on the spot, and no hub access."""

from __future__ import annotations

import gc
import ipaddress
import os
import random
import socket
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

# a stray hub call fails fast instead of waiting on the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one BLAS/OpenMP thread, read when numpy, scipy and torch load (after this file): the work here is tiny,
# and two threads on two busy cores made a TF-IDF baseline fit on 100 rows 3-4x slower (1.3-1.8 s
# against 0.4 s; every climb fits it 8 times). Subprocesses the tests start inherit it.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

POSITIVE = ["great", "superb", "lovely", "excellent", "fine"]
NEGATIVE = ["awful", "poor", "terrible", "bad", "dull"]
FILLER = ["the", "film", "was", "a", "plot", "and", "it", "really", "very", "story", "acting", "quite"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_model(folder: Path, seed: int = 0, layers: int = 2, hidden: int = 32) -> Path:
    """A randomly initialised tiny BERT with a word-level vocabulary covering the synthetic data."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + POSITIVE + NEGATIVE + FILLER) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file= here (every word became [UNK]); vocab= reads the file
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIAL + POSITIVE + NEGATIVE + FILLER),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def tiny_classifier(dropout: float = 0.1):  # type: ignore[no-untyped-def]
    """A seeded tiny two-label BertForSequenceClassification (vocabulary 99), for Trainer-level tests."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=2,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(config)


def tiny_rung(
    folder: Path,
    name: str,
    *,
    layers: int = 1,
    params_total: int = 10_000,
    params_non_embedding: int = 9_000,
    description: str | None = None,
) -> dict[str, Any]:
    """A ladder entry (as in configs/ladders/*.yaml) for a model built by :func:`make_tiny_model`."""
    return {
        "name": name,
        "source": str(folder),
        "description": description if description is not None else name,
        "params_total": params_total,
        "params_non_embedding": params_non_embedding,
        "layers": layers,
        "hidden": 32,
    }


def write_ladder(path: Path, rungs: list[dict[str, Any]]) -> Path:
    """Write ``rungs`` as a ladder file that ``--ladder`` / ``ladder.name`` reads."""
    import yaml

    path.write_text(yaml.safe_dump({"rungs": rungs}), encoding="utf-8")
    return path


#: ``--set`` values under which a one-layer tiny model learns the keyword task of
#: ``synthetic_rows(384, seed=1)`` in 96 steps (lr 3e-3, 6 epochs of 16 batches), with the TF-IDF
#: baseline kept out by a parameter ceiling (its 262k hashed features against the model's 11k)
KEYWORD_TASK_SETS = {
    "criteria.max_params": "100000",
    "metering.codecarbon": "false",
    "rules.enabled": "false",
    "train.epochs": "6",
    "tuning.epochs_max": "6",
    "train.batch_size": "16",
    "train.learning_rate": "0.003",
    "tuning.lr_max": "0.003",
    "train.warmup_ratio": "0",
    "ladder.probes": "false",  # fine-tune rungs only (probes: tests/test_probe.py)
}


def set_flags(sets: dict[str, str]) -> list[str]:
    """``{"a.b": "c"}`` as advise's command-line flags ``["--set", "a.b=c"]``."""
    return [flag for key, value in sets.items() for flag in ("--set", f"{key}={value}")]


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Texts whose label is given by a sentiment word among filler words: easy for any model."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, rng.randint(3, 8))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append((" ".join(words) + f" {i}", label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():  # type: ignore[no-untyped-def]
    """One BLAS/OpenMP thread also where a library was loaded before the variables above were set."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(autouse=True)
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny models gain nothing from threads, and oversubscribed cores slow them ~50x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: the marker of tests that may reach the network (the package index); every other test may not
NETWORK_MARKER = "integration"


class NetworkBlocked(OSError):
    """A test outside the ``integration`` marker tried to reach another machine."""


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):  # a Unix socket's path: this machine
        return True
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:  # a host name: resolving it already asks the network
        return False


@cache
def _package_index_reachable() -> str | None:
    """None when the package index answers, else why not (the integration tests fetch from it)."""
    url = urlparse(os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple")
    host, port = url.hostname or "pypi.org", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=5):
            return None
    except OSError as exc:
        return f"the package index {host}:{port} is unreachable ({exc}); integration tests fetch from it"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what the imports built (torch, transformers, scikit-learn: ~500k objects) out of the
    garbage collector's sight. The Trainer runs a full ``gc.collect()`` after every training
    (accelerate's ``clear_device_cache``), which took ~0.3-0.5 s each over that heap; frozen, it
    takes microseconds. What a test creates is collected as before."""
    gc.collect()
    gc.freeze()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test that fetches when the index is unreachable, before its fixtures start fetching."""
    if item.get_closest_marker(NETWORK_MARKER) is not None:
        why = _package_index_reachable()
        if why is not None:
            pytest.skip(why)


@pytest.fixture(autouse=True)
def no_network(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The default suite runs offline: a connection to another machine fails, and so does pip.

    Loopback stays open (the PostgreSQL and multi-process tests talk over it). pip runs in a
    subprocess (advisor/offline/fetch.py), out of reach of the socket guard: it is given no index and no
    local wheel folder, and the greenladder cache is an empty folder, so a test that would fetch a
    pinned file fails here as on a fresh clone without network, also where an earlier run filled
    the cache. Tests marked ``integration`` may fetch, and are skipped when the index is unreachable.
    """
    if request.node.get_closest_marker(NETWORK_MARKER) is not None:
        return
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(address: Any) -> None:
        if not _is_loopback(address):
            raise NetworkBlocked(
                f"{request.node.nodeid} tried to connect to {address}: the default suite runs offline; "
                f"mark the test `{NETWORK_MARKER}` if it must reach the network"
            )

    def connect(self: socket.socket, address: Any) -> None:
        refuse(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        refuse(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("GREENLADDER_CACHE", str(tmp_path_factory.mktemp("empty-greenladder-cache")))


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return make_tiny_model(tmp_path / "tiny-bert")


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "reviews.csv", synthetic_rows(160))


def weaken_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the real baseline wrong on every validation row, so that the ladder must be climbed.

    TF-IDF solves the keyword task outright. Its validation predictions, metrics and the
    cross-validated interval are replaced consistently (every row predicted as the next class), so
    its verdict is a clear fail rather than a figure that disagrees with its own predictions. The
    cross-validation, whose result is dropped, is not run (5 of the baseline's 8 fits).
    """
    import dataclasses

    import advisor.climb.executor as climb
    import advisor.incremental.executor as incremental
    import advisor.training.baseline as baseline
    from advisor.data.task import column
    from advisor.verdicts.criteria import compute_metrics

    real = climb.fit_baseline

    def fit(data, *args, **kwargs):  # type: ignore[no-untyped-def]
        run = real(data, *args, **kwargs)
        labels = column(data.validation, "label")
        wrong = [(y + 1) % len(data.label_names) for y in labels]
        return dataclasses.replace(
            run,
            metrics=compute_metrics(labels, wrong, data.label_names),
            val_predictions=tuple(wrong),
            cv=None,
        )

    monkeypatch.setattr(baseline, "cross_validate", lambda *_a, **_k: None)
    monkeypatch.setattr(climb, "fit_baseline", fit)
    monkeypatch.setattr(incremental, "fit_baseline", fit)  # --from refits the baseline on the expanded data


@pytest.fixture
def weak_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real baseline, made wrong on every validation row (:func:`weaken_baseline`) for one test."""
    weaken_baseline(monkeypatch)


def copy_run_dir(shared: Path, dest: Path) -> Path:
    """A test's own copy of a run directory built once for its module (a test may write into it)."""
    import shutil

    return Path(shutil.copytree(shared, dest))


# ----------------------------------------------------------------------------- a clock the work advances


class FakeClock:
    """Wall seconds that pass only when the test (or the fake work) says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeEnergyReader:
    """An energy reader drawing constant power on a fake clock, with a live total as codecarbon's."""

    def __init__(self, clock: FakeClock, kwh_per_s: float) -> None:
        self.clock, self.kwh_per_s = clock, kwh_per_s
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = self.clock()

    def so_far(self) -> float | None:
        return (self.clock() - self._t0) * self.kwh_per_s

    def stop(self) -> Any:
        from advisor.metering.energy import EnergyReading

        return EnergyReading(cpu_kwh=self.so_far() or 0.0, emissions_g=0.0, provenance="estimated")


class OneSecondFit:
    """A baseline pipeline whose every fit takes one second of the fake clock."""

    def __init__(self, pipeline: Any, clock: FakeClock) -> None:
        self.pipeline, self.clock = pipeline, clock

    def fit(self, x: Any, y: Any) -> Any:
        fitted = self.pipeline.fit(x, y)
        self.clock.advance(1.0)
        return fitted


#: the fake power of :func:`work_clock`'s energy reader, in kWh per fake second
WORK_KWH_PER_S = 1e-4


@pytest.fixture
def work_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Every meter of a search reads a fake clock that only the work advances: one second per training
    step (any Trainer metered by :class:`advisor.training.counting.MeteringCallback`: trials, continuations,
    distillations) and per TF-IDF fit; nothing else takes time. With ``metering.codecarbon=true`` the
    energy reader draws :data:`WORK_KWH_PER_S` on that clock. Two searches of the same work then spend
    the same seconds and kWh to the step, whatever else the machine is doing, so a test can set a
    seconds or kWh budget from one search and know where it stops the other."""
    import advisor.metering.cost as cost_mod
    import advisor.training.baseline as baseline_mod
    from advisor.metering.energy import NullReader
    from advisor.training.counting import MeteringCallback

    clock = FakeClock()
    monkeypatch.setattr(cost_mod, "wall_clock", clock)

    def reader(cfg: Any, *_a: Any, **_k: Any) -> Any:
        return FakeEnergyReader(clock, WORK_KWH_PER_S) if cfg.enabled and cfg.codecarbon else NullReader()

    monkeypatch.setattr(cost_mod, "make_reader", reader)

    def step_end(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        clock.advance(1.0)

    monkeypatch.setattr(MeteringCallback, "on_step_end", step_end, raising=False)
    real = baseline_mod._pipeline
    monkeypatch.setattr(baseline_mod, "_pipeline", lambda c, seed: OneSecondFit(real(c, seed), clock))
    return clock


def key_for(name: str) -> Any:
    """The key of a hand-made test record named ``name``: the key its id is written from when ``name``
    is an id greenladder writes (``baseline``, ``small-t1``, ``a-probe`` ...), else trial 1 of a rung
    of that name (its id ``<name>-t1``)."""
    from advisor.runkey import RunKey

    try:
        return RunKey.from_legacy_id(name)
    except ValueError:
        return RunKey("trial", name, 1)
