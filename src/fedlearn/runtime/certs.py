"""A small certificate authority for one deployment: the files :mod:`fedlearn.runtime.tls` loads.

A deployment needs one CA, one server certificate for the coordinator and, for mutual TLS, one
client certificate per node. Running a real PKI for that is overkill, and ``openssl`` one-liners
get the extensions wrong in ways gRPC only reports as a failed handshake, so this module makes
exactly what gRPC (BoringSSL) accepts:

* the CA is ECDSA P-256, self-signed, ``CA:TRUE, pathlen:0`` (it signs leaves, never other CAs);
* a server certificate names every address nodes dial in its SubjectAlternativeName, because
  gRPC checks the SAN and ignores the common name;
* a client certificate carries the node's name as its common name, so logs and audits can say
  which node connected.

Every key is written with mode 0600 and atomically, so a crash never leaves a half-written key
that a later run would trust. ``ca.key`` stays on the machine that issues certificates; only
``ca.pem`` travels.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlearn.core.errors import ConfigError

Kind = Literal["server", "client"]
KINDS: tuple[Kind, ...] = get_args(Kind)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")

# Backdating absorbs clock skew between the issuing machine and the ones that verify.
_BACKDATE = dt.timedelta(minutes=5)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_CN = 64  # X.509 upper bound on a common name


@dataclass(frozen=True, slots=True, kw_only=True)
class CAFiles:
    """Where :func:`init_ca` wrote the CA, and until when it is valid."""

    cert: Path
    key: Path
    not_after: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CertFiles:
    """Where :func:`issue` wrote a certificate and its key, and what it says."""

    name: str
    kind: Kind
    cert: Path
    key: Path
    ca: Path
    hosts: tuple[str, ...]
    not_after: dt.datetime


def init_ca(
    directory: str | Path, *, common_name: str = "fedlearn CA", days: int = 3650, force: bool = False
) -> CAFiles:
    """Create a self-signed CA in ``directory`` (made if missing) as ``ca.pem`` and ``ca.key``.

    An existing CA is kept unless ``force``: replacing it silently would make every certificate
    already issued from it untrusted.
    """
    root = Path(directory)
    _check_days(days)
    if not common_name.strip() or len(common_name) > _MAX_CN:
        raise ConfigError(f"`common_name` must be 1 to {_MAX_CN} characters; got {common_name!r}")
    cert_path, key_path = root / CA_CERT, root / CA_KEY
    existing = [p.name for p in (cert_path, key_path) if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"{root} already holds a CA ({', '.join(existing)}); keep it and run `fedlearn certs issue`, "
            "or pass --force to replace it (certificates issued by the old CA will stop being trusted)"
        )

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _mkdir(root)
    _write_atomic(key_path, _key_pem(key), mode=0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return CAFiles(cert=cert_path, key=key_path, not_after=cert.not_valid_after_utc)


def issue(
    directory: str | Path,
    name: str,
    *,
    hosts: Iterable[str] = (),
    kind: Kind = "server",
    days: int = 825,
    force: bool = False,
) -> CertFiles:
    """Issue ``<name>.pem`` and ``<name>.key`` in ``directory``, signed by the CA kept there.

    A server certificate covers ``hosts`` (DNS names or IP addresses; ``localhost`` and
    ``127.0.0.1`` when empty). A client certificate names its node by ``name`` and takes no hosts.
    The certificate never outlives its CA: ``days`` is cut short at the CA's expiry, which
    ``not_after`` reports. An existing pair is kept unless ``force``, so a typo cannot replace
    a key already deployed on a node.
    """
    root = Path(directory)
    if kind not in KINDS:
        raise ConfigError(f"`kind` must be one of {', '.join(KINDS)}; got {kind!r}")
    if not _NAME.fullmatch(name) or name.lower() == "ca":
        raise ConfigError(
            "certificate `name` must be 1 to 64 letters, digits, '.', '_' or '-', start with a letter or digit "
            f"and not be 'ca'; got {name!r}"
        )
    _check_days(days)
    if isinstance(hosts, str):  # a bare string would otherwise become one host per character
        raise ConfigError(f"`hosts` must be a sequence of host names or addresses; got the string {hosts!r}")
    host_list = tuple(dict.fromkeys(hosts))
    if kind == "client" and host_list:
        raise ConfigError(
            f"hosts apply only to server certificates; client certificate {name!r} is identified by its name, "
            f"so drop the hosts ({', '.join(host_list)}) or issue a server certificate"
        )
    names = [_general_name(h) for h in host_list or (DEFAULT_HOSTS if kind == "server" else ())]
    cert_path, key_path = root / f"{name}.pem", root / f"{name}.key"
    existing = [p.name for p in (cert_path, key_path) if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"{root} already holds {', '.join(existing)}; choose another name or pass --force to replace it"
        )
    ca_cert, ca_key = _load_ca(root)

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_atomic(key_path, _key_pem(key), mode=0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return CertFiles(
        name=name,
        kind=kind,
        cert=cert_path,
        key=key_path,
        ca=root / CA_CERT,
        hosts=tuple(str(n.value) for n in names),
        not_after=cert.not_valid_after_utc,
    )


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"`days` must be a whole number of days, at least 1; got {days!r}")


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """A CA only signs certificates and CRLs; a leaf only signs TLS handshakes (ECDHE)."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    """An IP address or a DNS name for the SAN; anything else is a typo worth stopping on."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if (
        len(host) <= 253
        and all(_DNS_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()  # "10.0.0.300" is a mistyped address, not a host name
    ):
        return x509.DNSName(host)
    raise ConfigError(
        f"host {host!r} is neither an IP address nor a DNS name; pass addresses like 10.0.0.5 or ::1 "
        "and names like coordinator.example.org (letters, digits and '-', labels separated by '.')"
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Point at the CA's own key identifier when it has one, so chain building matches exactly."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(_issuer_public_key(ca_cert))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _issuer_public_key(ca_cert: x509.Certificate) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    public = ca_cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ConfigError("the CA certificate must hold an EC or RSA public key")
    return public


def _load_ca(root: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """Read and sanity-check the CA, so a broken one fails here rather than in a remote handshake."""
    cert_path, key_path = root / CA_CERT, root / CA_KEY
    missing = [p.name for p in (cert_path, key_path) if not p.is_file()]
    if missing:
        raise ConfigError(f"no CA in {root} ({' and '.join(missing)} missing); run `fedlearn certs init {root}` first")
    try:
        ca_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read CA certificate {cert_path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{cert_path} is not a PEM certificate; recreate the CA with `fedlearn certs init`") from None
    try:
        ca_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read CA key {key_path}: {exc.strerror}") from None
    except TypeError:
        raise ConfigError(f"{key_path} is encrypted; fedlearn needs the CA key unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{key_path} is not a PEM private key; recreate the CA with `fedlearn certs init`") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"{key_path} must be an EC or RSA private key; got {type(ca_key).__name__}")
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if ca_key.public_key().public_bytes(*der) != _issuer_public_key(ca_cert).public_bytes(*der):
        raise ConfigError(f"{key_path} does not belong to {cert_path}; restore the matching pair or re-run init")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError(f"{cert_path} is not a CA certificate (no BasicConstraints CA:TRUE)")
    if ca_cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        raise ConfigError(
            f"the CA in {root} expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}; "
            "run `fedlearn certs init --force` and issue new certificates"
        )
    return ca_cert, ca_key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _mkdir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create certificate directory {root}: {exc.strerror}") from None


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Write through a same-directory temp file, so readers see the old file or the whole new one.

    The temp file is created 0600 by :func:`tempfile.mkstemp`, so a key is never readable by
    others, not even for the instant before the rename.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
