"""The shell recipes in docs/deployment.md leave secrets readable by their owner only."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.deploy.conftest import ROOT

pytestmark = pytest.mark.slow
GUIDE = ROOT / "docs" / "deployment.md"


def _section_commands(title: str) -> str:
    """The bash block of the guide's section ``title``, as written."""
    section = GUIDE.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no bash block in section {title!r}"
    return match.group(1)


def test_token_recipe_writes_tokens_and_the_store_readable_by_their_owner_only(tmp_path: Path) -> None:
    commands = _section_commands("2. Register the nodes")
    fedlearn = f'fedlearn() {{ "{sys.executable}" -c "from fedlearn.cli import main; main()" "$@"; }}\n'

    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"umask 022\n{fedlearn}{commands}"],
        cwd=tmp_path, env={**os.environ}, check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    secrets = [*sorted(tmp_path.glob("*.token")), tmp_path / "coordinator.db"]
    assert [p.name for p in secrets] == ["node-000.token", "node-001.token", "node-002.token", "coordinator.db"]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in secrets} == {p.name: 0o600 for p in secrets}
    assert all(len(p.read_text().strip()) > 40 for p in secrets[:3])


def test_token_recipe_run_twice_keeps_every_token(tmp_path: Path) -> None:
    commands = _section_commands("2. Register the nodes")
    fedlearn = f'fedlearn() {{ "{sys.executable}" -c "from fedlearn.cli import main; main()" "$@"; }}\n'
    run = ["bash", "-uo", "pipefail", "-c", f"{fedlearn}{commands}"]  # no -e: the second pass refuses each node

    subprocess.run(run, cwd=tmp_path, env={**os.environ}, check=True, capture_output=True, timeout=120)
    first = {p.name: p.read_text() for p in tmp_path.glob("*.token")}
    again = subprocess.run(run, cwd=tmp_path, env={**os.environ}, capture_output=True, text=True, timeout=120)

    assert {p.name: p.read_text() for p in tmp_path.glob("*.token")} == first
    assert all(len(token.strip()) > 40 for token in first.values()) and len(first) == 3
    assert again.stderr.count("already holds a token") == 3
