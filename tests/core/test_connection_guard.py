"""ConnectionGuard and the HTTP logger's filter, in process with short bounds."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler

from exporter.connection_guard import ConnectionGuard
from exporter.http_log import MalformedRequestFilter
from exporter.server import start_server
from tests.support.servers import free_port


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


async def test_guard_closes_idle_partial_and_overlong_connections() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async def quick(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    guard = ConnectionGuard(idle_timeout=0.6, keepalive_timeout=2.5, request_timeout=5.0)
    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/slow", slow)
    app.router.add_get("/quick", quick)
    port = free_port()
    runner = await start_server(app, "127.0.0.1", port, None, guard)
    try:
        started = time.monotonic()
        silent = await asyncio.open_connection("127.0.0.1", port)
        partial = await asyncio.open_connection("127.0.0.1", port)
        partial[1].write(b"GET /qu")
        busy = await asyncio.open_connection("127.0.0.1", port)
        busy[1].write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        used = await asyncio.open_connection("127.0.0.1", port)
        used[1].write(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await used[0].readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        # New connections that never delivered a request head go after the idle bound.
        for reader in (silent[0], partial[0]):
            assert await _closed_within(reader, 3.0)
        # A served connection is kept alive longer, and a request in progress is not
        # idle at all...
        if time.monotonic() - started < 2.0:
            assert not await _closed_within(used[0], 0.1)
            assert not await _closed_within(busy[0], 0.1)
        # ...until the keep-alive bound and the request bound (only the guard closes a
        # connection whose request is in progress).
        assert await _closed_within(used[0], 5.0)
        assert await _closed_within(busy[0], 8.0)
        assert guard.closed >= 1
        for _, writer in (silent, partial, busy, used):
            writer.close()
    finally:
        release.set()
        await guard.stop()
        await runner.cleanup()


async def test_guard_keeps_an_active_keep_alive_connection() -> None:
    async def quick(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    guard = ConnectionGuard(idle_timeout=0.8, keepalive_timeout=0.8, request_timeout=5)
    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/quick", quick)
    port = free_port()
    runner = await start_server(app, "127.0.0.1", port, None, guard)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(8):  # 8 x 0.3 s: three times the idle bound, never idle that long
            writer.write(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.3)
        assert guard.closed == 0
        writer.close()
    finally:
        await guard.stop()
        await runner.cleanup()


def test_guard_sweep_with_a_fake_clock() -> None:
    now = [100.0]

    class Conn:
        closed = False

        def force_close(self) -> None:
            self.closed = True

    guard = ConnectionGuard(idle_timeout=10, keepalive_timeout=30, request_timeout=60,
                            clock=lambda: now[0])
    first, second = Conn(), Conn()
    assert guard.sweep([first]) == 0  # type: ignore[list-item]
    now[0] = 105
    assert guard.sweep([first, second]) == 0  # type: ignore[list-item]
    now[0] = 110.5
    assert guard.sweep([first, second]) == 1  # type: ignore[list-item]
    assert first.closed and not second.closed
    now[0] = 116
    assert guard.sweep([second]) == 1  # type: ignore[list-item]
    assert guard.sweep([]) == 0


async def test_guard_bounds_follow_the_connection_state() -> None:
    now = [0.0]
    guard = ConnectionGuard(idle_timeout=10, keepalive_timeout=30, request_timeout=60,
                            clock=lambda: now[0])

    class Conn(RequestHandler):  # only identity and force_close are used
        def __init__(self) -> None:
            self.closed = False

        def force_close(self) -> None:
            self.closed = True

    class FakeRequest:
        def __init__(self, protocol: Conn) -> None:
            self.protocol = protocol

    conn = Conn()
    gate = asyncio.Event()

    async def handler(request: object) -> web.Response:
        await gate.wait()
        return web.Response()

    guard.sweep([conn])
    task = asyncio.create_task(guard.middleware(FakeRequest(conn), handler))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    now[0] = 59  # in progress: the request bound applies
    assert guard.sweep([conn]) == 0
    gate.set()
    await task
    now[0] = 88  # served, idle for 29 s: kept alive
    assert guard.sweep([conn]) == 0
    now[0] = 89.5
    assert guard.sweep([conn]) == 1 and conn.closed


def _record(exc: BaseException | None, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("readiness.http.test", level, __file__, 1,
                             "Error handling request from %s", ("10.0.0.9",),
                             (type(exc), exc, None) if exc else None)


def test_log_filter_downgrades_and_rate_limits_malformed_requests() -> None:
    logging.getLogger("readiness.http.test").setLevel(logging.DEBUG)
    now = [0.0]
    log_filter = MalformedRequestFilter(period=60, burst=3, clock=lambda: now[0])
    passed = [r for r in (_record(BadHttpMessage("bad secret-looking header"))
                          for _ in range(10)) if log_filter.filter(r)]
    assert len(passed) == 3
    for record in passed:
        assert record.levelno == logging.DEBUG and record.exc_info is None
        assert record.getMessage() == "malformed HTTP request"
        assert record.error == "BadHttpMessage"  # type: ignore[attr-defined]
        assert record.remote == "10.0.0.9"  # type: ignore[attr-defined]
        assert "secret" not in str(vars(record))
    now[0] = 61
    record = _record(BadHttpMessage("x"))
    assert log_filter.filter(record)
    assert record.suppressed == 7  # type: ignore[attr-defined]


def test_log_filter_keeps_real_errors_and_drops_when_debug_is_off() -> None:
    log_filter = MalformedRequestFilter()
    error = _record(RuntimeError("handler bug"))
    assert log_filter.filter(error) and error.levelno == logging.ERROR
    logging.getLogger("readiness.http.quiet").setLevel(logging.INFO)
    quiet = _record(BadHttpMessage("x"))
    quiet.name = "readiness.http.quiet"
    assert not log_filter.filter(quiet)


def test_raw_socket_half_request_line_closed_in_process() -> None:
    """The issue's own reproduction, synchronous: half a request line, then silence."""

    async def main() -> float:
        guard = ConnectionGuard(idle_timeout=0.5)
        app = web.Application(middlewares=[guard.middleware])
        port = free_port()
        runner = await start_server(app, "127.0.0.1", port, None, guard)
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /met")
            sock.setblocking(False)
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(5):
                while await loop.sock_recv(sock, 1024):
                    pass
            sock.close()
            return time.monotonic() - started
        finally:
            await guard.stop()
            await runner.cleanup()

    assert asyncio.run(main()) < 5
