"""Loading, checking and splitting datasets: what a user sees when their data is good or bad."""

from __future__ import annotations

import functools
import gzip
import json
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import datasets
import pandas as pd
import pytest

from advisor.config.settings import DataConfig
from advisor.data.task import TaskData, load_task_data
from advisor.errors import DataError
from advisor.offline.builtin_data import BUILTINS, builtin_table


def balanced_rows(n_per_class: int = 20, labels: tuple[str, ...] = ("neg", "pos")) -> pd.DataFrame:
    rows = [
        {
            "text": f"review number {i} of class {label} says {'good' if label == 'pos' else 'bad'} things",
            "label": label,
        }
        for label in labels
        for i in range(n_per_class)
    ]
    return pd.DataFrame(rows)


def write_csv(path: Path, frame: pd.DataFrame, **kwargs: object) -> Path:
    frame.to_csv(path, index=False, **kwargs)  # type: ignore[call-overload]
    return path


def load(source: Path | str, **kwargs: object) -> TaskData:
    return load_task_data(DataConfig(source=str(source), **kwargs))  # type: ignore[arg-type]


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --- bad data: one line that names the problem and the fix; nothing written -------------------


def _missing(tmp: Path) -> Path:
    return tmp / "nope.csv"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.csv").write_bytes(b"")
    return tmp / "empty.csv"


def _header_only(tmp: Path) -> Path:
    (tmp / "header.csv").write_text("text,label\n")
    return tmp / "header.csv"


def _cp1252(tmp: Path) -> Path:
    (tmp / "latin.csv").write_bytes("text,label\ncaf\u00e9 cr\u00e8me,a\nplain,b\n".encode("cp1252"))
    return tmp / "latin.csv"


def _xlsx(tmp: Path) -> Path:
    (tmp / "data.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")
    return tmp / "data.xlsx"


def _missing_labels(tmp: Path) -> Path:
    frame = balanced_rows()
    frame.loc[[3, 25], "label"] = None
    return write_csv(tmp / "nolabels.csv", frame)


def _single_class(tmp: Path) -> Path:
    return write_csv(tmp / "single.csv", balanced_rows(labels=("pos",)))


def _small_class(tmp: Path) -> Path:
    frame = pd.concat([balanced_rows(), pd.DataFrame({"text": ["rare one", "rare two"], "label": ["rare", "rare"]})])
    return write_csv(tmp / "small.csv", frame)


def _empty_texts(tmp: Path) -> Path:
    frame = balanced_rows()
    frame.loc[[0, 1], "text"] = None
    frame.loc[2, "text"] = "   "
    return write_csv(tmp / "blank.csv", frame)


def _bad_json(tmp: Path) -> Path:
    (tmp / "broken.jsonl").write_text('{"text": "fine", "label": "a"}\n{"text": "broken\n')
    return tmp / "broken.jsonl"


def _not_a_saved_dataset(tmp: Path) -> Path:
    (tmp / "folder").mkdir()
    (tmp / "folder" / "notes.txt").write_text("hello")
    return tmp / "folder"


def _unlabelled_test_split(tmp: Path) -> Path:
    # hub datasets mark unlabelled test rows with -1 in a ClassLabel column
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    frame = balanced_rows()
    train = datasets.Dataset.from_dict(
        {"text": list(frame.text), "label": [int(x == "pos") for x in frame.label]}, features
    )
    test = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [-1, -1, -1]}, features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp / "saved"))
    return tmp / "saved"


