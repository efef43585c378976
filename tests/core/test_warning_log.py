"""Python warnings are JSON log records: stderr stays one JSON object per line, with the
warning's category, and an identical warning repeated many times is logged once."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.warning_log import WarningLog
from tests.core.conftest import EXE

SERIAL = 0x7A11CE5EED


def negative_serial_cert_pem() -> bytes:
    """A certificate whose serial number is negative: `cryptography` parses it with a
    CryptographyDeprecationWarning (RFC 5280 forbids it; such certificates exist)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "negative-serial.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(SERIAL)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .sign(key, hashes.SHA256()))
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    encoded = bytes([0x02, 0x05]) + SERIAL.to_bytes(5, "big")  # INTEGER, 5 bytes
    at = der.index(encoded)
    der[at + 2] |= 0x80  # the sign bit: the same certificate with a negative serial
    pem = b"".join((b"-----BEGIN CERTIFICATE-----\n",
                    base64.encodebytes(bytes(der)),
                    b"-----END CERTIFICATE-----\n"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x509.load_pem_x509_certificate(pem)
    assert any("serial" in str(w.message) for w in caught), "the fixture no longer warns"
    return pem


def test_check_command_logs_python_warnings_as_json_lines(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for i in range(5):
        (certs / f"odd-{i}.pem").write_bytes(negative_serial_cert_pem())
    config = tmp_path / "readiness.yaml"
    config.write_text(f"""
checks:
  - id: odd-certs
    section: "1.2"
    title: certificates with a negative serial
    severity: warning
    kind: tls_file
    paths: ["{certs}"]
""")
    # `always` is what the filters amount to once any library resets them: without the
    # exporter's own de-duplication, every certificate would print its warnings again.
    env = {"PATH": os.environ["PATH"], "PYTHONWARNINGS": "always"}
    result = subprocess.run([str(EXE), "check", "--config", str(config)], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode in (0, 1), result.stderr
    records = []
    for line in result.stderr.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stderr line is not JSON: {line!r}")
        assert isinstance(record, dict), line
        records.append(record)
    warned = [r for r in records if r.get("category") == "CryptographyDeprecationWarning"]
    assert warned, result.stderr
    for record in warned:
        assert record["logger"] == "py.warnings"
        assert record["level"] == "warning"
        assert "serial" in record["msg"]
        assert re.fullmatch(r"[\w.]+:\d+", record["location"]), record
    distinct = {(r["location"], r["msg"]) for r in warned}
    assert len(warned) == len(distinct), "an identical warning was logged more than once"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "py.warnings"]


def test_identical_warnings_are_logged_once_per_window(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    hook = WarningLog(window=600.0, clock=clock)
    caplog.set_level(logging.WARNING)
    for _ in range(1000):
        hook.show(UserWarning("odd certificate"), UserWarning, "/x/certinfo.py", 150)
    hook.show(DeprecationWarning("other text"), DeprecationWarning, "/x/certinfo.py", 150)
    first = records_of(caplog)
    assert [(r.getMessage(), getattr(r, "category")) for r in first] == [
        ("odd certificate", "UserWarning"), ("other text", "DeprecationWarning")]
    assert getattr(first[0], "location") == "certinfo.py:150"
    assert getattr(first[0], "repeats_not_logged") == 0

    clock.now += 601
    caplog.clear()
    hook.show(UserWarning("odd certificate"), UserWarning, "/x/certinfo.py", 150)
    again = records_of(caplog)
    assert len(again) == 1
    assert getattr(again[0], "repeats_not_logged") == 999


def test_memory_of_distinct_warnings_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    hook = WarningLog(max_distinct=10, clock=FakeClock())
    caplog.set_level(logging.WARNING)
    for i in range(100):
        hook.show(UserWarning(f"text {i}"), UserWarning, "f.py", i)
    assert len(records_of(caplog)) == 100
    assert len(hook._seen) == 10


def test_setup_routes_warnings_through_the_logger(caplog: pytest.LogCaptureFixture) -> None:
    from exporter import jsonlog

    previous = warnings.showwarning
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        jsonlog.setup("info")
        root.addHandler(caplog.handler)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("routed", RuntimeWarning, stacklevel=1)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        warnings.showwarning = previous
    routed: list[Any] = [r for r in records_of(caplog) if r.getMessage() == "routed"]
    assert len(routed) == 1 and getattr(routed[0], "category") == "RuntimeWarning"
