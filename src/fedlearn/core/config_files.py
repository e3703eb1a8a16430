"""The one way a TOML file or text becomes a validated config, with errors in one line.

Run configs (from a file or the HTTP API) and node configs are all read here, so each gives the
same messages for the same mistakes: a missing file, broken TOML, an unknown key, a value of the
wrong type. The first problem is reported, named by where it came from and which key, followed by
how many more there are, because a config author fixes one line at a time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from fedlearn.core.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def read_toml(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """The parsed contents of the TOML file at ``path``; ``what`` names it in the error for a missing file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    return parse_toml(text, source=str(path))


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """The parsed TOML ``text``, or a :class:`ConfigError` naming ``source`` and where it broke."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None


def validate(model: type[Model], data: Mapping[str, Any], *, source: str) -> Model:
    """``data`` validated as ``model``; any problem becomes one :class:`ConfigError` line."""
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(one_line_error(exc, source)) from None


def one_line_error(exc: PydanticValidationError, source: str) -> str:
    """One line for a config validation failure: the first problem and how many more there are."""
    errors = exc.errors()
    first = errors[0]
    location = _location(first["loc"])
    if first["type"] == "extra_forbidden":
        message = f"{source}: unknown key {location}"
    else:
        message = f"{source}: {location}: {first['msg']}; got {first.get('input')!r}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return message


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) == 1:
        return f"[{parts[0]}]"
    return f"[{parts[0]}] {'.'.join(parts[1:])}"