BAD_DATA: list[tuple[str, Callable[[Path], Path], dict[str, object], list[str]]] = [
    ("missing file", _missing, {}, ["nope.csv: no such file or folder", "Check the path", "uncertainty"]),
    ("empty file", _empty, {}, ["empty.csv is empty", "header row"]),
    ("header only", _header_only, {}, ["header.csv has no data rows"]),
    ("not utf-8", _cp1252, {}, ["latin.csv is not UTF-8", "byte 0xe9 at offset 14", "re-save it as UTF-8"]),
    (
        "unsupported extension",
        _xlsx,
        {},
        ["data.xlsx: unsupported file type .xlsx", "CSV, TSV, JSON, JSONL or Parquet"],
    ),
    (
        "no such column",
        lambda tmp: write_csv(tmp / "cols.csv", balanced_rows()),
        {"label_column": "lable"},
        ["no column 'lable'", "the columns are text, label", "did you mean 'label'?", "Set data.label_column"],
    ),
    (
        "no such text column",
        lambda tmp: write_csv(tmp / "cols.csv", balanced_rows()),
        {"text_column": "body"},
        ["no column 'body'", "the columns are text, label", "Set data.text_column"],
    ),
    ("missing labels", _missing_labels, {}, ["2 of 40 rows have an empty or missing label in column 'label'", "drop"]),
    ("single class", _single_class, {}, ["single class ('pos', 20 rows)", "at least two"]),
    (
        "class too small",
        _small_class,
        {},
        ["class 'rare' has only 2 rows", "needs at least 8 per class", "provide your own train/validation/test"],
    ),
    ("empty texts", _empty_texts, {}, ["3 of 40 rows have an empty text in column 'text'", "drop those rows"]),
    ("malformed json", _bad_json, {}, ["broken.jsonl could not be read as JSONL", "check that it is valid"]),
    ("folder not a dataset", _not_a_saved_dataset, {}, ["not a dataset saved with save_to_disk"]),
    (
        "unlabelled test split",
        _unlabelled_test_split,
        {},
        ["3 of 3 rows of the test split have an empty or missing label"],
    ),
]


