"""Unlabelled texts from the user's domain: the transfer set the teacher labels with its logits.

Task-specific distillation pays most on text the labels do not cover (Turc et al., 2019,
"Well-Read Students Learn Better"; TinyBERT's augmented transfer set): the teacher's soft targets on
those texts are signal the no-teacher control cannot use.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from advisor.errors import DataError


def read_unlabeled(path: str | Path, text_column: str | None = None) -> list[str]:
    """Texts of a ``.txt`` file (one per line) or of a CSV/TSV/JSONL/JSON file's text column.

    Args:
        path: the file.
        text_column: the column holding the text; ``text`` when unset.

    Raises:
        DataError: the file is missing, unreadable, has no such column, or holds no text.
    """
    path = Path(path)
    column = text_column or "text"
    if not path.is_file():
        raise DataError(f"The unlabelled-text file {path} does not exist. Pass a .txt, .csv, .tsv or .jsonl file.")
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            if suffix == ".txt":
                texts = [line.strip() for line in fh]
            elif suffix in (".csv", ".tsv"):
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                if column not in (reader.fieldnames or []):
                    raise DataError(
                        f"The unlabelled-text file {path} has no column {column!r} (columns: {reader.fieldnames}). "
                        "Name the text column 'text', or set data.text_column."
                    )
                texts = [str(row[column] or "") for row in reader]
            elif suffix in (".jsonl", ".json"):
                rows = json.load(fh) if suffix == ".json" else [json.loads(line) for line in fh if line.strip()]
                if not all(isinstance(r, dict) and column in r for r in rows):
                    raise DataError(
                        f"Every record of {path} needs a {column!r} field. Name the text field 'text', or set data.text_column."
                    )
                texts = [str(r[column]) for r in rows]
            else:
                raise DataError(
                    f"The unlabelled-text file {path} must be .txt, .csv, .tsv, .jsonl or .json. Got {suffix!r}."
                )
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(
            f"Could not read the unlabelled-text file {path} ({type(exc).__name__}: {exc}). Save it as UTF-8."
        ) from None
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(f"The unlabelled-text file {path} holds no text.")
    return texts
