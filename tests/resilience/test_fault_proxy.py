"""The fault proxy itself, against an echo server: a reset is a TCP RST (the client's
read fails with ECONNRESET) where a close is a clean end of stream, a blackhole never
reaches the server, bytes pass unchanged when clear, and `live` follows the clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.fault_proxy import FaultProxy, Mode, fault_proxy


class Echo:
    """An echo server that counts the connections it accepted."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = int(listener.sockets[0].getsockname()[1])
    yield server
    listener.close()
    await listener.wait_closed()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    async with fault_proxy("127.0.0.1", echo.port) as started:
        yield started


async def _exchange(proxy: FaultProxy, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(payload)
        await writer.drain()
        received = b""
        while len(received) < len(payload):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            received += chunk
        return received
    finally:
        writer.close()


async def test_clear_carries_bytes_unchanged(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 64
    assert await _exchange(proxy, payload) == payload


async def test_reset_is_a_tcp_rst_after_the_allowed_bytes(proxy: FaultProxy) -> None:
    proxy.set(Mode.RESET, reset_after=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"0123456789")
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(65536), 10)
        await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    assert proxy.resets == 1


async def test_close_is_a_clean_end_of_stream(proxy: FaultProxy) -> None:
    """The near miss of the reset: the same cut, and the client reads an orderly end."""
    proxy.set(Mode.CLOSE, reset_after=3, downstream_only=True)
    assert await _exchange(proxy, b"0123456789") == b"012"


async def test_blackhole_never_reaches_the_server(proxy: FaultProxy, echo: Echo) -> None:
    proxy.set(Mode.BLACKHOLE)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"hello")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(65536), 0.5)
    assert (echo.accepted, proxy.live) == (0, 1)
    writer.close()
    for _ in range(100):
        if proxy.live == 0:
            break
        await asyncio.sleep(0.05)
    assert proxy.live == 0
    proxy.clear()
    assert await _exchange(proxy, b"again") == b"again"
    assert echo.accepted == 1
