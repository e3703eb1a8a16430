"""The CLI package's public names are a promise too: the app to mount and the console entry point."""

from __future__ import annotations

import fedlearn.cli


def test_cli_api_is_pinned() -> None:
    assert sorted(fedlearn.cli.__all__) == ["app", "main"]
