"""Where backups are found: a directory (or glob), pgBackRest `info` JSON, an S3 bucket.

Every source answers the same question: which backups exist, and for the newest one
(and the one before it) when it completed, how large it is and whether it is
encrypted. Blocking work (directory walks, hashing) runs in the thread pool; the S3
source talks through the S3 transport (`exporter.transport.s3`), which runs boto3 there.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import heapq
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.model import Duration, ProbeContext, ProbeError, Reason, SecretReference
from exporter.probes.backup import encryption
from exporter.probes.backup.encryption import Format
from exporter.transport.s3 import S3, S3Options
from exporter.transport.tls import TlsClientOptions

SIDECAR_SUFFIXES = (".sha256", ".sha512", ".md5")
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".inprogress")


@dataclass(frozen=True, slots=True)
class BackupItem:
    """One backup: name, completion time (epoch seconds), size in bytes, format."""

    name: str
    completed: float
    size: int
    location: str
    format: Format | None = None
    checksum_ok: bool | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """What a source holds: its newest backups (newest first) and how many there are."""

    newest: tuple[BackupItem, ...]
    count: int
    by_type: dict[str, float] = field(default_factory=dict)
    """pgBackRest: newest completion per backup type (full, diff, incr)."""

    @property
    def latest(self) -> BackupItem | None:
        return self.newest[0] if self.newest else None

    @property
    def previous(self) -> BackupItem | None:
        return self.newest[1] if len(self.newest) > 1 else None


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DirectorySource(_Source):
    """Files (or pg_dump directory-format dumps) under a directory."""

    type: Literal["directory"]
    path: Path = Field(description="directory holding the backups")
    pattern: str = Field(default="*", description="glob matched against each entry's name")
    recursive: bool = Field(default=False, description="descend into sub-directories")
    directories: bool = Field(
        default=False,
        description="count matching sub-directories as backups (pg_dump -Fd); implies "
        "not descending into them",
    )
    time_from: Literal["mtime", "name"] = Field(
        default="mtime", description="completion time from the file's mtime or its name"
    )
    name_format: str | None = Field(
        default=None,
        description="strftime format of the whole file name, e.g. 'db-%Y%m%dT%H%M%SZ.dump' "
        "(UTC unless it carries %z); required with time_from: name",
    )
    checksum: Literal["none", "sha256", "sha512", "md5"] = Field(
        default="none",
        description="verify the newest backup against a sidecar file '<name>.<algorithm>'",
    )

    @model_validator(mode="after")
    def _name_format_needed(self) -> DirectorySource:
        if self.time_from == "name" and not self.name_format:
            raise ValueError("time_from: name needs name_format")
        return self


class PgBackRestSource(_Source):
    """pgBackRest `info --output=json`, from a command or a file."""

    type: Literal["pgbackrest"]
    command: list[str] | None = Field(
        default=None, min_length=1,
        description="argv printing the JSON, e.g. [pgbackrest, --output=json, info]",
    )
    file: Path | None = Field(default=None, description="a file holding the JSON")
    stanza: str | None = Field(default=None, description="stanza (default: the only one)")
    backup_types: list[Literal["full", "diff", "incr"]] = Field(
        default=["full", "diff", "incr"], min_length=1,
        description="backup types that count",
    )
    command_timeout: Duration = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_origin(self) -> PgBackRestSource:
        if (self.command is None) == (self.file is None):
            raise ValueError("give exactly one of command or file")
        return self


class S3Source(_Source):
    """Objects under a prefix of an S3-compatible bucket (boto3)."""

    type: Literal["s3"]
    bucket: str = Field(min_length=1)
    prefix: str = Field(default="", description="key prefix, e.g. 'db/'")
    pattern: str = Field(default="*", description="glob matched against the key's last part")
    endpoint_url: str | None = Field(default=None, description="for non-AWS S3 (MinIO...)")
    region: str | None = None
    access_key_id: SecretReference | None = Field(
        default=None, description="default: boto3's credential chain"
    )
    secret_access_key: SecretReference | None = None
    time_from: Literal["mtime", "name"] = Field(
        default="mtime", description="completion time from LastModified or from the name"
    )
    name_format: str | None = Field(default=None, description="strftime of the key's last part")
    inspect: bool = Field(
        default=True,
        description="read the newest object's first 512 bytes to tell its format",
    )
    tls: TlsClientOptions = Field(
        default_factory=TlsClientOptions,
        description="TLS options of an https endpoint_url (ca_file, cert_file, key_file, "
        "insecure_skip_verify; server_name is not supported by botocore)")

    @model_validator(mode="after")
    def _checks(self) -> S3Source:
        if self.time_from == "name" and not self.name_format:
            raise ValueError("time_from: name needs name_format")
        if self.tls.server_name is not None:
            raise ValueError("tls.server_name is not supported for S3 (botocore sends the "
                             "endpoint's host name): remove it")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        return self


BackupSource = Annotated[
    DirectorySource | PgBackRestSource | S3Source, Field(discriminator="type")
]


def describe(source: DirectorySource | PgBackRestSource | S3Source) -> str:
    """A short, secret-free name of a source for messages."""
    if isinstance(source, DirectorySource):
        return f"{source.path}/{source.pattern}"
    if isinstance(source, PgBackRestSource):
        origin = str(source.file) if source.file else "pgbackrest info"
        return f"{origin} stanza {source.stanza}" if source.stanza else origin
    return f"s3://{source.bucket}/{source.prefix}{source.pattern}"


def time_from_name(name: str, name_format: str) -> float | None:
    """Epoch seconds encoded in `name` by `name_format`, or None when it does not match."""
    try:
        parsed = datetime.strptime(name, name_format)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# --------------------------------------------------------------------------- directory


def _skip_name(name: str) -> bool:
    return name.endswith(SIDECAR_SUFFIXES + PARTIAL_SUFFIXES) or name.startswith(".")


def _entry_size(entry: os.DirEntry[str]) -> int:
    if not entry.is_dir(follow_symlinks=False):
        return entry.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(entry.path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _read_directory(current: str, source: DirectorySource) -> list[os.DirEntry[str]] | None:
    """The entries of `current`; None when a subdirectory vanished during the walk."""
    try:
        with os.scandir(current) as iterator:
            return list(iterator)
    except FileNotFoundError:
        if current == str(source.path):
            raise ProbeError(Reason.CONFIG, f"backup directory {source.path} does not "
                             "exist") from None
        return None
    except OSError as exc:
        raise ProbeError(Reason.CONFIG, f"cannot read {current}: {exc.strerror}") from None


def _entry_time(entry: os.DirEntry[str], source: DirectorySource) -> float | None:
    """Completion time of a matching entry (from its name or mtime); None to skip it."""
    if source.time_from == "name":
        assert source.name_format is not None
        return time_from_name(entry.name, source.name_format)
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return None


def _judge_entry(entry: os.DirEntry[str],
                 source: DirectorySource) -> float | Literal[True] | None:
    """A backup's completion time; True: a directory to descend into; None: skip."""
    if _skip_name(entry.name):
        return None
    try:
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError:
        return None
    descend: Literal[True] | None = True if is_dir and source.recursive else None
    if is_dir and not source.directories:
        return descend
    if not fnmatch.fnmatchcase(entry.name, source.pattern):
        return descend
    return _entry_time(entry, source)