@pytest.mark.parametrize(("case", "make", "options", "expected"), BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_gives_one_line_that_says_what_to_do(
    case: str,
    make: Callable[[Path], Path],
    options: dict[str, object],
    expected: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GREENLADDER_CACHE", str(tmp_path / "cache"))
    source = make(tmp_path)
    before = files_under(tmp_path)
    temp_before = set(Path(tempfile.gettempdir()).glob("greenladder-data-*"))
    with pytest.raises(DataError) as info:
        load(source, **options)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{case}: {part!r} not in {message!r}"
    assert files_under(tmp_path) == before
    assert set(Path(tempfile.gettempdir()).glob("greenladder-data-*")) == temp_before
    assert capsys.readouterr().out == ""


def test_unknown_name_offline_says_hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="the hub is unreachable; download the data and pass --data path/to/file.csv"):
        load("someone/some-dataset")
    with pytest.raises(DataError, match="did you mean the built-in 'uncertainty'"):
        load("uncertainity")


def test_given_test_split_missing_the_label_column_is_named(tmp_path: Path) -> None:
    good = datasets.Dataset.from_pandas(balanced_rows(), preserve_index=False)
    bad = good.rename_column("label", "labels")
    datasets.DatasetDict({"train": good, "test": bad}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DataError, match=r"no column 'label' \(in the test split\).*did you mean 'labels'"):
        load(tmp_path / "saved")


# --- reading and column detection ------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet", ".csv.gz"])
def test_each_file_format_reads_the_same_data(suffix: str, tmp_path: Path) -> None:
    frame = balanced_rows()
    path = tmp_path / f"data{suffix}"
    if suffix in (".csv", ".csv.gz"):
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    data = load(path)
    assert data.label_names == ("neg", "pos")
    together = sorted(t for split in data.splits().values() for t in split["text"])
    assert together == sorted(frame["text"])


def test_byte_order_mark_does_not_leak_into_column_names(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "excel.csv", balanced_rows(), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert load(path).text_column == "text"


def test_detects_text_by_preferred_name_and_label_by_name(tmp_path: Path) -> None:
    frame = balanced_rows().rename(columns={"text": "sentence", "label": "category"})
    frame.insert(0, "id", range(len(frame)))
    frame["note"] = ["a much longer note than the sentence itself, repeated " * 3] * len(frame)
    data = load(write_csv(tmp_path / "d.csv", frame))
    assert (data.text_column, data.label_column) == ("sentence", "category")


def test_detects_longest_text_and_low_cardinality_label(tmp_path: Path) -> None:
    frame = balanced_rows(labels=("sport", "tech", "arts")).rename(columns={"text": "body", "label": "topic"})
    frame.insert(0, "title", [f"t{i}" for i in range(len(frame))])
    frame.insert(0, "id", range(len(frame)))
    data = load(write_csv(tmp_path / "d.csv", frame))
    assert (data.text_column, data.label_column) == ("body", "topic")
    assert data.label_names == ("arts", "sport", "tech")


def test_string_labels_map_to_sorted_ids_and_ints_sort_numerically(tmp_path: Path) -> None:
    data = load(write_csv(tmp_path / "s.csv", balanced_rows(labels=("pos", "neg", "mixed"))))
    assert data.label_names == ("mixed", "neg", "pos")
    for split in data.splits().values():
        for text, label in zip(split["text"], split["label"], strict=True):
            assert text.split(" of class ")[1].startswith(data.label_names[label])
    ints = balanced_rows(labels=("10", "2", "-1"))
    ints["label"] = ints["label"].astype(int)
    assert load(write_csv(tmp_path / "i.csv", ints)).label_names == ("-1", "2", "10")


# --- splits, duplicates ----------------------------------------------------------------------


def test_stratified_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    frame = balanced_rows(n_per_class=100, labels=("a", "b", "c"))
    frame = pd.concat([frame, balanced_rows(n_per_class=40, labels=("d",))])
    path = write_csv(tmp_path / "d.csv", frame)
    first, again, other = load(path), load(path), load(path, split_seed=1)
    assert first.test["text"] == again.test["text"] and first.train["text"] == again.train["text"]
    assert first.test["text"] != other.test["text"]
    sizes = {name: split.num_rows for name, split in first.splits().items()}
    assert sum(sizes.values()) == 340
    assert sizes["test"] == 51 and sizes["validation"] == 51  # 15% each, rounded up
    texts = [set(split["text"]) for split in first.splits().values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for name, split in first.splits().items():
        counts = Counter(split["label"])
        for label, total in ((0, 100), (3, 40)):
            assert abs(counts[label] / split.num_rows - total / 340) < 0.03, (name, counts)


def test_held_out_splits_of_a_large_dataset_are_sized_by_need_not_by_share() -> None:
    from advisor.data.splitting import test_share, validation_share

    cfg = DataConfig()
    # up to 13,333 rows, 15% (2,000 rows) or more: as before
    assert validation_share(cfg, 4_000, 500) == 0.15 and test_share(cfg, 4_000) == 0.15
    assert validation_share(cfg, 4_000, 700) == 700 / 4_000 and validation_share(cfg, 4_000, 2_000) == 0.35
    assert test_share(cfg, 13_000) == 0.15
    # 100,000 rows: validation is what the interval needs, at least the cap; test is the cap
    assert validation_share(cfg, 100_000, 1_843) * 100_000 == pytest.approx(2_000)
    assert validation_share(cfg, 100_000, 3_500) * 100_000 == pytest.approx(3_500)
    assert test_share(cfg, 100_000) * 100_000 == pytest.approx(2_000)
    # null: the fractions alone; an explicit validation fraction always wins
    uncapped = DataConfig(held_out_cap=None)
    assert validation_share(uncapped, 100_000, 1_843) == 0.15 and test_share(uncapped, 100_000) == 0.15
    assert validation_share(DataConfig(validation_fraction=0.2), 100_000, 1_843) == 0.2


def test_a_large_file_trains_on_all_but_the_rows_its_held_out_splits_need(tmp_path: Path) -> None:
    frame = balanced_rows(n_per_class=8_000)
    data = load_task_data(DataConfig(source=str(write_csv(tmp_path / "big.csv", frame))), validation_rows=1_000)
    sizes = {name: split.num_rows for name, split in data.splits().items()}
    # 16,000 rows: 15% would hold out 2,400 each; the cap holds out 2,000 each (stratified rounding: +-1)
    assert abs(sizes["validation"] - 2_000) <= 2 and abs(sizes["test"] - 2_000) <= 2, sizes
    assert sizes["train"] == 16_000 - sizes["validation"] - sizes["test"]


def test_given_splits_are_kept(tmp_path: Path) -> None:
    def part(offset: int) -> datasets.Dataset:
        frame = balanced_rows(n_per_class=10)
        frame["text"] = frame["text"] + f" part {offset}"
        return datasets.Dataset.from_pandas(frame, preserve_index=False)

    train, dev, test = part(0), part(1), part(2)
    datasets.DatasetDict({"train": train, "dev": dev, "test": test}).save_to_disk(str(tmp_path / "saved"))
    data = load(tmp_path / "saved")
    # the rows of each split are kept, in a canonical order (by text) that does not depend on the file's
    assert data.train["text"] == sorted(train["text"])
    assert data.validation["text"] == sorted(dev["text"])
    assert data.test["text"] == sorted(test["text"])
    assert data.cross_split_duplicates == 0 and data.warnings == ()


def test_saved_single_dataset_is_split_like_a_file(tmp_path: Path) -> None:
    datasets.Dataset.from_pandas(balanced_rows(), preserve_index=False).save_to_disk(str(tmp_path / "one"))
    data = load(tmp_path / "one")
    assert (data.train.num_rows, data.validation.num_rows, data.test.num_rows) == (28, 6, 6)
    assert data.source == f"saved dataset {(tmp_path / 'one').resolve()}"


def test_given_test_only_carves_validation_from_train(tmp_path: Path) -> None:
    frame = balanced_rows(n_per_class=50)
    test = datasets.Dataset.from_pandas(balanced_rows(n_per_class=5).assign(text=lambda f: f.text + " t"))
    train = datasets.Dataset.from_pandas(frame, preserve_index=False)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    data = load(tmp_path / "saved", validation_fraction=0.2)
    assert data.test.num_rows == 10
    assert (data.train.num_rows, data.validation.num_rows) == (80, 20)
    assert Counter(data.validation["label"]) == {0: 10, 1: 10}


def test_exact_duplicates_are_removed_and_counted(tmp_path: Path) -> None:
    frame = balanced_rows()
    frame = pd.concat([frame, frame.iloc[:5]])
    data = load(write_csv(tmp_path / "dup.csv", frame))
    assert data.duplicates_removed == 5
    assert sum(split.num_rows for split in data.splits().values()) == 40


def test_duplicates_across_given_train_and_test_are_reported(tmp_path: Path) -> None:
    train = balanced_rows()
    test = pd.concat([train.iloc[[0, 21]], balanced_rows(n_per_class=3).assign(text=lambda f: f.text + " new")])
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_pandas(train, preserve_index=False),
            "test": datasets.Dataset.from_pandas(test, preserve_index=False),
        }
    ).save_to_disk(str(tmp_path / "saved"))
    data = load(tmp_path / "saved")
    assert data.cross_split_duplicates == 2
    assert data.test.num_rows == 8  # reported, not removed
    assert any("2 texts of the test split also occur in train" in w for w in data.warnings)


def test_summary_counts_rows_classes_and_words(tmp_path: Path) -> None:
    data = load(write_csv(tmp_path / "d.csv", balanced_rows(n_per_class=20)))
    summary = data.summary()
    assert summary["label_names"] == ["neg", "pos"]
    assert sum(s["rows"] for s in summary["splits"].values()) == 40
    assert summary["splits"]["test"]["class_counts"] == {"neg": 3, "pos": 3}
    assert summary["splits"]["train"]["mean_words"] == 9.0  # "review number 3 of class neg says bad things"
    assert summary["splits"]["train"]["p95_words"] == 9.0
    json.dumps(summary)


def test_progress_goes_to_the_callback_not_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messages: list[str] = []
    load_task_data(DataConfig(source=str(write_csv(tmp_path / "d.csv", balanced_rows()))), progress=messages.append)
    assert any("train 28, validation 6, test 6 rows" in m for m in messages)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_builtin_table_lists_every_builtin() -> None:
    table = builtin_table()
    for name, info in BUILTINS.items():
        assert name in table and info.licence in table


# --- built-ins -------------------------------------------------------------------------------

#: facts about the shipped data: class counts after exact-duplicate removal, and duplicates removed
BUILTIN_FACTS = {
    "uncertainty": ({"certain": 1462, "uncertain": 1495}, 43),
    "movie-sentences": ({"negative": 2000, "positive": 2000}, 0),
    "bbc-news": ({"business": 503, "entertainment": 369, "politics": 403, "sports": 505, "tech": 347}, 98),
    "drug-reviews": ({"negative": 256, "neutral": 90, "positive": 633}, 0),
    "drug-reviews-binary": ({"negative": 256, "positive": 633}, 0),
    "spamassassin": ({"ham": 4112, "spam": 1824}, 110),
}


@pytest.fixture(scope="session")
def builtin() -> Callable[[str], TaskData]:
    return functools.cache(lambda name: load_task_data(DataConfig(source=name)))


def _check_builtin(data: TaskData, name: str) -> None:
    counts, duplicates = BUILTIN_FACTS[name]
    assert data.label_names == BUILTINS[name].labels
    total = Counter(label for split in data.splits().values() for label in split["label"])
    assert {data.label_names[i]: n for i, n in total.items()} == counts
    assert data.duplicates_removed == duplicates
    assert BUILTINS[name].licence in data.source


def test_spamassassin_ships_with_the_package(builtin: Callable[[str], TaskData]) -> None:
    _check_builtin(builtin("spamassassin"), "spamassassin")
    with gzip.open(Path(__file__).parents[1] / "advisor" / "_data" / "spamassassin.csv.gz", "rt") as fh:
        assert fh.readline().strip() == "text,label,group"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["uncertainty", "movie-sentences", "bbc-news", "drug-reviews", "drug-reviews-binary"])
