"""The model card written next to a saved model: hub-style YAML front matter (model-index,
co2_eq_emissions), how the model was chosen, its verdict against the criteria, what it cost, and
how to load it safely. Layout only, like report.py: every figure comes from the Report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from advisor.outcome import Report
from advisor.report.render import jsonable, md_escape, shown_figure
from advisor.types import RunResult
from advisor.verdicts.criteria import PFLOP, fmt_count, fmt_num

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def dataset_identifier(source: str) -> tuple[str, str]:
    """(type, name) of the model-index's dataset for a ``data.source`` as the user gave it.

    The hub reads ``dataset.type`` as an identifier: a built-in's name, a hub id, or the loader of a
    local file (``csv``, ``json``, ``parquet``; ``arrow`` for a ``save_to_disk`` folder). ``name``
    is the built-in's name, the hub id, or the file's name; the long description goes in the card's
    text, not here.
    """
    from advisor.data.readers import FILE_FORMATS
    from advisor.offline.builtin_data import BUILTINS

    if source in BUILTINS:
        return source, source
    path = Path(source).expanduser()
    suffixes = [x.lower() for x in path.suffixes[-2:]]
    if suffixes[-1:] == [".gz"]:  # reviews.csv.gz is read as csv
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in FILE_FORMATS:
        return FILE_FORMATS[suffixes[-1]], path.name
    if path.is_dir() or source.startswith(("/", ".", "~")):
        return "arrow", path.name or source
    return source, source  # a hub dataset id


def _report_dataset(report: Report) -> tuple[str, str]:
    """(type, name) of the report's dataset, from the ``data.source`` its configuration names."""
    data_config = report.config.get("data")
    source = data_config.get("source") if isinstance(data_config, Mapping) else None
    return dataset_identifier(str(source or report.dataset.get("name") or "custom"))


def _card_meta(report: Report, run: RunResult) -> dict[str, Any]:
    data_type, data_name = _report_dataset(report)
    scores = run.test_metrics or run.metrics
    split = "test" if run.test_metrics else "validation"
    is_base = run.candidate.kind == "baseline"
    meta: dict[str, Any] = {
        "library_name": "sklearn" if is_base else "transformers",
        "license": "unknown",
        "pipeline_tag": "text-classification",
        "tags": ["text-classification", "greenladder", run.candidate.kind]
        + (["skops", "tabular-text"] if is_base else []),
    }
    if not is_base and _HUB_ID.match(run.candidate.source):
        meta["base_model"] = run.candidate.source
    meta["metrics"] = sorted(scores)
    meta["model-index"] = [
        {
            "name": run.candidate.name,
            "results": [
                {
                    "task": {"type": "text-classification", "name": "Text Classification"},
                    "dataset": {"name": data_name, "type": data_type, "split": split},
                    "metrics": [
                        {"type": k, "value": round(float(v), 4), "name": f"{split} {k}"}
                        for k, v in sorted(scores.items())
                    ],
                }
            ],
        }
    ]
    metering = report.config.get("metering", {}) if isinstance(report.config.get("metering"), Mapping) else {}
    co2 = co2_eq_emissions(run, metering)
    if co2 is not None:
        meta["co2_eq_emissions"] = co2
    return jsonable(meta)


def co2_eq_emissions(run: RunResult, metering: Mapping[str, Any]) -> dict[str, Any] | None:
    """The hub's ``co2_eq_emissions`` card entry for ``run`` (None when emissions were not measured).

    Args:
        run: the run whose cost the entry reports.
        metering: the metering settings it ran under (``codecarbon`` names the source).
    """
    emissions_prov = run.cost.provenance.get("emissions", "")
    if not emissions_prov or emissions_prov in ("not_measured", "not_applicable"):
        return None
    is_base = run.candidate.kind == "baseline"
    by_codecarbon = bool(metering.get("codecarbon", False)) and emissions_prov in ("measured", "estimated")
    return {
        "emissions": round(run.cost.emissions_g, 4),
        "source": "codecarbon" if by_codecarbon else "estimate",
        # hub values are "pre-training" and "fine-tuning"; this model was never pre-trained here
        "training_type": "fine-tuning" if not is_base else "training from scratch (TF-IDF + linear model)",
        "geographical_location": run.cost.location or "unknown",
        "hardware_used": run.cost.device or "unknown",
    }


