"""Certificate facts shared by `tls_file` and `tls_endpoint`.

Turns a `cryptography` certificate into a small, label-safe `CertFacts` record: subject
and issuer common names, serial, SHA-256 fingerprint, key type and size, signature
algorithm (ML-DSA and other post-quantum algorithms recognised by OID, even where the
local library cannot use the key) and validity dates.

`cryptography` parses some fields lazily and rejects a bad certificate with one of many
exception types (`ValueError`, `InvalidVersion`, `DuplicateExtension`,
`UnsupportedGeneralNameType`, `UnsupportedAlgorithm`...), at load time or when a field
is first read. Every such rejection becomes `UnparsableCertificate` with a bounded
`CertProblem`, so one bad certificate never stops the others from being judged.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.x509.oid import NameOID

__all__ = [
    "CERT_PROBLEM_TEXT",
    "CertFacts",
    "CertProblem",
    "UnparsableCertificate",
    "cert_facts",
    "is_post_quantum_group",
    "label_text",
    "load_der",
    "parsed_der",
    "serial_text",
]

# Signature / public key algorithm OIDs of the NIST post-quantum standards (FIPS 204/205).
_PQ_OIDS: dict[str, str] = {
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
    "2.16.840.1.101.3.4.3.32": "HashML-DSA-44-SHA512",
    "2.16.840.1.101.3.4.3.33": "HashML-DSA-65-SHA512",
    "2.16.840.1.101.3.4.3.34": "HashML-DSA-87-SHA512",
    **{f"2.16.840.1.101.3.4.3.{n}": f"SLH-DSA-{n}" for n in range(20, 32)},
}

_KEY_OIDS: dict[str, str] = {
    "1.2.840.113549.1.1.1": "rsa",
    "1.2.840.113549.1.1.10": "rsa-pss",
    "1.2.840.10045.2.1": "ec",
    "1.3.101.112": "ed25519",
    "1.3.101.113": "ed448",
    "1.2.840.10040.4.1": "dsa",
}

_LABEL_MAX = 128


def label_text(value: str) -> str:
    """A value safe for a metric label: printable, at most 128 characters."""
    if len(value) <= _LABEL_MAX and value.isprintable():
        return value
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value)
    return cleaned[:_LABEL_MAX]


class CertProblem(StrEnum):
    """Why `cryptography` rejected a certificate (a metric label: bounded)."""

    INVALID_VERSION = "invalid_version"
    DUPLICATE_EXTENSION = "duplicate_extension"
    UNSUPPORTED_NAME_TYPE = "unsupported_name_type"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    MALFORMED = "malformed"


CERT_PROBLEM_TEXT: dict[CertProblem, str] = {
    CertProblem.INVALID_VERSION: "invalid X.509 version",
    CertProblem.DUPLICATE_EXTENSION: "an extension appears twice",
    CertProblem.UNSUPPORTED_NAME_TYPE: "a general name type the parser does not support",
    CertProblem.UNSUPPORTED_ALGORITHM: "an algorithm the parser does not support",
    CertProblem.MALFORMED: "malformed encoding",
}

_PROBLEM_BY_EXCEPTION: dict[type[Exception], CertProblem] = {
    x509.InvalidVersion: CertProblem.INVALID_VERSION,
    x509.DuplicateExtension: CertProblem.DUPLICATE_EXTENSION,
    x509.UnsupportedGeneralNameType: CertProblem.UNSUPPORTED_NAME_TYPE,
    UnsupportedAlgorithm: CertProblem.UNSUPPORTED_ALGORITHM,
}


class UnparsableCertificate(Exception):
    """`cryptography` rejected the certificate, at load time or on a lazily read field."""

    def __init__(self, problem: CertProblem) -> None:
        super().__init__(CERT_PROBLEM_TEXT[problem])
        self.problem = problem

    @classmethod
    def from_error(cls, exc: Exception) -> UnparsableCertificate:
        """Classify whatever `cryptography` raised."""
        for kind, problem in _PROBLEM_BY_EXCEPTION.items():
            if isinstance(exc, kind):
                return cls(problem)
        return cls(CertProblem.MALFORMED)


def serial_text(serial: int) -> str:
    """Lower-case hex without leading zeros; a negative serial is `-` and its magnitude.

    RFC 5280 requires positive serials, but some certificates in the wild carry zero or
    a negative number (DER INTEGER with the top bit set). `-4316693ed` is the serial
    -18008675309, as `openssl x509 -serial` shows it (upper-case, padded to whole bytes).
    """
    return format(serial, "x")


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What is exported about one certificate."""

    subject_cn: str  # the subject CN, or the first subjectAltName when there is no CN
    issuer_cn: str
    serial: str
    key_type: str
    key_size: str
    signature_algorithm: str
    not_before: float
    not_after: float
    subject: bytes  # DER of the subject name, for superseded-certificate grouping
    fingerprint: str  # SHA-256 of the DER certificate, lower-case hex: its identity

    @property
    def post_quantum_signature(self) -> bool:
        """Signed with ML-DSA / SLH-DSA."""
        name = self.signature_algorithm.upper()
        return "ML-DSA" in name or "SLH-DSA" in name


