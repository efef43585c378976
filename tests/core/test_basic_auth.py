"""BasicAuth: the same work for every well-formed attempt, a bounded hashing queue, a
bounded cache of verified credentials, and no exception for any input."""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

import bcrypt
import pytest

from exporter import basic_auth
from exporter.basic_auth import BasicAuth, Verdict, bcrypt_cost, dummy_hash

PASSWORD = "auth-pass-Qw3Er4Ty5"


def hashed(password: str = PASSWORD, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def header(user: bytes | str, password: bytes | str) -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":" + (
        password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every (password, hash) given to bcrypt."""
    calls: list[tuple[bytes, bytes]] = []
    real = basic_auth._checkpw

    def counting(password: bytes, stored: bytes) -> bool:
        calls.append((password, stored))
        return real(password, stored)

    monkeypatch.setattr(basic_auth, "_checkpw", counting)
    return calls


@pytest.mark.parametrize("value", [
    None, "", "Basic", "Basic ", "Bearer abc", "Basic !!!notbase64", "Basic " + "é" * 10,
    "Basic " + base64.b64encode(b"no-colon").decode(),
], ids=["none", "empty", "scheme-only", "scheme-space", "bearer", "not-base64", "non-ascii",
        "no-colon"])
async def test_malformed_headers_are_denied_without_hashing(
        value: str | None, hash_calls: list[Any]) -> None:
    auth = BasicAuth({"alice": hashed()})
    assert await auth.check(value) is Verdict.DENIED
    assert hash_calls == []
    auth.close()


async def test_every_well_formed_attempt_hashes_once_at_the_configured_cost(
        hash_calls: list[tuple[bytes, bytes]]) -> None:
    alice = hashed(cost=5)
    auth = BasicAuth({"alice": alice, "bob": hashed(cost=4)})
    attempts = {
        "known, wrong": header("alice", "wrong"),
        "unknown": header("mallory", "wrong"),
        "empty user": header("", "wrong"),
        "non-UTF-8 user": header(b"\xff\xfe", "wrong"),
        "known, 73 bytes": header("alice", "p" * 73),
        "unknown, 5000 bytes": header("mallory", "p" * 5000),
        "non-UTF-8 password": header("alice", b"\xff\xfe"),
    }
    for name, value in attempts.items():
        hash_calls.clear()
        assert await auth.check(value) is Verdict.DENIED, name
        assert len(hash_calls) == 1, name
        password, stored = hash_calls[0]
        assert len(password) <= 72, name
        # The highest configured cost: unknown users cost what the known ones cost.
        assert bcrypt_cost(stored.decode()) == 5, name
    auth.close()


async def test_over_72_bytes_is_refused_even_when_the_first_72_match() -> None:
    password = "k" * 72
    auth = BasicAuth({"alice": hashed(password)})
    assert await auth.check(header("alice", password + "extra")) is Verdict.DENIED
    assert await auth.check(header("alice", password)) is Verdict.ALLOWED
    auth.close()


async def test_success_is_cached_and_the_cache_is_bounded(
        hash_calls: list[Any]) -> None:
    users = {f"user{i}": hashed(f"pw{i}") for i in range(4)}
    auth = BasicAuth(users, cache_size=2)
    assert await auth.check("basic " + header("user0", "pw0")[6:]) is Verdict.ALLOWED
    hash_calls.clear()
    assert await auth.allows(header("user0", "pw0"))
    assert hash_calls == []  # from the cache
    assert await auth.check(header("user0", "wrong")) is Verdict.DENIED
    assert len(hash_calls) == 1  # a wrong password is never a cache hit
    for i in range(1, 4):
        assert await auth.allows(header(f"user{i}", f"pw{i}"))
    assert auth.cached == 2
    hash_calls.clear()
    assert await auth.allows(header("user0", "pw0"))  # evicted: hashed again
    assert len(hash_calls) == 1
    auth.close()


async def test_attempts_beyond_the_queue_are_busy_without_hashing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    started: list[bytes] = []

    def blocked(password: bytes, stored: bytes) -> bool:
        started.append(password)
        gate.wait(10)
        return False

    monkeypatch.setattr(basic_auth, "_checkpw", blocked)
    auth = BasicAuth({"alice": hashed()}, workers=1, max_waiting=2)
    tasks = [asyncio.create_task(auth.check(header("alice", f"guess{i}"))) for i in range(6)]
    await asyncio.sleep(0.2)
    done = [t for t in tasks if t.done()]
    assert len(done) == 3 and all(t.result() is Verdict.BUSY for t in done)
    assert len(started) == 1  # one hashing thread; two attempts wait for it
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results.count(Verdict.BUSY) == 3 and results.count(Verdict.DENIED) == 3
    # The queue drained: the next attempt is hashed again.
    assert await auth.check(header("alice", "again")) is Verdict.DENIED
    auth.close()


async def test_hashing_never_uses_the_default_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = basic_auth._checkpw

    def recording(password: bytes, stored: bytes) -> bool:
        threads.append(threading.current_thread().name)
        return real(password, stored)

    monkeypatch.setattr(basic_auth, "_checkpw", recording)
    auth = BasicAuth({"alice": hashed()})
    await auth.check(header("alice", "wrong"))
    await auth.check(header("nobody", "wrong"))
    assert threads and all(name.startswith("readiness-bcrypt") for name in threads)
    auth.close()


def test_dummy_hash_is_well_formed_and_matches_nothing() -> None:
    from exporter.webconfig import bcrypt_hash_problem

    for cost in (4, 10, 31):  # made without hashing at `cost`: cost 31 is instant
        dummy = dummy_hash(cost)
        assert bcrypt_hash_problem(dummy.decode()) is None
        assert bcrypt_cost(dummy.decode()) == cost
    assert not bcrypt.checkpw(b"", dummy_hash(4))


def test_disabled_without_users() -> None:
    assert not BasicAuth({}).enabled
    assert BasicAuth({"alice": hashed()}).enabled


def test_different_costs_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="readiness.auth"):
        BasicAuth({"alice": hashed(cost=4), "bob": hashed(cost=4)})
        assert caplog.records == []
        BasicAuth({"alice": hashed(cost=4), "bob": hashed(cost=5)})
    assert [r.costs for r in caplog.records] == [[4, 5]]  # type: ignore[attr-defined]