#: how to use a saved probe with transformers and torch alone (tests/test_probe.py runs it)
PROBE_SNIPPET = [
    "```python",
    "import json",
    "",
    "import torch",
    "from safetensors.torch import load_file",
    "from transformers import AutoModel, AutoTokenizer",
    "",
    'folder = "path/to/this/folder"  # encoder/, head.safetensors, probe.json',
    'spec = json.load(open(f"{folder}/probe.json"))',
    'tokenizer = AutoTokenizer.from_pretrained(f"{folder}/encoder")',
    'encoder = AutoModel.from_pretrained(f"{folder}/encoder").eval()',
    'head = load_file(f"{folder}/head.safetensors")  # weight [labels, hidden], bias [labels]',
    "",
    'texts = ["some text to classify"]',
    'batch = tokenizer(texts, padding=True, truncation=True, max_length=spec["max_length"], return_tensors="pt")',
    "with torch.no_grad():",
    "    hidden = encoder(**batch).last_hidden_state  # [texts, tokens, hidden]",
    'if spec["pooling"] == "cls":',
    "    pooled = hidden[:, 0]",
    "else:  # mean over the real tokens",
    '    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)',
    "    pooled = (hidden * mask).sum(1) / mask.sum(1)",
    'logits = pooled @ head["weight"].T + head["bias"]',
    'print([spec["labels"][i] for i in logits.argmax(-1).tolist()])',
    "```",
]


def _load_snippet(run: RunResult) -> list[str]:
    if run.candidate.kind == "baseline":
        name = Path(run.artifact).name if run.artifact else "model.skops"
        return [
            "```python",
            "import skops.io as sio",
            "",
            f'path = "{name}"',
            "# skops refuses unknown types; trust only scikit-learn, numpy and scipy ones",
            "types = sio.get_untrusted_types(file=path)",
            'assert all(t.startswith(("sklearn.", "numpy.", "scipy.")) for t in types), types',
            "model = sio.load(path, trusted=types)",
            'print(model.predict(["some text to classify"]))',
            "```",
        ]
    if run.candidate.kind == "probe":
        return PROBE_SNIPPET
    return [
        "```python",
        "from transformers import pipeline",
        "",
        "# the folder holding this README (config.json, model.safetensors, tokenizer files)",
        'classifier = pipeline("text-classification", model="path/to/this/folder")',
        'print(classifier("some text to classify"))',
        "```",
    ]


def _card_figure(value: float, provenance: str | None) -> str:
    shown = shown_figure(value, provenance)
    return "n/a" if shown is None else fmt_num(shown)


def model_card(report: Report, run: RunResult) -> str:
    """README.md for a saved model: hub-style YAML front matter, then how it was chosen and what it cost."""
    front = yaml.safe_dump(_card_meta(report, run), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        front.rstrip(),
        "---",
        "",
        *_card_intro(report, run),
        *_card_selection(report, run),
        *_card_verdict(report, run),
        *_card_cost(report, run),
        "## How to load it",
        "",
        *_load_snippet(run),
        "",
        "Hyperparameters: "
        + (", ".join(f"{k}={v}" for k, v in sorted(run.hyperparameters.items())) or "defaults")
        + ".",
        "",
    ]
    return "\n".join(lines)


