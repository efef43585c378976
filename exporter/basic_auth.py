"""HTTP basic authentication against bcrypt hashes, without a username oracle.

Every well-formed attempt costs one bcrypt verification at the configured cost, whether
the user exists or not, whether the password fits bcrypt's 72-byte limit or not:

- users are looked up by an HMAC of the name under a per-process random key, so the
  lookup's timing says nothing about which names exist;
- an unknown user, or a password over 72 bytes, is verified against a dummy hash of the
  highest configured cost and then refused;
- hashing runs on a small dedicated thread pool with a bounded queue: when it is full,
  further attempts are answered `BUSY` (HTTP 429) without hashing, so a flood of wrong
  passwords can neither grow memory nor delay anything else (the default executor, which
  renders `/metrics`, is never used);
- verified (user, password, hash) triples are remembered, as an HMAC (never the
  password), in a bounded least-recently-used cache, so a scraper's repeated requests
  skip bcrypt and are not held up by a flood.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import bcrypt

log = logging.getLogger("readiness.auth")

BCRYPT_MAX_PASSWORD_BYTES = 72
HASH_WORKERS = 1
"""Threads that run bcrypt (one verification at a time, as exporter-toolkit does)."""
MAX_WAITING = 8
"""Attempts that may wait for a hashing thread; more are answered 429 at once."""
CACHE_SIZE = 256
"""Verified credentials remembered (least recently used evicted first)."""


class Verdict(enum.Enum):
    """The outcome of one authentication attempt."""

    ALLOWED = "allowed"
    DENIED = "denied"
    BUSY = "busy"


def bcrypt_cost(hashed: str) -> int:
    """The cost factor of a `$2?$NN$...` hash (already validated)."""
    return int(hashed[4:6])


def dummy_hash(cost: int) -> bytes:
    """A well-formed bcrypt hash of `cost` that no password matches (made without hashing
    at that cost: a random salt and the checksum of a cheap, unrelated hash)."""
    salt = bcrypt.gensalt(rounds=cost)
    checksum = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(rounds=4))[-31:]
    return salt + checksum


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # defensive: hashes are validated at load; never an HTTP 500
        return False


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes (see the module doc)."""

    def __init__(self, users: Mapping[str, str], *, workers: int = HASH_WORKERS,
                 max_waiting: int = MAX_WAITING, cache_size: int = CACHE_SIZE) -> None:
        self._key = secrets.token_bytes(32)
        self._users = {self._name_digest(name.encode("utf-8")): hashed.encode("ascii")
                       for name, hashed in users.items()}
        costs = sorted({bcrypt_cost(h) for h in users.values()})
        if len(costs) > 1:
            log.warning("basic_auth_users: the bcrypt hashes use different costs; unknown "
                        "users are checked at the highest, so users of a lower cost can be "
                        "told apart by timing: hash every password with the same cost",
                        extra={"costs": costs})
        self._dummy = dummy_hash(costs[-1] if costs else 4)
        self._workers = workers
        self._capacity = workers + max_waiting
        self._in_flight = 0
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        """True when the web config declares at least one user."""
        return bool(self._users)

    @property
    def cached(self) -> int:
        """How many verified credentials are remembered."""
        return len(self._verified)

    def _name_digest(self, name: bytes) -> bytes:
        return hmac.new(self._key, b"user\0" + name, hashlib.sha256).digest()

    def _token(self, name: bytes, password: bytes, hashed: bytes) -> bytes:
        message = b"%d:%b%d:%b%b" % (len(name), name, len(password), password, hashed)
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def check(self, header: str | None) -> Verdict:
        """ALLOWED for a known user's correct password; DENIED otherwise; BUSY when the
        hashing queue is full (nothing was verified)."""
        credentials = _parse(header)
        if credentials is None:
            return Verdict.DENIED
        name, password = credentials
        stored = self._users.get(self._name_digest(name))
        known = stored is not None
        hashed = stored if stored is not None else self._dummy
        token = self._token(name, password, hashed)
        remembered = token in self._verified
        if known and remembered:
            self._verified.move_to_end(token)
            return Verdict.ALLOWED
        fits = len(password) <= BCRYPT_MAX_PASSWORD_BYTES
        if not fits:  # same work as any other attempt, then refused
            password, hashed = password[:BCRYPT_MAX_PASSWORD_BYTES], self._dummy
        if self._in_flight >= self._capacity:
            return Verdict.BUSY
        self._in_flight += 1
        try:
            matches = await asyncio.get_running_loop().run_in_executor(
                self._executor(), _checkpw, password, hashed)
        finally:
            self._in_flight -= 1
        if not (matches and known and fits):
            return Verdict.DENIED
        self._verified[token] = None
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return Verdict.ALLOWED

    async def allows(self, header: str | None) -> bool:
        """True when the header carries a known user's correct password."""
        return await self.check(header) is Verdict.ALLOWED

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="readiness-bcrypt")
        return self._pool

    def close(self) -> None:
        """Stop the hashing threads (queued attempts are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _parse(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) bytes from `Basic base64(user:password)`, or None if malformed."""
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    name, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return name, password
