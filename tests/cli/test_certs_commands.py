"""``fedlearn certs`` through typer's runner: exit codes, the files named, the next step printed."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from fedlearn.cli.certs import app
from fedlearn.core.errors import ConfigError
from tests.runtime.certs.conftest import load_cert

runner = CliRunner()


def _invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _config_error(result: Result) -> str:
    """The message of the ConfigError the command failed with, as the CLI reports it: one line, exit code 2."""
    assert result.exit_code == ConfigError.exit_code, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_init_writes_ca_and_prints_next_step(tmp_path: Path) -> None:
    result = _invoke("init", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'ca.pem'}" in result.output
    assert f"wrote {tmp_path / 'ca.key'}" in result.output
    assert f"fedlearn certs issue {tmp_path} coordinator" in result.output


def test_init_twice_fails_with_config_error(tmp_path: Path) -> None:
    _invoke("init", tmp_path)
    result = _invoke("init", tmp_path)
    assert "--force" in _config_error(result)


def test_init_force_replaces_and_warns_to_reissue(tmp_path: Path) -> None:
    _invoke("init", tmp_path)
    result = _invoke("init", tmp_path, "--force", "--days", 30)
    assert result.exit_code == 0, result.output
    assert "re-issue every certificate" in result.output


def test_issue_server_prints_coordinator_and_node_flags(tmp_path: Path) -> None:
    _invoke("init", tmp_path)
    result = _invoke("issue", tmp_path, "coordinator")
    assert result.exit_code == 0, result.output
    assert "server certificate for localhost, 127.0.0.1" in result.output
    assert f"--tls-cert {tmp_path / 'coordinator.pem'} --tls-key {tmp_path / 'coordinator.key'}" in result.output
    assert f"--tls-client-ca {tmp_path / 'ca.pem'}" in result.output
    assert f"--tls-ca {tmp_path / 'ca.pem'}" in result.output


def test_issue_repeated_host_options_all_land_in_san(tmp_path: Path) -> None:
    _invoke("init", tmp_path)
    result = _invoke("issue", tmp_path, "coordinator", "--host", "coord.example.org", "--host", "10.0.0.5")
    san = load_cert(tmp_path / "coordinator.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert result.exit_code == 0, result.output
    assert san.value.get_values_for_type(x509.DNSName) == ["coord.example.org"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_issue_client_writes_node_cert_and_prints_node_flags(tmp_path: Path) -> None:
    _invoke("init", tmp_path)
    result = _invoke("issue", tmp_path, "clinic-a", "--client")
    cert = load_cert(tmp_path / "clinic-a.pem")
    assert result.exit_code == 0, result.output
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "clinic-a"
    assert f"--tls-cert {tmp_path / 'clinic-a.pem'} --tls-key {tmp_path / 'clinic-a.key'}" in result.output
    assert f"coordinator: --tls-client-ca {tmp_path / 'ca.pem'}" in result.output


def test_issue_without_ca_fails_with_hint_to_init(tmp_path: Path) -> None:
    result = _invoke("issue", tmp_path, "coordinator")
    assert "fedlearn certs init" in _config_error(result)


def test_issue_bad_host_fails_with_config_error(tmp_path: Path) -> None:
    _invoke("init", tmp_path)
    result = _invoke("issue", tmp_path, "coordinator", "--host", "not a host")
    _config_error(result)
    assert not (tmp_path / "coordinator.key").exists()
