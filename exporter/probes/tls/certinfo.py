"""Certificate facts shared by `tls_file` and `tls_endpoint`.

Turns a `cryptography` certificate into a small, label-safe `CertFacts` record: subject
and issuer common names, serial, key type and size, signature algorithm (ML-DSA and
other post-quantum algorithms recognised by OID, even where the local library cannot
use the key) and validity dates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["CertFacts", "cert_facts", "is_post_quantum_group", "label_text", "parsed_der"]

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
    except (x509.ExtensionNotFound, ValueError):
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


def cert_facts(cert: x509.Certificate) -> CertFacts:
    """Extract the exported facts of `cert` (never raises on odd but parsed certs)."""
    key_type, key_size = _key(cert)
    subject = cert.subject
    return CertFacts(
        subject_cn=_cn(subject) or _first_san(cert),
        issuer_cn=_cn(cert.issuer),
        serial=format(cert.serial_number, "x"),
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=_signature_name(cert),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        subject=subject.public_bytes(),
    )


@functools.lru_cache(maxsize=4096)
def parsed_der(der: bytes) -> tuple[x509.Certificate, CertFacts]:
    """Parse a DER certificate once: an endpoint shows the same certificate every run."""
    cert = x509.load_der_x509_certificate(der)
    return cert, cert_facts(cert)


def is_post_quantum_group(group: str) -> bool:
    """A key-exchange group that includes ML-KEM (hybrid or pure) or its Kyber drafts."""
    name = group.upper()
    return "MLKEM" in name or "ML-KEM" in name or "KYBER" in name
