"""A TCP fault proxy for the resilience tests: it sits in front of a real server on a free
loopback port and forwards bytes both ways, or misbehaves as told, switchable at run time.

Modes (`FaultProxy.set`, applied at once to new and open connections):

- `clear`: forward everything as it comes;
- `latency`: forward each chunk `latency` seconds after it was read (both directions);
- `reset`: forward `reset_after` more bytes (counted from the moment the mode is set,
  both directions together, or with `downstream_only` only the server's answer while
  the client's bytes go through), then close the client's socket with `SO_LINGER` 0, so the
  kernel sends a TCP RST (a reset mid-stream), and close the server side;
- `close`: as `reset`, but the connections are closed normally (FIN): a peer that hangs
  up in the middle of an exchange;
- `blackhole`: accept connections but never forward a byte (no upstream connection is
  opened for a new client; bytes on open connections are dropped);
- `slow`: trickle server->client bytes `trickle_bytes` at a time, `trickle_delay` seconds
  apart (a server that answers, slowly).

`live` counts client connections open right now and `accepted` every connection so far,
so a test can see whether a client leaks connections through the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["FaultProxy", "Mode", "fault_proxy"]

_READ = 65536


class Mode(enum.Enum):
    """What the proxy does with the bytes it carries."""

    CLEAR = "clear"
    LATENCY = "latency"
    RESET = "reset"
    CLOSE = "close"
    BLACKHOLE = "blackhole"
    SLOW = "slow"


@dataclass
class _Fault:
    """The mode in force and its parameters; `generation` changes on every `set`."""

    mode: Mode = Mode.CLEAR
    latency: float = 0.0
    reset_after: int = 0
    downstream_only: bool = False
    trickle_bytes: int = 1
    trickle_delay: float = 0.05
    generation: int = 0


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    generation: int = -1
    carried: int = 0  # bytes forwarded since the fault of `generation` was set
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False


class FaultProxy:
    """Forwards 127.0.0.1:`port` to `upstream_host`:`upstream_port`, with faults."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0
        self.resets = 0
        self._fault = _Fault()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def live(self) -> int:
        """Client connections open right now."""
        return len(self._links)

    @property
    def mode(self) -> Mode:
        """The mode in force."""
        return self._fault.mode

    def set(self, mode: Mode, *, latency: float = 0.0, reset_after: int = 0,
            downstream_only: bool = False, trickle_bytes: int = 1,
            trickle_delay: float = 0.05) -> None:
        """Switch to `mode` (see the module docstring for the parameters)."""
        self._fault = _Fault(mode, latency, reset_after, downstream_only, trickle_bytes,
                             trickle_delay, self._fault.generation + 1)

    def clear(self) -> None:
        """Forward everything again (connections already reset stay closed)."""
        self.set(Mode.CLEAR)

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def aclose(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        links = list(self._links)
        for link in links:
            self._close(link, reset=False)  # the pumps see the end of their streams
            for task in link.tasks:
                task.cancel()  # a pump asleep in a latency or trickle delay
        for link in links:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self._fault.mode is Mode.BLACKHOLE:
                await self._swallow(reader, link)
            if link.closed:
                return
            try:
                up_reader, link.upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port)
            except OSError:
                self._close(link, reset=True)
                return
            down = asyncio.create_task(self._pump(up_reader, writer, link, downstream=True))
            link.tasks.append(down)
            try:
                await self._pump(reader, link.upstream, link, downstream=False)
                await asyncio.wait([down])
            finally:
                down.cancel()
        finally:
            self._close(link, reset=False)

    async def _swallow(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Read and drop the client's bytes while the blackhole lasts."""
        while self._fault.mode is Mode.BLACKHOLE and not link.closed:
            try:
                data = await asyncio.wait_for(reader.read(_READ), 0.05)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self._close(link, reset=False)
                return

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: _Link, *, downstream: bool) -> None:
        """Carry one direction until end of stream, applying the fault of the moment.

        Reading and delivering are separate tasks, so a client that goes away is seen at
        once even while a delayed or trickled chunk waits to be delivered; the server's
        end of stream is passed on after the bytes it sent before it.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()

        async def deliver() -> None:
            while not link.closed:
                data, read_at = await queue.get()
                if not data:  # the server's end of stream, after what it sent before
                    self._close(link, reset=False)
                    return
                await self._forward(data, read_at, writer, link, downstream)

        delivery = asyncio.create_task(deliver())
        link.tasks.append(delivery)
        try:
            while not link.closed:
                try:
                    data = await reader.read(_READ)
                except OSError:
                    data = b""
                if not data and downstream:
                    queue.put_nowait((data, loop.time()))
                    await asyncio.wait([delivery])
                    return
                if not data:  # the client went away: nothing more is delivered
                    self._close(link, reset=False)
                    return
                queue.put_nowait((data, loop.time()))
        finally:
            delivery.cancel()

    async def _forward(self, data: bytes, read_at: float, writer: asyncio.StreamWriter,
                       link: _Link, downstream: bool) -> None:
        fault = self._fault
        if link.generation != fault.generation:
            link.generation, link.carried = fault.generation, 0
        if fault.mode is Mode.BLACKHOLE:
            return
        if fault.mode is Mode.LATENCY:  # `latency` after the chunk was read
            await asyncio.sleep(max(0.0, read_at + fault.latency -
                                    asyncio.get_running_loop().time()))
        cuts = fault.mode in (Mode.RESET, Mode.CLOSE)
        if cuts and (downstream or not fault.downstream_only):
            allowed = max(0, fault.reset_after - link.carried)
            if len(data) >= allowed:
                await self._write(writer, data[:allowed], link)
                self.resets += 1
                self._close(link, reset=fault.mode is Mode.RESET)
                return
        if downstream or not fault.downstream_only:
            link.carried += len(data)
        if fault.mode is Mode.SLOW and downstream:
            step = fault.trickle_bytes
            for start in range(0, len(data), step):
                if link.closed:
                    return
                if self._fault is not fault:  # changed (cleared): the rest at the new pace
                    await self._forward(data[start:], read_at, writer, link, downstream)
                    return
                await self._write(writer, data[start:start + step], link)
                await asyncio.sleep(fault.trickle_delay)
            return
        await self._write(writer, data, link)

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, data: bytes, link: _Link) -> None:
        if link.closed or not data:
            return
        writer.write(data)
        with contextlib.suppress(OSError):
            await writer.drain()

    def _close(self, link: _Link, *, reset: bool) -> None:
        """Close both sides; with `reset` the client gets a TCP RST (SO_LINGER 0)."""
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        if reset:
            sock = link.client.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            link.client.transport.abort()
        else:
            link.client.close()
        if link.upstream is not None:
            link.upstream.close()


@contextlib.asynccontextmanager
async def fault_proxy(upstream_host: str, upstream_port: int) -> AsyncIterator[FaultProxy]:
    """A started `FaultProxy`, closed afterwards."""
    proxy = FaultProxy(upstream_host, upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()
