"""Reading certificate files: PEM (single, bundle, chain), DER and PKCS#12.

Everything here is blocking and meant for a worker thread. A file that cannot be used
yields a `FileResult` with a bounded `problem` instead of an exception; a certificate
that cannot be parsed is listed with its position in the file and a bounded problem,
and the file's other certificates are still read.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from exporter.probes.tls.certinfo import (
    CertFacts,
    CertProblem,
    UnparsableCertificate,
    cert_facts,
)

__all__ = [
    "BadCertificate",
    "FileProblem",
    "FileResult",
    "expand_env",
    "find_files",
    "load_file",
    "parse_bytes",
]


class FileProblem(StrEnum):
    """Why a certificate file could not be used (a metric label: bounded)."""

    MISSING = "missing"
    NOT_REGULAR = "not_regular_file"
    UNREADABLE = "unreadable"
    OVERSIZED = "oversized"
    EMPTY = "empty"
    TRUNCATED = "truncated"
    NOT_CERTIFICATE = "not_certificate"
    NO_CERTIFICATE = "no_certificate"
    PKCS12_UNOPENED = "pkcs12_password_or_malformed"


PROBLEM_TEXT: Mapping[FileProblem, str] = {
    FileProblem.MISSING: "does not exist",
    FileProblem.NOT_REGULAR: "is not a regular file",
    FileProblem.UNREADABLE: "cannot be read",
    FileProblem.OVERSIZED: "is larger than max_file_bytes",
    FileProblem.EMPTY: "is empty",
    FileProblem.TRUNCATED: "is truncated",
    FileProblem.NOT_CERTIFICATE: "is not a certificate (neither PEM, DER nor PKCS#12)",
    FileProblem.NO_CERTIFICATE: "holds no certificate (e.g. a key-only PEM)",
    FileProblem.PKCS12_UNOPENED: "is PKCS#12 that the configured password does not open",
}


@dataclass(frozen=True, slots=True)
class BadCertificate:
    """A certificate of a file that `cryptography` rejected."""

    position: int  # 1-based, among the file's certificates (PEM blocks, PKCS#12 entries)
    problem: CertProblem


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file: its certificates (in file order) or the problem that stopped it."""

    path: str
    certs: tuple[CertFacts, ...] = ()
    problem: FileProblem | None = None
    unparsable: tuple[BadCertificate, ...] = ()