def _items(candidates: list[tuple[float, str, os.DirEntry[str]]]) -> list[BackupItem]:
    """The kept candidates, newest first, with their sizes."""
    items = []
    for when, path, entry in sorted(candidates, key=lambda c: c[:2], reverse=True):
        try:
            size = _entry_size(entry)
        except OSError:
            size = 0
        items.append(BackupItem(name=entry.name, completed=when, size=size, location=path))
    return items


def scan_directory(source: DirectorySource, keep: int = 2) -> tuple[list[BackupItem], int]:
    """Walk the directory with `os.scandir` and keep the `keep` newest backups.

    Blocking: call through `ctx.run_blocking`. Raises `ProbeError` when the directory
    cannot be read.
    """
    candidates: list[tuple[float, str, os.DirEntry[str]]] = []
    count = 0
    stack = [str(source.path)]
    while stack:
        current = stack.pop()
        for entry in _read_directory(current, source) or ():
            verdict = _judge_entry(entry, source)
            if verdict is True:
                stack.append(entry.path)
                continue
            if verdict is None:
                continue
            count += 1
            item = (verdict, entry.path, entry)
            if len(candidates) < keep:
                heapq.heappush(candidates, item)
            elif item[:2] > candidates[0][:2]:
                heapq.heapreplace(candidates, item)
    return _items(candidates), count


