"""aiohttp application: /metrics, /health, /healthz, /readyz, /api/v1/checks, /-/reload
and the readiness board at `/`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from exporter.metrics import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.results import record, sorted_states
from exporter.web import board
from exporter.webconfig import BasicAuth

if TYPE_CHECKING:
    from exporter.daemon import Runtime

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
AUTH = web.AppKey("auth", BasicAuth)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def basic_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 on every endpoint unless the request carries valid credentials."""
    auth = request.app[AUTH]
    if auth.enabled and not await auth.allows(request.headers.get("Authorization")):
        return web.Response(status=401, text="Unauthorized\n",
                            headers={"WWW-Authenticate": 'Basic realm="readiness-exporter"'})
    return await handler(request)


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text or OpenMetrics by the Accept header; gzip when accepted.

    The body is streamed in chunks with back-pressure, so ten concurrent scrapes of a
    large exposition do not each buffer a full copy.
    """
    runtime = request.app[RUNTIME]
    _, content_type = choose_encoder(request.headers.get("Accept", ""))
    openmetrics = content_type.startswith("application/openmetrics-text")
    content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    chunks = await runtime.exposition.body(openmetrics, gzip)
    response = web.StreamResponse(headers={
        "Content-Type": content_type, "Vary": "Accept, Accept-Encoding"})
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
    response.content_length = sum(len(c) for c in chunks)
    await response.prepare(request)
    for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def health(request: web.Request) -> web.Response:
    """The checklist's basic health contract."""
    return web.json_response({"status": "healthy"})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 once every enabled check has completed its first run."""
    if request.app[RUNTIME].store.first_round_complete():
        return web.Response(text="ready\n")
    return web.Response(status=503, text="first round of checks not complete\n")


async def checks_api(request: web.Request) -> web.Response:
    """Every check's latest result as JSON."""
    runtime = request.app[RUNTIME]
    now = time.time()
    stale = runtime.store.stale_after_intervals
    records = [record(s, now, stale) for s in sorted_states(runtime.store.states.values())]
    return web.json_response(records)


async def reload(request: web.Request) -> web.Response:
    """POST: reload the configuration; 200 when applied, 400 with the errors when not."""
    errors = await request.app[RUNTIME].reload()
    if errors:
        return web.json_response({"status": "error", "errors": errors}, status=400)
    return web.json_response({"status": "success"})


def make_app(runtime: Runtime, auth: BasicAuth) -> web.Application:
    """The exporter's HTTP application; the runtime starts and stops with it."""
    app = web.Application(middlewares=[basic_auth_middleware])
    app[RUNTIME] = runtime
    app[AUTH] = auth
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/checks", checks_api)
    app.router.add_post("/-/reload", reload)
    board.setup(app, runtime)  # /, /check/{id}, /report.{json,html}, /static/{name}

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app.cleanup_ctx.append(runtime_ctx)
    return app
