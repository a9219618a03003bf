from __future__ import annotations

from pathlib import Path

import pytest

from advisor.config.layering import parse_override
from advisor.config.settings import CONFIG_DIR, Config, build_config
from advisor.errors import ConfigError

SHIPPED = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.parent == CONFIG_DIR)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_advisor_yaml_loads(path: Path) -> None:
    if path.name == "distill.yaml":
        pytest.skip("read by distill's own config")
    build_config([path])


def test_default_yaml_documents_the_built_in_defaults() -> None:
    assert build_config([CONFIG_DIR / "default.yaml"]) == Config()


def test_overrides_win_over_files_and_parse_yaml_scalars(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  learning_rate: 1.0e-3\n  epochs: 2\n")
    c = build_config([f], ["train.learning_rate=3e-4", "ladder.rungs=[minilm-l6]", "train.freeze_embeddings=false"])
    assert c.train.learning_rate == pytest.approx(3e-4)
    assert c.train.epochs == 2.0 and isinstance(c.train.epochs, float)
    assert c.ladder.rungs == ["minilm-l6"]
    assert c.train.freeze_embeddings is False


def test_every_problem_is_reported_at_once_with_the_closest_key() -> None:
    with pytest.raises(ConfigError) as err:
        build_config(
            overrides=[
                "train.learnin_rate=1e-4",
                "train.batch_size=big",
                "criteria.floor=1.2",
                "criteria.budget_kwh=-1",
                "tuning.probe_factor=1",
            ]
        )
    msg = str(err.value)
    assert "tuning.probe_factor must be above 1" in msg
    assert "Unknown config key train.learnin_rate. Did you mean train.learning_rate?" in msg
    assert "The config key train.batch_size must be int. Got 'big' instead." in msg
    assert "The metric floor must be between 0 and 1. Got 1.2 instead." in msg
    assert "budget_kwh must be positive" in msg


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        build_config([f])


def test_yaml_must_be_a_mapping_and_must_exist(tmp_path: Path) -> None:
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        build_config([f])
    with pytest.raises(ConfigError, match="does not exist"):
        build_config([tmp_path / "missing.yaml"])


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    f = tmp_path / "evil.yaml"
    f.write_text("task: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config([f])


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("no-equals-sign")


def test_unsupported_task() -> None:
    with pytest.raises(ConfigError, match="The task must be one of text-classification"):
        build_config(extra={"task": "translation"})
