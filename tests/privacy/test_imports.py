"""Differential privacy's heavy dependencies load when privacy is accounted or noised, not with fedlearn."""

from __future__ import annotations

import subprocess
import sys


def test_importing_fedlearn_and_its_cli_loads_neither_dp_accounting_nor_scipy_special() -> None:
    # Every node, coordinator and CLI call imports fedlearn; dp-accounting alone took 0.7 s of that.
    code = "import sys, fedlearn, fedlearn.cli; print(sorted({'dp_accounting', 'scipy.special'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_accounting_loads_dp_accounting_when_it_is_first_needed() -> None:
    code = (
        "import sys; from fedlearn.privacy.ledger import Charge, PrivacyLedger; "
        "before = 'dp_accounting' in sys.modules; "
        "PrivacyLedger(delta=1e-5, charges=(Charge(noise_multiplier=1.0),)).epsilon(); "
        "print(before, 'dp_accounting' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
