"""WordNet glosses labelled by lexicographer file: a 117,659-row, 45-class text-classification set.

Source: WordNet 3.0 (Princeton University) as the Debian package ``wordnet-base`` installs it
(``/usr/share/wordnet/data.{noun,verb,adj,adv}``; ``apt-get install wordnet-base``). Each synset
line of a data file reads ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss``
(``man 5 wndb``); one row per synset:

* ``text``: the gloss after ``|``, stripped, definition and quoted examples kept
  (``draw air into, and expel out of, the lungs; "I can breathe better when the air is clean"``);
* ``label``: the lexicographer file the synset was written in, the name for ``lex_filenum`` in the
  WordNet lexnames table (``man 5 lexnames``): 45 names from ``adj.all`` (00) to ``adj.ppl`` (44),
  e.g. ``noun.animal``, ``verb.motion``.

The licence header (lines starting with two spaces) is skipped. Files are read in the order noun,
verb, adj, adv and lines in file order, so the CSV is the same on every run.

Licence: WordNet 3.0 licence (Princeton University): use, copying, modification and distribution
for any purpose without fee, provided the copyright notice "WordNet 3.0 Copyright 2006 by Princeton
University. All rights reserved." and the disclaimer appear on all copies (full text in
``/usr/share/doc/wordnet-base/copyright``). Princeton's name may not be used in advertising.

Usage::

    python benchmarks/wordnet.py --out /tmp/wordnet.csv.gz      # prints rows per label
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

#: where the Debian package wordnet-base puts the database
DEFAULT_FOLDER = Path("/usr/share/wordnet")
#: data files, in the order rows are written
PARTS = ("noun", "verb", "adj", "adv")

#: WordNet 3.0 lexicographer file names by number (lexnames(5WN))
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)


class WordNetError(Exception):
    """The WordNet files are missing or malformed; the message says what to do."""


def parse_line(line: str) -> tuple[str, str] | None:
    """``(gloss, lexname)`` of one data-file line; None for a licence-header or blank line.

    Raises:
        WordNetError: a synset line without a gloss or with a file number outside 00-44.
    """
    if line.startswith("  ") or not line.strip():
        return None
    head, bar, gloss = line.partition(" | ")
    fields = head.split()
    if not bar or len(fields) < 3:
        raise WordNetError(f"not a WordNet synset line (no 'offset lex_filenum ss_type ... | gloss'): {line[:60]!r}")
    number = int(fields[1]) if fields[1].isdigit() else -1
    if not 0 <= number < len(LEXNAMES):
        raise WordNetError(f"lex_filenum {fields[1]!r} is not one of 00-44: {line[:60]!r}")
    return gloss.strip(), LEXNAMES[number]


def parse_lines(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Every ``(gloss, lexname)`` of a data file's lines, in order."""
    for line in lines:
        row = parse_line(line)
        if row is not None:
            yield row


def wordnet_rows(folder: str | Path = DEFAULT_FOLDER) -> list[tuple[str, str]]:
    """Every synset of ``folder``'s data files as ``(text, label)``, in file order (noun, verb, adj, adv).

    Raises:
        WordNetError: a data file is missing (install wordnet-base) or malformed.
    """
    folder = Path(folder)
    rows: list[tuple[str, str]] = []
    for part in PARTS:
        path = folder / f"data.{part}"
        if not path.is_file():
            raise WordNetError(
                f"{path} not found: install WordNet 3.0 with `apt-get install wordnet-base`, "
                "or point --wordnet at a folder holding data.noun, data.verb, data.adj and data.adv"
            )
        with path.open(encoding="utf-8", errors="replace") as fh:
            rows.extend(parse_lines(fh))
    return rows


def write_csv(rows: Iterable[tuple[str, str]], path: str | Path) -> Path:
    """Write ``rows`` as a CSV with columns text,label (gzip when ``path`` ends in .gz), byte-for-byte reproducible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime 0: the same bytes on every run
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wordnet", type=Path, default=DEFAULT_FOLDER, help="folder of data.{noun,verb,adj,adv}")
    p.add_argument("--out", type=Path, default=Path("wordnet.csv.gz"), help="CSV to write (.gz: gzipped)")
    args = p.parse_args(argv)
    try:
        rows = wordnet_rows(args.wordnet)
        write_csv(rows, args.out)
    except (WordNetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = Counter(label for _, label in rows)
    print(f"{len(rows)} rows, {len(counts)} labels -> {args.out}")
    for name in LEXNAMES:
        print(f"{name}\t{counts.get(name, 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
