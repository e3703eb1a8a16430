"""Shared CA fixtures: one fresh CA per test, so no test sees another's files."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from fedlearn.runtime.certs import CAFiles, init_ca


@pytest.fixture
def ca(tmp_path: Path) -> CAFiles:
    return init_ca(tmp_path / "certs")


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())
