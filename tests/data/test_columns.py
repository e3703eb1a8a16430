"""Column declarations: every accepted form means the same column, and a bad one is refused naming it."""

from __future__ import annotations

import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.data.columns import declared_columns
from fedlearn.data.schema import Column

SMOKER = Column(name="smoker", type="category", categories=("never", "current"))


@pytest.mark.parametrize(
    "declaration",
    [
        {"smoker": ["never", "current"]},
        {"smoker": {"type": "category", "categories": ["never", "current"]}},
        {"smoker": SMOKER},
        [SMOKER],
    ],
)
def test_every_form_of_a_category_declaration_gives_the_same_column(declaration: object) -> None:
    assert declared_columns(declaration) == {"smoker": SMOKER}  # type: ignore[arg-type]


def test_a_type_name_declares_that_type() -> None:
    assert declared_columns({"age": "int"}) == {"age": Column(name="age", type="int")}


@pytest.mark.parametrize(
    ("declaration", "words"),
    [
        ({"age": "decimal"}, "type must be one of"),
        ({"smoker": {"type": "category"}}, "needs its list of categories"),
        ({"smoker": ["never", "never"]}, "categories must be distinct"),
        ({"smoker": 3}, "`columns.smoker` must be a type name, a list of categories or a table"),
        ({"smoker": {"type": "category", "categories": ["a"], "order": 1}}, r"unknown key\(s\) \['order'\]"),
        ("smoker", "must be a list of Column or a mapping"),
    ],
)
def test_a_bad_declaration_is_refused_naming_the_problem(declaration: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        declared_columns(declaration)  # type: ignore[arg-type]
