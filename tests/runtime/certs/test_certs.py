"""``init_ca`` and ``issue``: the extensions gRPC relies on, file modes, and refusals."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlearn.core.errors import ConfigError
from fedlearn.runtime.certs import CAFiles, init_ca, issue
from tests.runtime.certs.conftest import load_cert


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_init_ca_is_self_signed_p256_with_ca_extensions(ca: CAFiles) -> None:
    cert = load_cert(ca.cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    assert usage.key_cert_sign and usage.crl_sign
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "fedlearn CA"


def test_init_ca_key_is_mode_0600_and_no_temp_files_remain(ca: CAFiles) -> None:
    assert _mode(ca.key) == 0o600
    assert sorted(p.name for p in ca.cert.parent.iterdir()) == ["ca.key", "ca.pem"]


def test_init_ca_refuses_to_overwrite_existing_ca(ca: CAFiles) -> None:
    before = ca.key.read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a CA .*--force"):
        init_ca(ca.cert.parent)
    assert ca.key.read_bytes() == before


def test_init_ca_force_replaces_the_key(ca: CAFiles) -> None:
    before = ca.key.read_bytes()
    init_ca(ca.cert.parent, force=True)
    assert ca.key.read_bytes() != before
    assert _mode(ca.key) == 0o600


@pytest.mark.parametrize("days", [0, -5])
def test_init_ca_nonpositive_days_raises_config_error(tmp_path: Path, days: int) -> None:
    with pytest.raises(ConfigError, match="`days` must be"):
        init_ca(tmp_path, days=days)


def test_issue_server_default_san_is_localhost_and_loopback(ca: CAFiles) -> None:
    files = issue(ca.cert.parent, "coordinator")
    san = _san(load_cert(files.cert))
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert files.hosts == ("localhost", "127.0.0.1")


def test_issue_server_san_holds_every_given_dns_name_and_ip(ca: CAFiles) -> None:
    files = issue(ca.cert.parent, "coordinator", hosts=["coord.example.org", "10.0.0.5", "::1"])
    san = _san(load_cert(files.cert))
    assert san.get_values_for_type(x509.DNSName) == ["coord.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("::1")]


def test_issue_server_cert_is_signed_leaf_for_server_auth(ca: CAFiles) -> None:
    cert = load_cert(issue(ca.cert.parent, "coordinator").cert)
    ca_cert = load_cert(ca.cert)
    cert.verify_directly_issued_by(ca_cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert aki.key_identifier == ca_ski.digest
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_issue_client_cert_names_node_and_is_for_client_auth(ca: CAFiles) -> None:
    files = issue(ca.cert.parent, "clinic-a", kind="client")
    cert = load_cert(files.cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "clinic-a"
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert files.hosts == ()


@pytest.mark.parametrize("kind", ["server", "client"])
def test_issue_key_is_mode_0600(ca: CAFiles, kind: str) -> None:
    files = issue(ca.cert.parent, "leaf", kind=kind)  # type: ignore[arg-type]
    assert _mode(files.key) == 0o600


def test_issue_without_ca_raises_config_error_pointing_to_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no CA in .*run `fedlearn certs init"):
        issue(tmp_path, "coordinator")


@pytest.mark.parametrize("host", ["bad host", "10.0.0.300", "-lead.example.org", "under_score.example", "", "a..b"])
def test_issue_bad_host_raises_config_error(ca: CAFiles, host: str) -> None:
    with pytest.raises(ConfigError, match="neither an IP address nor a DNS name"):
        issue(ca.cert.parent, "coordinator", hosts=[host])


@pytest.mark.parametrize("name", ["../evil", "ca", "CA", "", ".hidden", "a" * 65, "node a"])
def test_issue_bad_name_raises_config_error(ca: CAFiles, name: str) -> None:
    with pytest.raises(ConfigError, match="certificate `name` must be"):
        issue(ca.cert.parent, name)


def test_issue_hosts_as_one_string_raises_config_error(ca: CAFiles) -> None:
    with pytest.raises(ConfigError, match="`hosts` must be a sequence"):
        issue(ca.cert.parent, "coordinator", hosts="localhost")


def test_issue_client_with_hosts_raises_config_error(ca: CAFiles) -> None:
    with pytest.raises(ConfigError, match="hosts apply only to server certificates"):
        issue(ca.cert.parent, "clinic-a", kind="client", hosts=["clinic-a.example.org"])


def test_issue_unknown_kind_raises_config_error(ca: CAFiles) -> None:
    with pytest.raises(ConfigError, match="`kind` must be one of server, client"):
        issue(ca.cert.parent, "leaf", kind="peer")  # type: ignore[arg-type]


def test_issue_refuses_to_overwrite_existing_pair_unless_forced(ca: CAFiles) -> None:
    first = issue(ca.cert.parent, "coordinator")
    before = first.key.read_bytes()
    with pytest.raises(ConfigError, match=r"already holds coordinator\.pem, coordinator\.key"):
        issue(ca.cert.parent, "coordinator")
    issue(ca.cert.parent, "coordinator", force=True)
    assert first.key.read_bytes() != before


def test_issue_never_outlives_the_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path, days=30)
    files = issue(tmp_path, "coordinator", days=825)
    assert files.not_after == ca.not_after
    assert files.not_after < dt.datetime.now(dt.UTC) + dt.timedelta(days=31)


def test_issue_with_key_from_another_ca_raises_config_error(ca: CAFiles, tmp_path: Path) -> None:
    other = init_ca(tmp_path / "other")
    shutil.copyfile(other.key, ca.key)
    with pytest.raises(ConfigError, match="does not belong to"):
        issue(ca.cert.parent, "coordinator")


def test_issue_with_garbage_ca_cert_raises_config_error(ca: CAFiles) -> None:
    ca.cert.write_text("not a certificate")
    with pytest.raises(ConfigError, match="is not a PEM certificate"):
        issue(ca.cert.parent, "coordinator")
