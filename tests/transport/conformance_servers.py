"""Real servers on loopback for the conformance suite, grouped by protocol family.

A family knows how to start, for its protocol, a server that speaks it over TLS (for the
wrong-CA case) and a server that refuses the credentials sent (for the 401 case).
Families shared by every protocol: a refused port, an unresolvable name, a server that
accepts and never answers. To add a transport, add a family with those two servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import trustme
from aiohttp import web

from tests.support.servers import free_port

UNRESOLVABLE_HOST = "readiness-conformance.invalid"
"""A name under the reserved `.invalid` TLD: it never resolves (RFC 2606)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a check under test points: host, port and whether to speak TLS."""

    host: str
    port: int
    tls: bool = False


class Family(Protocol):
    """The servers one protocol family needs for the cases that depend on the protocol."""

    name: str

    def tls_server(self, ca: trustme.CA) -> contextlib.AbstractAsyncContextManager[Endpoint]:
        """A server speaking the protocol over TLS with a certificate issued by `ca`."""

    def rejecting_server(self) -> contextlib.AbstractAsyncContextManager[Endpoint]:
        """A server speaking the protocol that refuses every credential."""


def refused() -> Endpoint:
    """A loopback port nothing listens on."""
    return Endpoint("127.0.0.1", free_port())


def unresolvable() -> Endpoint:
    """A host name that cannot resolve."""
    return Endpoint(UNRESOLVABLE_HOST, 443)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[Endpoint]:
    """Accepts connections and never sends a byte (nor closes)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Endpoint("127.0.0.1", port)
    finally:
        server.close()
        for writer in held:
            writer.close()


async def _start(app: web.Application, ssl_context: ssl.SSLContext | None) -> tuple[
        web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    return runner, port


class HttpFamily:
    """HTTP servers (aiohttp): an HTTPS one and one answering 401 to everything."""

    name = "http"

    @contextlib.asynccontextmanager
    async def tls_server(self, ca: trustme.CA) -> AsyncIterator[Endpoint]:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", ok)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        runner, port = await _start(app, context)
        try:
            yield Endpoint("127.0.0.1", port, tls=True)
        finally:
            await runner.cleanup()

    @contextlib.asynccontextmanager
    async def rejecting_server(self) -> AsyncIterator[Endpoint]:
        async def deny(request: web.Request) -> web.Response:
            # Echo what was sent, as careless servers do: it must not reach a message.
            sent = request.headers.get("Authorization", "")
            return web.Response(status=401, text=f"unauthorized: {sent}",
                                headers={"WWW-Authenticate": f'Bearer error="{sent}"'})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", deny)
        runner, port = await _start(app, None)
        try:
            yield Endpoint("127.0.0.1", port)
        finally:
            await runner.cleanup()


HTTP_FAMILY = HttpFamily()
