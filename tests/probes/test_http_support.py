"""Helpers for the http probe tests: local aiohttp apps, a trustme CA, raw socket servers.

(No tests here; the test modules import these.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from exporter.probes.http.spec import HttpCheck


def make_check(**fields: Any) -> HttpCheck:
    """An `HttpCheck` with the common fields filled in."""
    base: dict[str, Any] = {"id": "t-http", "section": "6.2", "title": "test", "kind": "http"}
    base.update(fields)
    return HttpCheck.model_validate(base)


@contextlib.asynccontextmanager
async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None,
                host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run `app` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://{host}:{port}"
    finally:
        await runner.cleanup()


def app_with(routes: dict[str, Callable[[web.Request], Any]],
             methods: tuple[str, ...] = ("GET",)) -> web.Application:
    """An app routing each path to its handler for the given methods."""
    app = web.Application()
    for path, handler in routes.items():
        for method in methods:
            app.router.add_route(method, path, handler)
    return app


class Tls:
    """A trustme CA and a server certificate for 127.0.0.1 / localhost."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context


@contextlib.asynccontextmanager
async def raw_server(behaviour: str) -> AsyncIterator[int]:
    """A TCP server on loopback: `silent` (accepts, never speaks), `reset` (closes at
    once), `garbage` (answers non-HTTP bytes). Yields the port."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if behaviour == "reset":
            writer.close()
            return
        if behaviour == "garbage":
            await reader.read(1024)
            writer.write(b"SSH-2.0-OpenSSH_9.2 not http at all\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        await reader.read()  # until the client gives up and disconnects

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for writer in writers:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)
