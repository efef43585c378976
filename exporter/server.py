"""aiohttp application: /metrics, /health, /healthz, /readyz, /api/v1/checks, /-/reload
and the readiness board at `/`."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from exporter.basic_auth import BasicAuth, Verdict
from exporter.connection_guard import ConnectionGuard
from exporter.content_coding import prefers_gzip
from exporter.http_log import http_logger
from exporter.metrics import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.results import record, sorted_states
from exporter.web import board

if TYPE_CHECKING:
    from exporter.daemon import Runtime

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
AUTH = web.AppKey("auth", BasicAuth)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER_SECONDS = 1


@web.middleware
async def basic_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 on every endpoint unless the request carries valid credentials; 429 when too
    many attempts already wait for password hashing (nothing was checked)."""
    auth = request.app[AUTH]
    if not auth.enabled:
        return await handler(request)
    verdict = await auth.check(request.headers.get("Authorization"))
    if verdict is Verdict.ALLOWED:
        return await handler(request)
    if verdict is Verdict.BUSY:
        return web.Response(status=429, text="Too many authentication attempts\n",
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return web.Response(status=401, text="Unauthorized\n",
                        headers={"WWW-Authenticate": 'Basic realm="readiness-exporter"'})


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text or OpenMetrics by the Accept header; gzip when accepted.

    The body is streamed in chunks with back-pressure, so ten concurrent scrapes of a
    large exposition do not each buffer a full copy.
    """
    runtime = request.app[RUNTIME]
    _, content_type = choose_encoder(request.headers.get("Accept", ""))
    openmetrics = content_type.startswith("application/openmetrics-text")
    content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    gzip = prefers_gzip(request.headers.get("Accept-Encoding"))
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


async def lifecycle_disabled(request: web.Request) -> web.Response:
    """POST /-/reload without `--web.enable-lifecycle`: 403, as Prometheus answers."""
    return web.Response(status=403, text="Lifecycle API is not enabled; start serve with "
                        "--web.enable-lifecycle, or send SIGHUP to reload.\n")


def make_app(runtime: Runtime, auth: BasicAuth,
             guard: ConnectionGuard | None = None, *, telemetry_path: str = "/metrics",
             enable_lifecycle: bool = False) -> web.Application:
    """The exporter's HTTP application; the runtime starts and stops with it. With a
    `guard`, connections are watched for idleness from the first middleware on.

    The exposition is served at `telemetry_path`; `POST /-/reload` reloads only with
    `enable_lifecycle` (`serve` defaults it to off, like Prometheus), else answers 403.
    """
    middlewares = [basic_auth_middleware]
    if guard is not None:
        middlewares.insert(0, guard.middleware)
    app = web.Application(middlewares=middlewares)
    app[RUNTIME] = runtime
    app[AUTH] = auth
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/checks", checks_api)
    app.router.add_post("/-/reload", reload if enable_lifecycle else lifecycle_disabled)
    board.setup(app, runtime)  # /, /check/{id}, /report.{json,html}, /static/{name}

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app.cleanup_ctx.append(runtime_ctx)
    return app


async def start_server(app: web.Application, host: str, port: int,
                       ssl_context: ssl.SSLContext | None,
                       guard: ConnectionGuard) -> web.AppRunner:
    """Listen on host:port with the exporter's connection bounds; `cleanup()` the returned
    runner (and `guard.stop()`) to stop. An empty `host` listens on every interface of
    every address family (IPv4 and IPv6)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, logger=http_logger(),
                           keepalive_timeout=guard.keepalive_timeout, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host or None, port, ssl_context=ssl_context)
    await site.start()
    assert runner.server is not None
    guard.start(runner.server)
    return runner
