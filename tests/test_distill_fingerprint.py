"""What an output folder's records were made from: the data's content, the models' files, the settings.

Unit tests on hand-made splits; the end-to-end checks (a changed file, a reordered one) are in
tests/test_distill_folder.py.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from advisor.data.task import TaskData, column
from distill.config import DistillConfig
from distill.fingerprint import canonical_order, data_parts, fingerprint, folder_digest, what_changed

NAMES = ("neg", "pos")


def _data(rows: dict[str, list[tuple[str, int]]]) -> TaskData:
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(NAMES))})
    built = {
        name: datasets.Dataset.from_dict({"text": [t for t, _ in r], "label": [y for _, y in r]}, features=features)
        for name, r in rows.items()
    }
    return TaskData(**built, label_names=NAMES, source="test", text_column="text", label_column="label")


ROWS = {
    "train": [("good film", 1), ("bad plot", 0), ("lovely acting", 1), ("dull story", 0)],
    "validation": [("fine film", 1), ("poor plot", 0)],
    "test": [("superb", 1), ("awful", 0)],
}


def test_reordered_rows_give_the_same_digests_and_the_same_canonical_data():
    shuffled = {name: list(reversed(rows)) for name, rows in ROWS.items()}
    a, b = _data(ROWS), _data(shuffled)
    assert data_parts(a) == data_parts(b)
    ca, cb = canonical_order(a), canonical_order(b)
    for split in ("train", "validation", "test"):
        assert column(getattr(ca, split), "text") == column(getattr(cb, split), "text")
        assert column(getattr(ca, split), "label") == column(getattr(cb, split), "label")


def test_a_mismatch_is_named_by_its_cause_labels_texts_or_which_rows_a_split_holds():
    before = data_parts(_data(ROWS))
    relabelled = {**ROWS, "train": [("good film", 0), *ROWS["train"][1:]]}
    assert what_changed(before, data_parts(_data(relabelled))) == ["the data's labels"]
    retexted = {**ROWS, "validation": [("fine movie", 1), ROWS["validation"][1]]}
    # the texts changed, and with them the rows: named once, by the cause
    assert what_changed(before, data_parts(_data(retexted))) == ["the data's texts"]
    # the same rows, one moved from test to validation (another split seed, a reordered file)
    moved = {**ROWS, "validation": [*ROWS["validation"], ("superb", 1)], "test": [("awful", 0)]}
    assert what_changed(before, data_parts(_data(moved))) == [
        "the rows of the validation split",
        "the rows of the test split",
    ]


def test_model_files_are_digested_by_content_not_path(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
        (folder / "README.md").write_text(f"notes about {folder.name}")  # not part of the model
    assert folder_digest(a) == folder_digest(b)
    (b / "model.safetensors").write_bytes(b"\x00" * 63 + b"\x01")
    assert folder_digest(a) != folder_digest(b)
    assert folder_digest("org/model") == "id:org/model"


def test_settings_that_change_a_run_are_in_it_and_where_things_go_is_not(tmp_path: Path):
    data = _data(ROWS)
    base = DistillConfig(teacher="t", out=str(tmp_path / "a"))
    parts = fingerprint(base, data, str(tmp_path))
    moved = DistillConfig(teacher="elsewhere", out=str(tmp_path / "b"), keep_control=True)
    assert what_changed(parts, fingerprint(moved, data, str(tmp_path))) == []
    import dataclasses

    hotter = dataclasses.replace(base, distill=dataclasses.replace(base.distill, temperature=4.0))
    assert what_changed(parts, fingerprint(hotter, data, str(tmp_path))) == ["setting distill.temperature"]
    with_text = fingerprint(base, data, str(tmp_path), unlabeled=["more text"])
    assert what_changed(parts, with_text) == ["the unlabelled texts"]