def test_fetched_builtin_loads_with_known_counts(name: str, builtin: Callable[[str], TaskData]) -> None:
    _check_builtin(builtin(name), name)


@pytest.mark.integration
def test_drug_reviews_keep_the_given_test_split(builtin: Callable[[str], TaskData]) -> None:
    three, two = builtin("drug-reviews"), builtin("drug-reviews-binary")
    assert three.test.num_rows == 379 and three.train.num_rows + three.validation.num_rows == 600
    assert two.test.num_rows == 343 and two.train.num_rows + two.validation.num_rows == 546
    assert three.cross_split_duplicates == 1
    assert not any("&#039;" in t for t in three.train["text"])
    assert not any(t.startswith('"') for t in three.train["text"])


def test_a_rare_class_of_a_large_dataset_still_gets_a_row_in_each_capped_held_out_split(tmp_path: Path) -> None:
    """WordNet's 45 lexicographer files: 117,659 rows, the smallest class 42. With the held-out splits
    capped at 2,000 rows (1.7 %), a proportional cut gives it 0.7 rows: it used to be refused."""
    from advisor.data.splitting import carve_missing_splits

    texts = [f"row {i}" for i in range(30_000)]
    labels = ["big"] * 20_000 + ["mid"] * 9_950 + ["rare"] * 45 + ["tiny"] * 5
    rows = {"train": (texts, labels)}
    cfg = DataConfig()
    out = carve_missing_splits(rows, ("big", "mid", "rare", "tiny"), cfg, "data.csv", 2_000 / 30_000)
    for name in ("validation", "test"):
        held = out[name][1]
        assert set(held) == {"big", "mid", "rare", "tiny"}, name  # every class judged, the rare ones once
        assert abs(len(held) - 2_000) <= 4 and held.count("big") == round(20_000 * 2_000 / 30_000)
    seen = [t for part in out.values() for t in part[0]]
    assert sorted(seen) == sorted(texts), "every row in exactly one split"
    assert out == carve_missing_splits(rows, ("big", "mid", "rare", "tiny"), cfg, "data.csv", 2_000 / 30_000)
    # a class with no row to spare for training is still refused, in one line
    few = {"train": (texts[:29_952], labels[:29_950] + ["tiny"] * 2)}
    with pytest.raises(DataError, match="class 'tiny' has only 2 rows.*at least 3 per class"):
        carve_missing_splits(few, ("big", "mid", "tiny"), cfg, "data.csv", 2_000 / 29_952)
