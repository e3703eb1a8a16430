"""``fedlearn identity`` on a node's host and ``fedlearn nodes add|identity|identities`` on the coordinator's."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedlearn.cli import app
from fedlearn.runtime.identity import load_registry
from fedlearn.runtime.store import open_store

runner = CliRunner()


def _said(text: str) -> str:
    return " ".join(text.replace("│", " ").split())  # typer draws errors in a wrapped box


def test_identity_prints_the_same_public_key_each_time_and_makes_the_key_once(tmp_path: Path) -> None:
    key = tmp_path / "site.identity.key"

    first = runner.invoke(app, ["identity", str(key)])
    second = runner.invoke(app, ["identity", str(key)])

    assert first.exit_code == second.exit_code == 0
    assert "made a new identity key" in first.stderr and "made" not in second.stderr
    assert first.stdout.strip() == second.stdout.strip() and len(first.stdout.strip()) == 64


def test_an_operator_pins_lists_exports_and_forgets_identity_keys(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'coordinator.db'}"
    public = runner.invoke(app, ["identity", str(tmp_path / "a.key")]).stdout.strip()

    added = runner.invoke(app, ["nodes", "add", "site-a", "--store", store, "--identity-key", public])
    listed = runner.invoke(app, ["nodes", "list", "--store", store])
    exported = runner.invoke(app, ["nodes", "identities", "--store", store, "--out", str(tmp_path / "fed.toml")])
    forgotten = runner.invoke(app, ["nodes", "identity", "site-a", "--store", store, "--forget"])

    assert (added.exit_code, listed.exit_code, exported.exit_code, forgotten.exit_code) == (0, 0, 0, 0)
    assert public[:8] in listed.stdout
    assert load_registry(tmp_path / "fed.toml") == {"site-a": bytes.fromhex(public)}
    with open_store(store) as state:
        assert state.identity_keys() == {}


def test_a_malformed_identity_key_is_refused_with_one_line(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'coordinator.db'}"

    result = runner.invoke(app, ["nodes", "add", "site-a", "--store", store, "--identity-key", "abc"])

    assert result.exit_code != 0
    assert "--identity-key must be 64 hex digits" in _said(result.stderr)
    with open_store(store) as state:
        assert state.list_nodes() == []


def test_exporting_identities_before_any_node_has_one_says_when_they_appear(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'coordinator.db'}"
    runner.invoke(app, ["nodes", "add", "site-a", "--store", store])

    result = runner.invoke(app, ["nodes", "identities", "--store", store])

    assert result.exit_code != 0
    assert "bind one when they first connect" in _said(result.stderr)


def test_identity_needs_either_a_key_or_forget(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'coordinator.db'}"
    runner.invoke(app, ["nodes", "add", "site-a", "--store", store])

    result = runner.invoke(app, ["nodes", "identity", "site-a", "--store", store])

    assert result.exit_code != 0
    assert "give either --key HEX or --forget" in _said(result.stderr)
