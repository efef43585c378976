"""Recognise a backup's format from its first bytes: plaintext or an accepted encryption.

Only formats that are positively recognised as encrypted count as encrypted; anything
unrecognised is reported as `unknown`, which does not pass an encryption check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 512
"""How many leading bytes `detect` looks at."""


@dataclass(frozen=True, slots=True)
class Format:
    """A recognised format; `encrypted` is None when unknown."""

    name: str
    encrypted: bool | None


AGE = Format("age", True)
AGE_ARMORED = Format("age-armored", True)
OPENPGP = Format("openpgp", True)
OPENPGP_ARMORED = Format("openpgp-armored", True)
OPENSSL = Format("openssl-salted", True)
PGDUMP_CUSTOM = Format("pg_dump-custom", False)
GZIP = Format("gzip", False)
ZSTD = Format("zstd", False)
BZIP2 = Format("bzip2", False)
XZ = Format("xz", False)
TAR = Format("tar", False)
ZIP = Format("zip", False)
SQL = Format("sql-text", False)
EMPTY = Format("empty", None)
UNKNOWN = Format("unknown", None)

_SQL_MARKERS = (
    "postgresql database dump", "set statement_timeout", "create table", "insert into",
    "copy ", "begin;", "create schema", "select pg_catalog", "--",
)

# OpenPGP packet tags that start an encrypted message: public-key or symmetric-key
# encrypted session key (a message may also begin directly with encrypted data).
_PGP_ENCRYPTED_TAGS = {1, 3, 9, 18, 20}


def _openpgp_tag(first: int) -> int | None:
    if not first & 0x80:
        return None
    if first & 0x40:  # new packet format
        return first & 0x3F
    return (first >> 2) & 0x0F


def _looks_like_sql(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character may be cut at the end of the sample
        try:
            text = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return False
    if not text or any(ord(ch) < 9 or 13 < ord(ch) < 32 for ch in text):
        return False
    lowered = text.lower()
    return any(marker in lowered for marker in _SQL_MARKERS)


# Checked in this order, after age's binary header; tar's magic sits at offset 257.
_ARMORS = ((b"-----BEGIN AGE ENCRYPTED FILE-----", AGE_ARMORED),
           (b"-----BEGIN PGP MESSAGE-----", OPENPGP_ARMORED))
_MAGIC = ((b"Salted__", OPENSSL), (b"PGDMP", PGDUMP_CUSTOM), (b"\x1f\x8b", GZIP),
          (b"\x28\xb5\x2f\xfd", ZSTD), (b"BZh", BZIP2), (b"\xfd7zXZ\x00", XZ))


def detect(head: bytes) -> Format:
    """Classify a backup by its leading bytes (pass at least `HEAD_BYTES` when possible)."""
    if not head:
        return EMPTY
    stripped = head.lstrip()
    if head.startswith(b"age-encryption.org/v1"):
        return AGE
    for armor, armored in _ARMORS:
        if stripped.startswith(armor):
            return armored
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[257:262] == b"ustar":
        return TAR
    if head.startswith(b"PK\x03\x04"):
        return ZIP
    if _looks_like_sql(head):
        return SQL
    tag = _openpgp_tag(head[0])
    if tag in _PGP_ENCRYPTED_TAGS:
        return OPENPGP
    return UNKNOWN


def read_head(path: Path) -> bytes:
    """Leading bytes of a file, or of `toc.dat` for a pg_dump directory-format backup.

    Blocking: call through `ctx.run_blocking`.
    """
    if path.is_dir():
        toc = path / "toc.dat"
        if not toc.is_file():
            return b""
        path = toc
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def pgbackrest_cipher(cipher: str | None) -> Format:
    """Format of a pgBackRest repository from its `cipher` (`none`, `aes-256-cbc`)."""
    if cipher is None:
        return UNKNOWN
    if cipher == "none":
        return Format("pgbackrest", False)
    return Format(f"pgbackrest-{cipher}", True)
