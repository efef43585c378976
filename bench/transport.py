"""Bench: what the transport layer adds to a probe run, per call.

1. `ctx.client(HTTP, options)`: the per-run lookup of the runtime's client, without TLS
   files and with a `ca_file` (then each lookup stats the file, so a rotated CA is read
   again at the next run);
2. `HTTP_ERRORS.classify(exc, target)`: mapping an aiohttp exception to a reason.

Prints microseconds per call (median of `--rounds` rounds of `--calls` calls).

    .venv/bin/python bench/transport.py [--calls 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import trustme

from exporter.context import RuntimeContext
from exporter.transport.http import HTTP, HTTP_ERRORS, HttpOptions
from exporter.transport.tls import TlsClientOptions


async def _lookups(ctx: RuntimeContext, options: HttpOptions, calls: int) -> float:
    await ctx.client(HTTP, options)  # opened once, outside the timing
    started = time.perf_counter()
    for _ in range(calls):
        await ctx.client(HTTP, options)
    return (time.perf_counter() - started) / calls * 1e6


def _classify(calls: int) -> float:
    exc = aiohttp.ClientConnectorDNSError(
        aiohttp.client_reqrep.ConnectionKey("h.invalid", 443, True, True, None, None, None),
        OSError(-2, "Name or service not known"))
    started = time.perf_counter()
    for _ in range(calls):
        HTTP_ERRORS.classify(exc, "h.invalid:443", 5.0)
    return (time.perf_counter() - started) / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = Path(tmp) / "ca.pem"
        trustme.CA().cert_pem.write_to_path(str(ca_file))
        ctx = RuntimeContext(state_dir=Path(tmp) / "state")
        try:
            plain = [await _lookups(ctx, HttpOptions(), calls) for _ in range(rounds)]
            with_ca = [await _lookups(ctx, HttpOptions(tls=TlsClientOptions(ca_file=ca_file)),
                                      calls) for _ in range(rounds)]
        finally:
            await ctx.aclose()
    classify = [_classify(calls) for _ in range(rounds)]
    print(f"ctx.client(HTTP) lookup, no TLS files: {statistics.median(plain):.2f} µs/call")
    print(f"ctx.client(HTTP) lookup, with ca_file:  {statistics.median(with_ca):.2f} µs/call")
    print(f"HTTP_ERRORS.classify (DNS error):       {statistics.median(classify):.2f} µs/call")
    print(f"({rounds} rounds x {calls} calls, medians)")
    print(f"reproduce: .venv/bin/python bench/transport.py --calls {calls} --rounds {rounds}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