def _card_intro(report: Report, run: RunResult) -> list[str]:
    """The card's title and what the model is: its kind, shape, task, data and labels."""
    c = run.candidate
    shape = ", ".join(
        x
        for x in (
            f"{fmt_count(c.params_total)} parameters" if c.params_total else "",
            f"{c.layers} layers" if c.layers else "",
            f"hidden size {c.hidden}" if c.hidden else "",
        )
        if x
    )
    what = {
        "baseline": "a TF-IDF + linear model baseline",
        "probe": f"a frozen-encoder probe: the embeddings of `{c.source}` (not trained here) with a linear head",
        "finetune": f"a text classifier fine-tuned from `{c.source}`",
        "incremental": f"a text classifier trained incrementally from `{c.source}`",
        "distilled": f"a student distilled from `{c.source}`",
    }[c.kind]
    lines = [
        f"# {md_escape(c.name)}",
        "",
        f"This is {what}"
        + (f" ({shape})" if shape else "")
        + f", trained for {report.task}"
        + f" on {md_escape(_report_dataset(report)[1])}.",
    ]
    described = report.dataset.get("source")
    if described:
        lines += ["", f"Data: {md_escape(str(described))}"]
    labels = report.dataset.get("label_names")
    if labels:
        lines += ["", "Labels: " + ", ".join(md_escape(x) for x in labels) + "."]
    if c.parent_run:
        lines += ["", f"It continues from run `{c.parent_run}`."]
    return lines


def _card_selection(report: Report, run: RunResult) -> list[str]:
    """How the climb chose it."""
    chosen = "It is the recommendation" if report.recommendation == run.run_id else "It was one of the runs"
    return [
        "",
        "## How it was selected",
        "",
        f"{chosen} of a greenladder climb: the TF-IDF baseline first, then pre-trained models from smallest "
        f"to largest, each judged against the acceptance criteria, stopping as soon as one passed. "
        f"The climb made {len(report.runs)} run(s) after the baseline and stopped because: {md_escape(report.stop_reason)}.",
    ]


def _card_verdict(report: Report, run: RunResult) -> list[str]:
    """Its verdict against the criteria, and its scores (on the test split where it was scored there)."""
    lines = ["", "## Criteria and verdict", ""]
    verdict = report.verdicts.get(run.run_id)
    if verdict is None:
        lines.append("This run was not judged.")
    else:
        lines.append(f"**{verdict.state.upper()}** on validation {report.criteria.metric}:")
        lines += [""] + [f"- {r}" for r in verdict.reasons]
    scores = run.test_metrics or run.metrics
    split = "test" if run.test_metrics else "validation"
    lines += ["", f"Scores on the {split} split:", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(scores.items())]
    return lines


def _card_cost(report: Report, run: RunResult) -> list[str]:
    """What this model and the whole search cost, each figure with its provenance."""
    cost, prov, total = run.cost, run.cost.provenance, report.total_cost
    return [
        "",
        "## Cost",
        "",
        "| figure | this model | whole search | provenance (this model) |",
        "|---|---:|---:|---|",
        f"| wall time, s | {fmt_num(cost.wall_s)} | {fmt_num(total.wall_s)} | {prov.get('time', '?')} |",
        f"| training compute, PFLOPs | {_card_figure(cost.train_flops / PFLOP, prov.get('flops'))} | {fmt_num(total.train_flops / PFLOP)} | {prov.get('flops', '?')} |",
        f"| energy, kWh | {_card_figure(cost.energy_kwh, prov.get('energy'))} | {fmt_num(total.energy_kwh)} | {prov.get('energy', '?')} |",
        f"| emissions, gCO2e | {_card_figure(cost.emissions_g, prov.get('emissions'))} | {fmt_num(total.emissions_g)} | {prov.get('emissions', '?')} |",
        "",
        *_lost_lines(report),
        f"Measured on {cost.device or 'an unrecorded device'}; emissions for the grid at {cost.location or 'an unrecorded location'}. "
        "Figures marked not_applicable have no meaning for this model (a TF-IDF fit has no FLOPs count); "
        "estimated energy comes from a power model, not hardware counters.",
        "",
    ]


def _lost_lines(report: Report) -> list[str]:
    """A sentence under the cost table when the search's total includes work lost to interruption."""
    lost = report.details.get("lost_to_interruption")
    if not lost:
        return []
    c = lost["cost"]
    runs = ", ".join(x["run_id"] for x in lost["runs"])
    return [
        f"The whole search includes work lost to interruption (runs killed and trained again: {runs}): "
        f"{fmt_num(c['wall_s'])} s, {fmt_num(c['train_flops'] / PFLOP)} training PFLOPs, {fmt_num(c['energy_kwh'])} kWh.",
        "",
    ]