class _Bad(Exception):
    def __init__(self, problem: FileProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PKCS12_SUFFIXES = (".p12", ".pfx")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_ANY = b"-----BEGIN "
# a certificate block, with the RFC 7468 label or the legacy one cryptography also reads
_PEM_CERT_BLOCK = re.compile(rb"-----BEGIN (?:X509 )?CERTIFICATE-----.*?"
                             rb"-----END (?:X509 )?CERTIFICATE-----", re.DOTALL)


def expand_env(pattern: str, environ: Mapping[str, str]) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; `KeyError(VAR)` when unset without default."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name, "")
        if value:
            return value
        if default is not None:
            return default
        raise KeyError(name)

    return _VAR_RE.sub(repl, pattern)


def find_files(patterns: Iterable[str], suffixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Expand files, directories and (recursive `**`) globs.

    Returns (files, missing): explicit paths that do not exist are listed as missing;
    directories contribute their files with one of `suffixes` (recursively); a glob
    that matches nothing contributes nothing.
    """
    files: list[str] = []
    missing: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        norm = os.path.normpath(path)
        if norm not in seen:
            seen.add(norm)
            files.append(norm)

    for pattern in patterns:
        if glob.has_magic(pattern):
            for match in sorted(glob.glob(pattern, recursive=True)):
                if os.path.isdir(match):
                    _walk(match, suffixes, add)
                else:
                    add(match)
        elif os.path.isdir(pattern):
            _walk(pattern, suffixes, add)
        elif os.path.lexists(pattern):
            add(pattern)
        else:
            missing.append(pattern)
    return files, missing


def _walk(root: str, suffixes: tuple[str, ...], add: object) -> None:
    assert callable(add)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(suffixes):
                add(os.path.join(dirpath, name))


def _read(path: str, max_bytes: int) -> bytes:
    try:
        info = os.stat(path)  # follows symlinks: a swapped link is read afresh
    except FileNotFoundError:
        raise _Bad(FileProblem.MISSING) from None
    except OSError:
        raise _Bad(FileProblem.UNREADABLE) from None
    if not stat.S_ISREG(info.st_mode):
        raise _Bad(FileProblem.NOT_REGULAR)
    if info.st_size > max_bytes:
        raise _Bad(FileProblem.OVERSIZED)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise _Bad(FileProblem.MISSING) from None
    except OSError:
        raise _Bad(FileProblem.UNREADABLE) from None
    if len(data) > max_bytes:
        raise _Bad(FileProblem.OVERSIZED)
    return data


def _der_declared_length(data: bytes) -> int | None:
    """Total length a DER SEQUENCE header announces, or None if it is not one."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _looks_pkcs12(data: bytes) -> bool:
    # PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, ... }
    declared = _der_declared_length(data)
    if declared is None:
        return False
    header = 2 + (data[1] & 0x7F if data[1] >= 0x80 else 0)
    return data[header : header + 3] == b"\x02\x01\x03"


Parsed = x509.Certificate | CertProblem
"""One certificate of a file: loaded (its fields are read later) or rejected at load."""


def _load(load: Callable[[bytes], x509.Certificate], blob: bytes) -> Parsed:
    try:
        return load(blob)
    except Exception as exc:  # InvalidVersion, ValueError, ...
        return UnparsableCertificate.from_error(exc).problem


def _parse_pem(data: bytes) -> list[Parsed]:
    if _PEM_CERT not in data:
        raise _Bad(FileProblem.NO_CERTIFICATE)
    if data.count(b"-----BEGIN CERTIFICATE-----") != data.count(b"-----END CERTIFICATE-----"):
        raise _Bad(FileProblem.TRUNCATED)
    with contextlib.suppress(Exception):  # the common case, in one call
        return list(x509.load_pem_x509_certificates(data))
    # one block is bad: load block by block, so that it hides no other
    return [_load(x509.load_pem_x509_certificate, block.group())
            for block in _PEM_CERT_BLOCK.finditer(data)]


def _parse_der(data: bytes) -> list[Parsed]:
    declared = _der_declared_length(data)
    if declared is None:
        raise _Bad(FileProblem.NOT_CERTIFICATE)
    if declared > len(data):
        raise _Bad(FileProblem.TRUNCATED)
    return [_load(x509.load_der_x509_certificate, data)]


def _parse_pkcs12(data: bytes, password: bytes | None) -> list[Parsed]:
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except Exception:  # a wrong password and a bad structure look alike
        raise _Bad(FileProblem.PKCS12_UNOPENED) from None
    certs: list[Parsed] = [bundle.cert.certificate] if bundle.cert is not None else []
    certs.extend(item.certificate for item in bundle.additional_certs)
    return certs


def parse_bytes(data: bytes, path: str, password: bytes | None) -> list[Parsed]:
    """Parse file content by sniffing its format; raises `_Bad` naming the problem."""
    if not data.strip():
        raise _Bad(FileProblem.EMPTY)
    if _PEM_ANY in data[:4096] or _PEM_CERT in data:
        return _parse_pem(data)
    if path.lower().endswith(_PKCS12_SUFFIXES) or _looks_pkcs12(data):
        if _looks_pkcs12(data) and (_der_declared_length(data) or 0) > len(data):
            raise _Bad(FileProblem.TRUNCATED)
        return _parse_pkcs12(data, password)
    return _parse_der(data)


def load_file(path: str, max_bytes: int, password: bytes | None) -> FileResult:
    """Read and parse one file into facts, or a problem."""
    try:
        data = _read(path, max_bytes)
        parsed = parse_bytes(data, path, password)
        if not parsed:
            raise _Bad(FileProblem.NO_CERTIFICATE)
    except _Bad as bad:
        return FileResult(path, problem=bad.problem)
    facts: list[CertFacts] = []
    unparsable: list[BadCertificate] = []
    for position, item in enumerate(parsed, start=1):
        if isinstance(item, CertProblem):
            unparsable.append(BadCertificate(position, item))
            continue
        try:  # fields cryptography reads lazily may still be rejected
            facts.append(cert_facts(item))
        except UnparsableCertificate as exc:
            unparsable.append(BadCertificate(position, exc.problem))
    return FileResult(path, tuple(facts), unparsable=tuple(unparsable))
