"""Secrets the CLI writes to files: readable by their owner only, and never half written.

A shell recipe such as ``fedlearn nodes add NAME > NAME.token`` truncates the file before the
command runs, so running it a second time (the node is registered already, and the command
fails) left an empty token file without a word. Writing the file from the command instead lets
it refuse before anything is changed, and write the token whole or not at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fedlearn.core.errors import ConfigError


def refuse_to_overwrite(path: Path, name: str) -> None:
    """Refuse, before anything is registered, a token file that cannot be written or holds a token already."""
    if not path.absolute().parent.is_dir():
        raise ConfigError(f"cannot write the token to {path}: {path.absolute().parent} is not a directory")
    if path.exists() and path.stat().st_size > 0:
        raise ConfigError(
            f"{path} already holds a token, so node {name!r} is probably registered already (`fedlearn nodes "
            f"list`); keep it, or issue a new one with `fedlearn nodes rotate {name} --token-file {path}`"
        )


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing it in one step (a crash leaves the old file)."""
    directory = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
