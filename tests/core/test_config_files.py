"""The one TOML loader: missing files, broken TOML and invalid values each give one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from fedlearn.core.config_files import parse_toml, read_toml, validate
from fedlearn.core.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rounds: int = 1
    name: str = "run"


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: _Section = _Section()


def test_read_toml_parses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[run]\nrounds = 3\n")

    assert read_toml(path) == {"run": {"rounds": 3}}


def test_read_toml_of_a_missing_file_names_it_and_what_it_should_be(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.toml: no such node config file$"):
        read_toml(tmp_path / "nope.toml", what="node config file")


def test_parse_toml_of_broken_text_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^run config: not valid TOML: "):
        parse_toml("[run\n", source="run config")


def test_validate_reports_an_unknown_key_with_its_section() -> None:
    with pytest.raises(ConfigError, match=r"^f.toml: unknown key \[run\] roudns$"):
        validate(_Document, {"run": {"roudns": 3}}, source="f.toml")


def test_validate_reports_the_first_problem_and_counts_the_rest() -> None:
    with pytest.raises(ConfigError, match=r"^f.toml: \[run\] rounds: .*; got 'x' \(and 1 more problem\(s\)\)$"):
        validate(_Document, {"run": {"rounds": "x", "name": 3}}, source="f.toml")


def test_validate_returns_the_model() -> None:
    assert validate(_Document, {"run": {"rounds": 2}}, source="f.toml").run.rounds == 2
