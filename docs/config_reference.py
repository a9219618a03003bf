"""Write the key tables of docs/configuration.md from the config dataclasses.

Each key's meaning is the ``#:`` comment above its field (or the class docstring's ``Attributes:``
entry, or the inline comment of the shipped YAML), its default the dataclass default, so the page
cannot drift from the code: ``tests/test_promises.py`` renders the tables and compares.

    PYTHONPATH=. python docs/config_reference.py          # rewrite the tables in docs/configuration.md
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
BEGIN, END = "<!-- BEGIN GENERATED KEYS -->", "<!-- END GENERATED KEYS -->"

#: meanings of fields whose dataclass carries no comment yet (by field name, any section);
#: a ``#:`` comment added in the code takes precedence
FALLBACK = {
    "task": "the task; only text-classification is supported",
    "epochs": "training epochs (fractions allowed)",
    "batch_size": "rows per optimizer step (the global batch when several processes train)",
    "warmup_ratio": "share of the steps with a linearly rising learning rate",
    "weight_decay": "AdamW weight decay",
    "torch_compile": "compile the model with torch.compile (not benchmarked; off)",
    "seed": "seed of the classification head's initialisation and the data order",
    "trust_remote_code": "allow model code from a checkpoint's folder or hub repo (off: only transformers' own classes)",
    "probe_factor": "the factor the probe multiplies or divides the default learning rate by (above 1)",
    "lr_max": "upper end of the learning-rate range",
    "epochs_max": "upper end of the epochs range",
    "enabled": "turn the whole section on or off",
    "cloud_region": "the cloud region (with cloud_provider), e.g. eu-central-1",
    "control": "train the same student without the teacher (same budget and seed) to measure the gain",
}


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> the ``#:`` comment lines right above it, for ``cls`` and its dataclass bases."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        lines = inspect.getsource(klass).splitlines()
        for node in ast.parse(inspect.getsource(klass)).body[0].body:  # type: ignore[attr-defined]
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                above, i = [], node.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#:"):
                    above.insert(0, lines[i].strip()[2:].strip())
                    i -= 1
                if above:
                    out[node.target.id] = " ".join(above)
        doc = inspect.getdoc(klass) or ""
        if "Attributes:" in doc:
            body = doc.split("Attributes:", 1)[1]
            for name, text in re.findall(r"^\s{4}(\w+): (.*?)(?=^\s{4}\w+: |\Z)", body, re.S | re.M):
                out.setdefault(name, " ".join(text.split()))
    return out


def _yaml_comments(path: Path) -> dict[str, str]:
    """``section.key`` -> the inline comment of that line in a shipped YAML file."""
    out, section = {}, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\s*)([a-z_]+):([^#]*)(?:#\s*(.*))?$", line)
        if not m:
            continue
        indent, key, value, comment = m.groups()
        if not indent:
            section = key if not value.strip() else ""
        name = f"{section}.{key}" if indent and section else key
        if comment:
            out[name] = comment.strip()
    return out


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"' if v == "" else v
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _table(prefix: str, cls: type, yaml_notes: dict[str, str]) -> list[str]:
    notes = _field_comments(cls)
    rows = ["| key | default | meaning |", "|---|---|---|"]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        key = f"{prefix}{f.name}"
        text = notes.get(f.name) or yaml_notes.get(key) or FALLBACK.get(f.name, "")
        text = text.replace("``", "`")
        rows.append(f"| `{key}` | `{_value(_default(f))}` | {text.replace('|', '/')} |")
    return rows


def _sections(root: type) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(root)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(root) if dataclasses.is_dataclass(hints[f.name])]


def render() -> str:
    """The generated part of docs/configuration.md: one table per section of each tool."""
    from advisor.config.settings import Config
    from distill.config import DistillConfig

    advise_notes = _yaml_comments(ROOT / "configs" / "default.yaml")
    distill_notes = _yaml_comments(ROOT / "configs" / "distill.yaml")
    out = ["### advise", "", "Top-level keys:", "", *_table("", Config, advise_notes)]
    for name, cls in _sections(Config):
        out += ["", f"#### `{name}` ({cls.__name__})", "", *_table(f"{name}.", cls, advise_notes)]
    shared = {name for name, _ in _sections(Config)}
    out += ["", "### distill", "", "Top-level keys:", "", *_table("", DistillConfig, distill_notes)]
    for name, cls in _sections(DistillConfig):
        if name in shared and cls is dict(_sections(Config))[name]:
            out += ["", f"#### `{name}` ({cls.__name__})", "", f"The same keys and defaults as advise's `{name}`."]
            continue
        out += ["", f"#### `{name}` ({cls.__name__})", "", *_table(f"{name}.", cls, distill_notes)]
    return "\n".join(out) + "\n"


def generated_block(page: str) -> str:
    """The text between the markers of a page."""
    return page.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main() -> int:
    page = PAGE.read_text(encoding="utf-8")
    head, rest = page.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    PAGE.write_text(f"{head}{BEGIN}\n{render()}{END}{tail}", encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
