"""What the README, the shipped configs and the messages promise is what the code does."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

import advisor.climb.executor as climb_mod
from advisor.advise import advise
from advisor.config.settings import build_config
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

ROOT = Path(__file__).resolve().parent.parent

# -- the recommended model is stored once ---------------------------------------------------------


@pytest.fixture
def one_rung_ladder(tmp_path: Path) -> Path:
    folder = make_tiny_model(tmp_path / "tiny-a", seed=0, layers=1, hidden=32)
    rung = {"name": "tiny-a", "source": str(folder), "description": "1 layer", "layers": 1, "hidden": 32}
    rung |= {"params_total": 10_000, "params_non_embedding": 9_000}
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump({"rungs": [rung]}))
    return path


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_recommended_model_is_moved_to_model_not_copied_and_a_rerun_finds_it(
    tmp_path: Path, one_rung_ladder: Path, monkeypatch: pytest.MonkeyPatch, weak_baseline: None
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(200))
    run_dir = tmp_path / "run"
    config = build_config(
        overrides=[
            # a tiny model that learns the keyword task; the floor is far above chance (0.5)
            "train.epochs=6",
            "train.learning_rate=5e-3",
            "tuning.lr_max=1e-2",
            "tuning.epochs_max=8",
            "train.batch_size=16",
            "metering.codecarbon=false",
            "rules.enabled=false",
            "tuning.trials_per_rung=1",
            "ladder.probes=false",  # a fine-tune's folder (a probe's: tests/test_probe.py)
            f"ladder.name={one_rung_ladder}",
            f"data.source={data}",
            "criteria.floor=0.75",
            f"output.out={run_dir}",
            "output.keep_checkpoints=true",  # nothing is deleted: any second copy would still be there
        ]
    )
    report = advise(config)
    assert report.recommendation == "tiny-a-t1", report.stop_reason
    weights = list(run_dir.rglob("model.safetensors"))
    assert weights == [run_dir / "model" / "model.safetensors"], weights
    assert not (run_dir / "runs" / "tiny-a-t1" / "model").exists()
    # the report points at the one copy, and it loads from there
    assert report.recommended is not None and report.recommended.artifact == "model"
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["recommendation"]["artifact"] == "model"
    size = _dir_bytes(run_dir / "model")

    # killed after the model was staged, before it replaced model/: the rerun finishes the move
    os.replace(run_dir / "model", run_dir / ".model-tmp")
    monkeypatch.setattr(climb_mod, "train_run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = advise(config)
    assert again.recommendation == "tiny-a-t1"
    assert (run_dir / "model" / "model.safetensors").is_file() and not (run_dir / ".model-tmp").exists()
    assert (run_dir / "model" / "README.md").is_file() and (run_dir / "model" / "labels.json").is_file()
    assert _dir_bytes(run_dir / "model") == size
    assert list(run_dir.rglob("model.safetensors")) == [run_dir / "model" / "model.safetensors"]


# -- every config key is read, every key and flag the docs name exists ----------------------------
#
# Unknown keys are rejected by the config loader; what that cannot catch is a key that is accepted
# and then ignored (teacher_train.bf16 once was: the teacher's loop never looked at it). A static
# scan of the package finds, for every section of both configurations, the fields that code outside
# the config modules reads:
#   - directly: ``config.teacher_train.epochs``, or through a name bound to the section in the same
#     function (``t = config.teacher_train`` ... ``t.epochs``; ``getattr(t, "epochs")``);
#   - or, once the section is handed to another function (``load_task_data(config.data)``), through
#     a parameter or attribute annotated with the section's class (``cfg: DataConfig`` ... ``cfg.source``).
# Validation (the config modules) and copying (``dataclasses.asdict``/``replace``) do not count.

#: the code that reads config keys (the config modules themselves only declare them)
PACKAGE_FILES = sorted(
    p
    for p in [*ROOT.glob("advisor/**/*.py"), *ROOT.glob("distill/**/*.py")]
    if p.relative_to(ROOT).as_posix() not in ("advisor/config/settings.py", "distill/config.py")
)
NOT_CONSUMERS = {"asdict", "replace", "astuple", "fields", "to_dict"}


def _sections() -> dict[str, dict[str, type]]:
    """Top-level section name -> {"advise" or "distill": its dataclass}."""
    from advisor.config.settings import Config
    from distill.config import DistillConfig

    out: dict[str, dict[str, type]] = {}
    for tool, cls in (("advise", Config), ("distill", DistillConfig)):
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                out.setdefault(f.name, {})[tool] = hint
    return out


def _names_in(annotation: ast.expr | None) -> set[str]:
    if annotation is None:
        return set()
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    return {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}


def _const_strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


class _Reads(ast.NodeVisitor):
    """Collects section reads, handed-off sections and class-typed reads over the package."""

    def __init__(self, sections: set[str], classes: set[str]) -> None:
        self.sections, self.classes = sections, classes
        self.direct: set[tuple[str, str]] = set()  # (section, field)
        self.handed: set[str] = set()  # sections passed to another function
        self.typed: set[tuple[str, str]] = set()  # (class name, field)
        self.self_attrs: dict[str, str] = {}  # self.<attr> -> class name, per class body

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        saved = self.self_attrs
        self.self_attrs = {}
        for fn in (n for n in node.body if isinstance(n, ast.FunctionDef)):
            params = {a.arg: _names_in(a.annotation) & self.classes for a in fn.args.args}
            for stmt in ast.walk(fn):
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name) and params.get(stmt.value.id):
                    for t in stmt.targets:
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                            self.self_attrs[t.attr] = next(iter(params[stmt.value.id]))
        if node.name in self.classes:  # a config class's own methods (AcceptanceCriteria) read self
            self.self_attrs["__self__"] = node.name
        self.generic_visit(node)
        self.self_attrs = saved

    def visit_FunctionDef(self, fn: ast.FunctionDef) -> None:
        typed = {a.arg: c for a in fn.args.args + fn.args.kwonlyargs for c in _names_in(a.annotation) & self.classes}
        if "__self__" in self.self_attrs:
            typed["self"] = self.self_attrs["__self__"]
        alias: dict[str, str] = {}

        def section_of(e: ast.expr) -> str | None:
            if isinstance(e, ast.Attribute) and e.attr in self.sections:
                return e.attr
            return alias.get(e.id) if isinstance(e, ast.Name) else None

        def class_of(e: ast.expr) -> str | None:
            if isinstance(e, ast.Name):
                return typed.get(e.id)
            if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self":
                return self.self_attrs.get(e.attr)
            return None

        def read(e: ast.expr, attr: str) -> None:
            if (s := section_of(e)) is not None:
                self.direct.add((s, attr))
            if (c := class_of(e)) is not None:
                self.typed.add((c, attr))

        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):  # v = config.train; d, t = config.data, config.train
                pairs = (
                    list(zip(node.targets[0].elts, node.value.elts, strict=False))
                    if (isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple))
                    else [(t, node.value) for t in node.targets]
                )
                for target, value in pairs:
                    if isinstance(target, ast.Name) and (s := section_of(value)) is not None:
                        alias[target.id] = s
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                read(node.value, node.attr)
            elif isinstance(node, ast.Call):
                callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                args = [*node.args, *(k.value for k in node.keywords)]
                if callee == "getattr" and len(node.args) >= 2:
                    # getattr(t, "epochs"), or getattr(k, name) in a loop over names written out
                    loops = [n.iter for n in ast.walk(fn) if isinstance(n, (ast.For, ast.comprehension))]
                    names = _const_strings(node.args[1]) or {x for it in loops for x in _const_strings(it)}
                    for name in names:
                        read(node.args[0], name)
                elif callee not in NOT_CONSUMERS:
                    self.handed |= {s for a in args if (s := section_of(a)) is not None}
        self.generic_visit(fn)


def _unread_keys() -> list[str]:
    sections = _sections()
    classes = {c.__name__ for tools in sections.values() for c in tools.values()}
    visitor = _Reads(set(sections), classes)
    for path in PACKAGE_FILES:
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
    unread = []
    for section, tools in sorted(sections.items()):
        for tool, cls in sorted(tools.items()):
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                by_type = section in visitor.handed and (cls.__name__, f.name) in visitor.typed
                if (section, f.name) not in visitor.direct and not by_type:
                    unread.append(f"{tool}: {section}.{f.name}")
    return unread


def test_every_config_key_is_read_by_the_code_not_only_accepted() -> None:
    assert _unread_keys() == []


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def _key_exists(parts: list[str]) -> bool:
    """Whether ``section.key`` (or a top-level key) is a field of the advise or distill config."""
    from advisor.config.settings import Config
    from distill.config import DistillConfig

    for root in (Config, DistillConfig):
        cls: Any = root
        for part in parts:
            hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
            if part not in hints:
                break
            cls = hints[part]
        else:
            return True
    return False


def _yaml_keys(node: Any, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    if not isinstance(node, dict):
        return [list(prefix)]
    return [k for key, value in node.items() for k in _yaml_keys(value, (*prefix, str(key)))] or [list(prefix)]


#: file names the README writes in backticks that look like section.key (configs/distill.yaml ...)
_EXTENSIONS = {"yaml", "py", "json", "md", "csv", "html", "sqlite", "safetensors", "skops", "onnx", "txt"}


#: the pages whose promises are checked: the README, the benchmark summary and every docs/ page
DOC_PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _is_module(dotted: str) -> bool:
    """``distill.compress`` in ``distill.compress.load_int8`` names a module, not a config key."""
    import importlib.util

    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def _doc_keys(paths: list[Path]) -> list[str]:
    """``path: section.key`` for every key-shaped name in backticks or code blocks of the pages."""
    sections = set(_sections())
    fenced = re.compile(r"```.*?```", re.S)
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        spans = fenced.findall(text) + re.findall(r"`([^`]+)`", fenced.sub("", text))
        for span in spans:
            for m in re.finditer(r"(?<![\w/.-])([a-z_]+)\.([a-z_][a-z0-9_]*)\b", span):
                if m.group(1) in sections and m.group(2) not in _EXTENSIONS and not _is_module(m.group(0)):
                    found.append(f"{path.relative_to(ROOT)}: {m.group(1)}.{m.group(2)}")
    return sorted(set(found))


def _readme_keys() -> list[str]:
    return [k.split(": ", 1)[1] for k in _doc_keys([ROOT / "README.md"])]


def test_every_key_the_readme_docs_and_shipped_configs_name_exists() -> None:
    named = _doc_keys(DOC_PAGES)
    # the scan finds keys at all, on the README and on the docs pages
    assert {"README.md: criteria.floor", "docs/tuning-and-rules.md: tuning.trials_per_rung"} <= set(named)
    assert "docs/distillation.md: student.layer_map" in named
    missing = [k for k in named if not _key_exists(k.split(": ", 1)[1].split("."))]
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        missing += [
            f"{path.name}: {'.'.join(k)}"
            for k in _yaml_keys(yaml.safe_load(path.read_text()))
            if k and not _key_exists(k)
        ]
    assert missing == []


def test_default_yaml_writes_out_every_advise_key() -> None:
    """configs/default.yaml says it holds every setting: a key added to the dataclasses must appear there."""
    from advisor.config.settings import Config

    def keys(cls: Any, prefix: str = "") -> set[str]:
        hints = typing.get_type_hints(cls)
        out: set[str] = set()
        for f in dataclasses.fields(cls):
            name = f"{prefix}{f.name}"
            out |= keys(hints[f.name], f"{name}.") if dataclasses.is_dataclass(hints[f.name]) else {name}
        return out

    written = {".".join(k) for k in _yaml_keys(yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()))}
    assert sorted(keys(Config) - written) == []


def _flags_of(parser: Any) -> dict[str, str]:
    return {opt: a.dest for a in parser._actions for opt in a.option_strings if opt.startswith("--")}


def _benchmark_flags() -> set[str]:
    flags = set()
    for path in (ROOT / "benchmarks").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
    return flags


#: flags of other tools the pages quote: pip's, and accelerate launch's (docs/scaling.md)
_OTHER_TOOLS = {
    "--no-deps",
    "--index-url",
    "--cpu",
    "--multi_gpu",
    "--num_processes",
    "--num_machines",
    "--mixed_precision",
    "--dynamo_backend",
}


def test_every_flag_the_readme_names_exists_and_each_cli_flag_is_read() -> None:
    from advisor.cli import _parser
    from distill.cli import build_parser

    advise_flags, distill_flags = _flags_of(_parser()), _flags_of(build_parser())
    known = set(advise_flags) | set(distill_flags) | _benchmark_flags() | _OTHER_TOOLS
    named: dict[str, set[str]] = {}
    for page in DOC_PAGES:  # accelerate's flags have underscores
        text = page.read_text(encoding="utf-8")
        named[str(page.relative_to(ROOT))] = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", text))
    assert {"--from", "--list-datasets", "--student-layers"} <= named["README.md"]  # the scan finds flags at all
    assert {"--compare-scratch", "--no-resume-climb"} <= named["docs/continuing.md"]
    assert sorted(f"{page}: {flag}" for page, flags in named.items() for flag in flags - known) == []
    # a parsed flag that the CLI never looks at would be accepted and ignored
    for module, flags in (("advisor/cli.py", advise_flags), ("distill/cli.py", distill_flags)):
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", "") == "args"}
        used |= _const_strings(tree)  # getattr(args, flag) over a table of names; "--debug" in argv
        unread = sorted(f for f, dest in flags.items() if dest not in used and f not in used and f != "--help")
        assert unread == [], module


def test_shipped_distill_yaml_holds_the_defaults_distill_runs_without_it() -> None:
    from distill.config import build_distill_config

    teacher = {"teacher": "minilm-l6"}
    assert build_distill_config([ROOT / "configs" / "distill.yaml"], extra=teacher) == build_distill_config(
        extra=teacher
    )


@pytest.mark.parametrize("key", ["freeze_embeddings", "bf16", "torch_compile", "evals_per_epoch", "allow_pickle"])
def test_teacher_train_refuses_settings_the_teacher_loop_does_not_use(key: str) -> None:
    from advisor.errors import ConfigError
    from distill.config import build_distill_config

    with pytest.raises(ConfigError, match=f"Unknown config key teacher_train.{key}"):
        build_distill_config(overrides=[f"teacher_train.{key}=true"], extra={"teacher": "minilm-l6"})


# -- the model card's model-index names the dataset by an identifier ---------------------------------


@pytest.mark.parametrize(
    ("source", "data_type", "data_name"),
    [
        ("uncertainty", "uncertainty", "uncertainty"),
        ("data/reviews.csv", "csv", "reviews.csv"),
        ("reviews.tsv.gz", "csv", "reviews.tsv.gz"),
        ("reviews.jsonl", "json", "reviews.jsonl"),
        ("stanfordnlp/imdb", "stanfordnlp/imdb", "stanfordnlp/imdb"),
    ],
)
def test_model_card_loads_with_huggingface_hub_and_names_the_dataset_by_identifier(
    tmp_path: Path, source: str, data_type: str, data_name: str
) -> None:
    from huggingface_hub import ModelCard

    from advisor.report.card import model_card
    from tests.test_report import make_report

    report = make_report()
    long_description = "file /home/me/data/reviews.csv (prose a reader needs, not an identifier)"
    report = dataclasses.replace(
        report, dataset={**report.dataset, "source": long_description}, config={"data": {"source": source}}
    )
    path = tmp_path / "README.md"
    path.write_text(model_card(report, report.run("l6-t0")), encoding="utf-8")
    card = ModelCard.load(path)
    results = card.data.eval_results  # one per metric
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {(data_type, data_name, "test")}
    assert {(r.metric_type, r.metric_value) for r in results} == {("accuracy", 0.8), ("macro_f1", 0.79)}
    assert "prose a reader needs" in card.text  # the description stays in the card's text


# -- region advice names cloud regions, with intensity and saving ----------------------------------


def test_region_advice_names_only_cloud_regions_each_with_intensity_and_saving() -> None:
    from advisor.config.settings import MeteringConfig
    from advisor.metering.energy import grid_intensity_g_per_kwh
    from advisor.metering.regions import PROVIDERS, cloud_region_intensities, low_carbon_alternatives

    usa = MeteringConfig(country_iso_code="USA")
    here = grid_intensity_g_per_kwh(usa)
    regions = cloud_region_intensities()
    options = low_carbon_alternatives(2.0, usa)
    # the two cleanest of each provider, all of them real regions of AWS, Azure or GCP
    assert sorted({o.region.split(":")[0] for o in options}) == list(PROVIDERS) and len(options) == 6
    for o in options:
        provider, region = o.region.split(":", 1)
        assert regions[(provider, region)][1] == o.g_per_kwh
        assert 0 < o.g_per_kwh < here and o.source
        assert o.emissions_g == pytest.approx(2.0 * o.g_per_kwh)
        assert o.saving_g == pytest.approx(2.0 * (here - o.g_per_kwh))
    assert [o.g_per_kwh for o in options] == sorted(o.g_per_kwh for o in options)
    # the report says it in words, with intensity and saving
    from advisor.report.pages import to_markdown
    from tests.test_report import make_report

    report = make_report()
    report = dataclasses.replace(report, details={"low_carbon_alternatives": [dataclasses.asdict(o) for o in options]})
    md = to_markdown(report)
    first = options[0]
    assert f"{first.region} ({first.location}" in md and "gCO2e/kWh" in md and "g less" in md
    # nothing cleaner of the same provider was left out
    for provider in PROVIDERS:
        shown = max(o.g_per_kwh for o in options if o.region.startswith(f"{provider}:"))
        cleaner = [g for (p, _), (_, g, _) in regions.items() if p == provider and 0 < g < shown]
        assert len(cleaner) == 1


def test_region_advice_keeps_to_the_users_provider_and_says_nothing_when_none_is_cleaner() -> None:
    from advisor.config.settings import MeteringConfig
    from advisor.metering.regions import cloud_region_intensities, low_carbon_alternatives

    frankfurt = MeteringConfig(cloud_provider="aws", cloud_region="eu-central-1")
    options = low_carbon_alternatives(1.0, frankfurt)
    here = cloud_region_intensities()[("aws", "eu-central-1")][1]
    assert options and all(o.region.startswith("aws:") for o in options)
    assert all(o.saving_g == pytest.approx(here - o.g_per_kwh) for o in options)
    cleanest = min(cloud_region_intensities().items(), key=lambda kv: kv[1][1] if kv[1][1] > 0 else 1e9)
    (provider, region), _ = cleanest
    assert low_carbon_alternatives(1.0, MeteringConfig(cloud_provider=provider, cloud_region=region)) == []


def test_every_aws_and_azure_region_finds_its_own_grid_not_the_national_average() -> None:
    from advisor.metering.regions import _location_intensity, region_locations

    # a misspelt state, province or zone would fall back silently to the country's figure
    for (provider, region), (_, country, zone) in region_locations().items():
        if zone is not None:
            assert _location_intensity(country, zone)[0] != _location_intensity(country, None)[0], (provider, region)


# -- messages name commands that exist --------------------------------------------------------------


def test_commands_quoted_in_messages_docs_and_configs_use_real_flags() -> None:
    from advisor.cli import _parser
    from distill.cli import build_parser

    flags = {"advise": set(_flags_of(_parser())), "distill": set(_flags_of(build_parser()))}
    files = [*PACKAGE_FILES, ROOT / "advisor" / "config" / "settings.py", ROOT / "distill" / "config.py", *DOC_PAGES]
    files += [*(ROOT / "configs").glob("*.yaml"), ROOT / "quickstart.py"]
    quoted = [
        (path.name, m.group(1), m.group(2).split())
        for path in files
        for m in re.finditer(r"`(advise|distill) ([^`]+)`", path.read_text(encoding="utf-8"))
    ]
    assert len(quoted) >= 5  # the scan finds the quoted commands at all
    # every word after the command is a flag of that command or a flag's value ("advise datasets" was not)
    wrong = [(name, tool, words) for name, tool, words in quoted if not words[0].startswith("--")]
    wrong += [
        (name, tool, w) for name, tool, words in quoted for w in words if w.startswith("--") and w not in flags[tool]
    ]
    assert wrong == []


# -- the docs' commands parse, their Python imports and keywords exist, their links resolve --------------


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _command_lines(text: str) -> list[str]:
    """Shell lines of ``bash`` blocks (continuations joined, comments dropped) and inline `advise ...`."""
    lines = []
    for block in _code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    # inline commands with a flag and its value (a lone `advise --from` names a flag, checked above)
    inline = re.finditer(r"`(?:advise|distill|python3 quickstart\.py advise) ([^`]+)`", text)
    lines += [m.group(0).strip("`") for m in inline if len(m.group(1).split()) >= 2]
    return lines


def _tool_argv(line: str) -> tuple[str, list[str]] | None:
    """("advise" or "distill", its arguments) when the line runs one of them, else None."""
    import shlex

    words = shlex.split(line)
    words = [w for w in words if "=" not in w or w.startswith("-") or words.index(w) > 0]  # VAR=x before a command
    for i, w in enumerate(words):
        if w in ("advise", "distill") and (i == 0 or words[i - 1] in ("|", "&&")):
            return w, words[i + 1 :]
        if w in ("advisor.cli", "distill.cli") and i > 0 and words[i - 1] == "-m":
            return w.split(".")[0].replace("advisor", "advise"), words[i + 1 :]
        if w == "quickstart.py" and words[i + 1 : i + 2] == ["advise"]:
            return "advise", words[i + 2 :]
    return None


def test_every_advise_and_distill_command_the_pages_show_parses_and_sets_real_keys() -> None:
    from advisor.cli import _parser
    from advisor.config.layering import parse_override
    from distill.cli import build_parser

    parsers = {"advise": _parser, "distill": build_parser}
    seen, wrong = 0, []
    for page in DOC_PAGES:
        for line in _command_lines(page.read_text(encoding="utf-8")):
            found = _tool_argv(line)
            if found is None:
                continue
            tool, argv = found
            seen += 1
            try:
                args = parsers[tool]().parse_args(argv)
            except SystemExit:
                wrong.append(f"{page.name}: {line}")
                continue
            for override in args.overrides:
                keys, _ = parse_override(override)
                if not _key_exists(keys):
                    wrong.append(f"{page.name}: {line} (no key {'.'.join(keys)})")
    assert seen >= 15  # the scan finds the commands at all
    assert wrong == []


def test_python_examples_import_real_names_and_pass_real_keywords() -> None:
    import importlib
    import inspect

    checked = 0
    for page in DOC_PAGES:
        for block in _code_blocks(page.read_text(encoding="utf-8"), "python"):
            tree = ast.parse(block)
            names: dict[str, Any] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{page.name}: {node.module}.{alias.name}"
                        names[alias.asname or alias.name] = getattr(module, alias.name)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
                    params = inspect.signature(names[node.func.id]).parameters
                    unknown = [k.arg for k in node.keywords if k.arg not in params]
                    assert unknown == [], f"{page.name}: {node.func.id}({unknown})"
                    checked += 1
    assert checked >= 3


#: the signatures docs/python-api.md writes out, by function
_API = {
    "select_model": "advisor.select_model",
    "advise": "advisor.advise.advise",
    "build_distill_config": "distill.build_distill_config",
    "distill": "distill.distill",
    "distill_models": "distill.distill_models",
    "load_int8": "distill.compress.load_int8",
}


def test_python_api_page_lists_each_functions_parameters_in_order() -> None:
    import importlib
    import inspect

    page = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    for name, dotted in _API.items():
        module, attr = dotted.rsplit(".", 1)
        real = list(inspect.signature(getattr(importlib.import_module(module), attr)).parameters)
        m = re.search(rf"`(?:[\w.]+\.)?{name}\(([^`]*?)\)(?: -> [^`]+)?`", page)
        assert m is not None, f"docs/python-api.md does not write out {name}(...)"
        written = [p.split("=")[0].split(":")[0].strip() for p in m.group(1).split(",")]
        assert [p for p in written if p not in ("*", "")] == real, name


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = _slug(heading)
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


#: files a page links to that are added with their feature; empty: every link must resolve
PENDING_FILES: set[str] = set()


def test_every_relative_link_in_the_pages_resolves_to_a_file_and_anchor() -> None:
    broken, links = [], 0
    for page in DOC_PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            links += 1
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            name = f"{page.relative_to(ROOT)} -> {target}"
            if not dest.exists():
                if str(dest.relative_to(ROOT)) not in PENDING_FILES:
                    broken.append(name)
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{name} (no such heading)")
    assert links >= 50  # the scan finds links at all
    assert broken == []


def test_configuration_page_lists_every_key_with_its_default_from_the_dataclasses() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    # stale tables: run `PYTHONPATH=. python docs/config_reference.py`
    assert reference.generated_block(page) == reference.render()
    assert "| `train.eval_rows` | `64` |" in page and "| `distill.alpha` | `0.5` |" in page


def test_every_cli_flag_is_documented_in_the_readme_or_docs() -> None:
    from advisor.cli import _parser
    from distill.cli import build_parser

    pages = [p for p in DOC_PAGES if "benchmarks" not in p.parts and p.name != "BENCHMARKS.md"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    undocumented = [
        f"{tool} {flag}"
        for tool, parser in (("advise", _parser()), ("distill", build_parser()))
        for flag in _flags_of(parser)
        if flag != "--help" and not re.search(re.escape(flag) + r"(?![\w-])", text)
    ]
    assert undocumented == []