def verify_checksum(path: Path, algorithm: str) -> bool | None:
    """Compare `path` with its sidecar `<path>.<algorithm>`; None when there is none.

    Blocking: call through `ctx.run_blocking`.
    """
    sidecar = path.with_name(path.name + "." + algorithm)
    try:
        expected_text = sidecar.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    if not expected_text or path.is_dir():
        return False
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == expected_text[0].lower()


def _inspect_file(path: Path, checksum: str) -> tuple[Format, bool | None]:
    head = encryption.read_head(path)
    ok = None if checksum == "none" else verify_checksum(path, checksum)
    return encryption.detect(head), ok


async def _list_directory(source: DirectorySource, ctx: ProbeContext) -> Listing:
    items, count = await ctx.run_blocking(scan_directory, source)
    if items:
        try:
            fmt, ok = await ctx.run_blocking(_inspect_file, Path(items[0].location),
                                             source.checksum)
        except OSError as exc:
            raise ProbeError(Reason.CONFIG, f"cannot read {items[0].location}: "
                             f"{exc.strerror}") from None
        items[0] = replace(items[0], format=fmt, checksum_ok=ok)
    return Listing(tuple(items), count)


# --------------------------------------------------------------------------- pgBackRest


async def _pgbackrest_json(source: PgBackRestSource, ctx: ProbeContext) -> Any:
    if source.file is not None:
        try:
            text = await ctx.run_blocking(source.file.read_text, "utf-8")
        except OSError as exc:
            raise ProbeError(Reason.CONFIG, f"cannot read {source.file}: {exc.strerror}") \
                from None
    else:
        assert source.command is not None
        try:
            process = await asyncio.create_subprocess_exec(
                *source.command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise ProbeError(Reason.CONFIG, f"cannot run {source.command[0]}: "
                             f"{exc.strerror}") from None
        try:
            async with asyncio.timeout(source.command_timeout):
                out, _err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ProbeError(Reason.TIMEOUT, f"{source.command[0]} did not answer within "
                             f"{source.command_timeout:g}s") from None
        if process.returncode != 0:
            raise ProbeError(Reason.PROTOCOL, f"{source.command[0]} exited with status "
                             f"{process.returncode}")
        text = out.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ProbeError(Reason.PROTOCOL, "pgBackRest info is not valid JSON") from None


def parse_pgbackrest(data: Any, source: PgBackRestSource) -> Listing:
    """Successful backups of the chosen stanza in a pgBackRest `info` document."""
    if not isinstance(data, list):
        raise ProbeError(Reason.PROTOCOL, "pgBackRest info: expected a list of stanzas")
    stanzas = [s for s in data if isinstance(s, dict)]
    if source.stanza is not None:
        stanzas = [s for s in stanzas if s.get("name") == source.stanza]
        if not stanzas:
            raise ProbeError(Reason.CONFIG, f"pgBackRest info has no stanza {source.stanza!r}")
    elif len(stanzas) != 1:
        names = ", ".join(str(s.get("name")) for s in stanzas[:5]) or "none"
        raise ProbeError(Reason.CONFIG, f"pgBackRest info has {len(stanzas)} stanzas "
                         f"({names}): set stanza")
    stanza = stanzas[0]
    cipher = stanza.get("cipher")
    repos = stanza.get("repo")
    if cipher is None and isinstance(repos, list) and repos and isinstance(repos[0], dict):
        cipher = repos[0].get("cipher")
    fmt = encryption.pgbackrest_cipher(cipher if isinstance(cipher, str) else None)
    items = []
    by_type: dict[str, float] = {}
    for backup in stanza.get("backup") or []:
        if not isinstance(backup, dict) or backup.get("error") is True:
            continue
        if backup.get("type") not in source.backup_types:
            continue
        try:
            stop = float(backup["timestamp"]["stop"])
            size = int(backup.get("info", {}).get("size", 0))
        except (KeyError, TypeError, ValueError):
            continue
        items.append(BackupItem(name=str(backup.get("label", "")), completed=stop, size=size,
                                location=str(backup.get("label", "")), format=fmt))
        kind = str(backup["type"])
        by_type[kind] = max(stop, by_type.get(kind, 0.0))
    items.sort(key=lambda b: b.completed, reverse=True)
    return Listing(tuple(items[:2]), len(items), by_type)


# --------------------------------------------------------------------------- S3


def s3_options(source: S3Source, option_path: str = "source",
               request_timeout: float = 30.0) -> S3Options:
    """The S3 transport options of `source` (one client per endpoint and credentials);
    `option_path` is where the source is configured, for error messages."""
    return S3Options(endpoint_url=source.endpoint_url, region=source.region,
                     access_key_id=source.access_key_id,
                     secret_access_key=source.secret_access_key, tls=source.tls,
                     timeout=request_timeout, option_path=option_path)


def _s3_objects(client: Any, source: S3Source) -> Iterator[tuple[float, str, int]]:
    """(completion time, key, size) of every matching object, one page at a time."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=source.bucket, Prefix=source.prefix):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            name = key.rsplit("/", 1)[-1]
            if not name or _skip_name(name) or not fnmatch.fnmatchcase(name, source.pattern):
                continue
            if source.time_from == "name":
                assert source.name_format is not None
                when = time_from_name(name, source.name_format)
            else:
                when = float(obj["LastModified"].timestamp())
            if when is not None:
                yield when, key, int(obj.get("Size", 0))


def scan_s3(client: Any, source: S3Source) -> Listing:
    """List the bucket prefix and inspect the newest object. Blocking (boto3): run it
    through `S3Client.call`, which maps botocore's errors."""
    newest: list[tuple[float, str, int]] = []
    count = 0
    for found in _s3_objects(client, source):
        count += 1
        newest = heapq.nlargest(2, [*newest, found])
    items = [BackupItem(name=key.rsplit("/", 1)[-1], completed=when, size=size,
                        location=key) for when, key, size in newest]
    if items and source.inspect:
        head = b""
        if items[0].size > 0:
            response = client.get_object(Bucket=source.bucket, Key=items[0].location,
                                         Range=f"bytes=0-{encryption.HEAD_BYTES - 1}")
            head = response["Body"].read()
        items[0] = replace(items[0], format=encryption.detect(head))
    return Listing(tuple(items), count)


async def _list_s3(source: S3Source, ctx: ProbeContext, option_path: str,
                   request_timeout: float) -> Listing:
    options = s3_options(source, option_path, request_timeout)
    s3 = await ctx.client(S3, options)
    try:
        return await s3.call(lambda client: scan_s3(client, source))
    except ProbeError as exc:
        if exc.reason is Reason.AUTH:  # read the keys again next run (rotation)
            await ctx.refresh_client(S3, options)
        raise


# --------------------------------------------------------------------------- entry point


async def list_backups(source: DirectorySource | PgBackRestSource | S3Source,
                       ctx: ProbeContext, *, option_path: str = "source",
                       request_timeout: float = 30.0) -> Listing:
    """The newest backups of `source`; raises `ProbeError` when it cannot be read.

    For an S3 source, `option_path` is where it is configured (errors name
    `<option_path>.secret_access_key`) and `request_timeout` bounds each request.
    """
    if isinstance(source, DirectorySource):
        return await _list_directory(source, ctx)
    if isinstance(source, PgBackRestSource):
        return parse_pgbackrest(await _pgbackrest_json(source, ctx), source)
    return await _list_s3(source, ctx, option_path, request_timeout)