def _cn(name: x509.Name) -> str:
    try:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ""
    if not attrs:
        return ""
    value = attrs[0].value
    return label_text(value if isinstance(value, str) else value.decode("utf-8", "replace"))


def _first_san(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    names = san.get_values_for_type(x509.DNSName)
    if names:
        return label_text(names[0])
    addresses = san.get_values_for_type(x509.IPAddress)
    return str(addresses[0]) if addresses else ""


def _signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    known = _PQ_OIDS.get(oid.dotted_string)
    if known:
        return known
    name = getattr(oid, "_name", None)
    if isinstance(name, str) and name and not name.startswith("Unknown"):
        return label_text(name)
    return oid.dotted_string


def _key(cert: x509.Certificate) -> tuple[str, str]:
    oid = cert.public_key_algorithm_oid.dotted_string
    pq = _PQ_OIDS.get(oid)
    if pq:
        return pq.lower(), ""
    key_type = _KEY_OIDS.get(oid, oid)
    try:
        key = cert.public_key()
    except Exception:  # an algorithm the local library cannot load: type is enough
        return key_type, ""
    size = getattr(key, "key_size", None)
    if size is None:
        curve = getattr(key, "curve", None)
        size = getattr(curve, "key_size", None)
    if key_type == "ed25519":
        size = 256
    elif key_type == "ed448":
        size = 456
    if key_type == "ec":
        curve = getattr(key, "curve", None)
        if curve is not None and size is None:
            size = curve.key_size
    return key_type, "" if size is None else str(size)


def cert_facts(cert: x509.Certificate, der: bytes | None = None) -> CertFacts:
    """The exported facts of `cert`; `der` is its encoding when the caller has it.

    The whole certificate is read, extensions included: a certificate `cryptography`
    rejects anywhere raises `UnparsableCertificate`. Only the public key may be of an
    algorithm the local library cannot load (its type is known from the OID).
    """
    try:
        return _facts(cert, der)
    except Exception as exc:  # cryptography raises many unrelated types
        raise UnparsableCertificate.from_error(exc) from None


def _facts(cert: x509.Certificate, der: bytes | None) -> CertFacts:
    cert.extensions  # noqa: B018 - parses every extension: a bad one is a bad certificate
    key_type, key_size = _key(cert)
    subject = cert.subject
    return CertFacts(
        subject_cn=_cn(subject) or _first_san(cert),
        issuer_cn=_cn(cert.issuer),
        serial=serial_text(cert.serial_number),
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=_signature_name(cert),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        subject=subject.public_bytes(),
        fingerprint=(hashlib.sha256(der).hexdigest() if der is not None
                     else cert.fingerprint(SHA256()).hex()),
    )


def load_der(der: bytes) -> tuple[x509.Certificate, CertFacts]:
    """Parse one DER certificate completely; `UnparsableCertificate` when rejected."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as exc:  # InvalidVersion, ValueError, ...
        raise UnparsableCertificate.from_error(exc) from None
    return cert, cert_facts(cert, der)


@functools.lru_cache(maxsize=4096)
def parsed_der(der: bytes) -> tuple[x509.Certificate, CertFacts]:
    """`load_der`, remembered: an endpoint shows the same certificate every run.

    A rejected certificate is not remembered (exceptions are not cached) and is parsed
    again on the next run.
    """
    return load_der(der)


def is_post_quantum_group(group: str) -> bool:
    """A key-exchange group that includes ML-KEM (hybrid or pure) or its Kyber drafts."""
    name = group.upper()
    return "MLKEM" in name or "ML-KEM" in name or "KYBER" in name
