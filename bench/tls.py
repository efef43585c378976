"""Benchmark of the TLS probe family (loopback only). Prints figures and how to reproduce.

1. 500 local TLS endpoints (asyncio `ssl` servers in two helper processes): probes per
   second at equal concurrency for prometheus-blackbox-exporter (`/probe`, tcp module
   with TLS), `tls_endpoint` with one verifying handshake (the same work as blackbox's
   TLS connect), a bare asyncio `ssl` handshake loop, `tls_endpoint` with only the
   2.2.1 rules (verifying handshake plus pinned TLS 1.0 and 1.1 probes) and with its
   default full posture (plus a pinned TLS 1.2 handshake). CPU per probe is printed for
   this process, blackbox_exporter and the TLS servers (figures that stay meaningful on
   a busy machine).
2. 10,000 certificate files (PEM, DER, PEM bundles) scanned by one `tls_file` check:
   wall time, CPU time, peak RSS and the longest event-loop stall (a 5 ms ticker task).
3. The x509 tree of `cryptography-vectors` (1,774 real-world and malformed files, the
   test extra installs it) scanned by one `tls_file` check: wall and CPU time, and how
   many files and certificates got which verdict (no file without one).

    .venv/bin/python bench/tls.py                 # both parts
    .venv/bin/python bench/tls.py --part files    # only the file scan
    .venv/bin/python bench/tls.py --part corpus   # only the cryptography-vectors scan
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds other scripts (e.g. http.py): never let them shadow the standard library
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


# --------------------------------------------------------------------------- servers


async def _serve(count: int, cert_dir: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_dir / "server.pem")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            await reader.read(1024)
        writer.close()

    servers = [await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=512)
               for _ in range(count)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


def start_servers(total: int, cert_dir: Path, processes: int = 2) -> tuple[list[Any], list[int]]:
    procs, ports = [], []
    share = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    for count in share:
        proc = subprocess.Popen([sys.executable, __file__, "--serve-tls", str(count),
                                 "--cert-dir", str(cert_dir)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ports += json.loads(proc.stdout.readline())
        procs.append(proc)
    return procs, ports


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_blackbox(cert_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    config = cert_dir / "blackbox.yml"
    config.write_text(
        "modules:\n"
        "  tls_connect:\n"
        "    prober: tcp\n"
        "    timeout: 5s\n"
        "    tcp:\n"
        "      tls: true\n"
        "      tls_config:\n"
        f"        ca_file: {cert_dir / 'ca.pem'}\n"
        "        server_name: localhost\n",
        encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([BLACKBOX, f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("blackbox exporter did not start")


# --------------------------------------------------------------------------- drivers


def cpu_of(pid: int) -> float:
    """User+system CPU seconds of another process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(targets: list[int], concurrency: int,
                probe: Callable[[int], Awaitable[bool]]) -> tuple[float, int, int]:
    """Probe every target once at `concurrency`; (seconds, successes, total)."""
    semaphore = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(port: int) -> None:
        nonlocal ok
        async with semaphore:
            if await probe(port):
                ok += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in targets))
    return time.perf_counter() - started, ok, len(targets)


async def endpoints_part(args: argparse.Namespace) -> None:
    import aiohttp
    import trustme

    from exporter.context import RuntimeContext
    from exporter.model import Status
    from exporter.probes.tls.endpoint import TlsEndpointCheck, run

    cert_dir = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert_dir / "server.pem"))
    ca.cert_pem.write_to_path(str(cert_dir / "ca.pem"))
    procs, ports = start_servers(args.endpoints, cert_dir)
    blackbox, bb_port = start_blackbox(cert_dir)
    ctx = RuntimeContext(state_dir=cert_dir / "state")
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency))
    bare_context = ssl.create_default_context(cafile=str(cert_dir / "ca.pem"))

    def spec(port: int, mode: str) -> TlsEndpointCheck:
        modes: dict[str, dict[str, Any]] = {
            "one": {"versions": [], "require_tls13": False, "refuse_legacy": False},
            "rules": {"versions": []},  # the rules add 1.0, 1.1 (probed) and 1.3 (known)
            "full": {},
        }
        extra = modes[mode]
        return TlsEndpointCheck.model_validate({
            "id": f"e{port}", "section": "2.2", "title": "b", "kind": "tls_endpoint",
            "host": "127.0.0.1", "server_name": "localhost", "port": port,
            "ca_file": str(cert_dir / "ca.pem"), **extra})

    one_handshake = {p: spec(p, "one") for p in ports}
    rules = {p: spec(p, "rules") for p in ports}
    full = {p: spec(p, "full") for p in ports}

    async def bb(port: int) -> bool:
        url = f"http://127.0.0.1:{bb_port}/probe"
        async with session.get(url, params={"module": "tls_connect",
                                            "target": f"127.0.0.1:{port}"}) as response:
            return "\nprobe_success 1" in await response.text()

    async def ours(port: int) -> bool:
        return (await run(one_handshake[port], ctx)).status is Status.PASS

    async def ours_rules(port: int) -> bool:
        return (await run(rules[port], ctx)).status is Status.PASS

    async def ours_full(port: int) -> bool:
        return (await run(full[port], ctx)).status is Status.PASS

    async def bare(port: int) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=bare_context,
                                                      server_hostname="localhost")
        except (OSError, ssl.SSLError):
            return False
        writer.close()
        return True

    runners = [("blackbox_exporter /probe (tcp+tls)", bb),
               ("tls_endpoint, one verifying handshake", ours),
               ("bare asyncio ssl handshake", bare),
               ("tls_endpoint, 2.2.1 rules (3 handshakes)", ours_rules),
               ("tls_endpoint, default (4 handshakes)", ours_full)]
    try:
        await drive(ports[:50], args.concurrency, ours)  # warm up contexts and servers
        await drive(ports[:50], args.concurrency, bb)
        totals: dict[str, list[float]] = {name: [] for name, _ in runners}
        print(f"\n500-endpoint TLS probes, concurrency {args.concurrency}, "
              f"{args.rounds} rounds of {len(ports)} targets, order alternated per round")
        for round_no in range(args.rounds):
            order = runners if round_no % 2 == 0 else list(reversed(runners))
            for name, probe in order:
                cpu0, bb0 = own_cpu(), cpu_of(blackbox.pid)
                srv0 = sum(cpu_of(p.pid) for p in procs)
                seconds, ok, total = await drive(ports, args.concurrency, probe)
                client = (own_cpu() - cpu0) / total * 1000
                bb_cpu = (cpu_of(blackbox.pid) - bb0) / total * 1000
                srv = (sum(cpu_of(p.pid) for p in procs) - srv0) / total * 1000
                rate = total / seconds
                totals[name].append(rate)
                print(f"  round {round_no + 1}  {name:40s} {rate:6.0f} probes/s "
                      f"({ok}/{total} ok, {seconds:.2f}s) CPU ms/probe: this process "
                      f"{client:.2f}, blackbox {bb_cpu:.2f}, TLS servers {srv:.2f}")
        print("\n  median probes/s:")
        medians = {name: sorted(r)[len(r) // 2] for name, r in totals.items()}
        for name, rate in medians.items():
            print(f"    {name:40s} {rate:8.0f}")
        base = medians[runners[0][0]]
        for name, _ in runners[1:]:
            print(f"    ratio {name} / blackbox: {medians[name] / base:.2f}")
    finally:
        await session.close()
        await ctx.aclose()
        blackbox.terminate()
        blackbox.wait()
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait()
        shutil.rmtree(cert_dir, ignore_errors=True)


# --------------------------------------------------------------------------- files


def make_cert_files(directory: Path, count: int) -> None:
    """Write `count` files: 60% single PEM, 20% DER, 20% PEM bundles of 3 (chains)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    now = datetime.datetime.now(datetime.UTC)
    rng = random.Random(7)

    def cert(i: int) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"svc{i}.bench.example")])
        return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(i + 1)
                .not_valid_before(now - datetime.timedelta(days=10))
                .not_valid_after(now + datetime.timedelta(days=rng.randint(60, 700)))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(f"svc{i}.bench.example")]), critical=False)
                .sign(key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    for i in range(count):
        sub = directory / f"d{i % 50:02d}"
        sub.mkdir(exist_ok=True)
        kind = i % 10
        if kind < 6:
            (sub / f"c{i}.crt").write_bytes(cert(i).public_bytes(pem))
        elif kind < 8:
            (sub / f"c{i}.der").write_bytes(cert(i).public_bytes(serialization.Encoding.DER))
        else:
            blob = b"".join(cert(i * 10 + j + 1_000_000).public_bytes(pem) for j in range(3))
            (sub / f"c{i}.pem").write_bytes(blob)


async def ticker(stop: asyncio.Event, period: float = 0.005) -> float:
    """Sleep `period` repeatedly until `stop`; return the longest extra delay (a stall)."""
    loop = asyncio.get_running_loop()
    stall = 0.0
    last = loop.time()
    while not stop.is_set():
        await asyncio.sleep(period)
        now = loop.time()
        stall = max(stall, now - last - period)
        last = now
    return stall


async def files_part(args: argparse.Namespace) -> None:
    from exporter.context import RuntimeContext
    from exporter.probes.tls.files import TlsFileCheck, run

    directory = Path(tempfile.mkdtemp(prefix="bench-certs-"))
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--make-certs", str(directory),
                    "--files", str(args.files)], check=True)
    print(f"\n{args.files} certificate files written in {time.perf_counter() - started:.1f}s "
          f"(separate process) under {directory}")
    spec = TlsFileCheck.model_validate({"id": "1.2.4-files", "section": "1.2", "title": "b",
                                        "kind": "tls_file", "paths": [f"{directory}/**/*"],
                                        "warn_days": 30})
    ctx = RuntimeContext(state_dir=directory / "state")
    try:
        for attempt in range(1, args.scans + 1):
            stop = asyncio.Event()
            tick = asyncio.create_task(ticker(stop))
            await asyncio.sleep(0.02)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
            outcome = await run(spec, ctx)
            wall = time.perf_counter() - wall0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            stop.set()
            stall = await tick
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            certs = next(m.value for m in outcome.measurements
                         if m.family == "readiness_tls_file_certificates")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  scan {attempt}: {outcome.status.value}, {int(certs)} certificates, "
                  f"{len(outcome.measurements)} series | wall {wall:.2f}s  CPU {cpu:.2f}s  "
                  f"peak RSS {rss:.0f} MB  longest loop stall {stall * 1000:.0f} ms")
    finally:
        await ctx.aclose()
        shutil.rmtree(directory, ignore_errors=True)


async def corpus_part(args: argparse.Namespace) -> None:
    import collections
    import warnings

    import cryptography_vectors

    from exporter.context import RuntimeContext
    from exporter.probes.tls.files import TlsFileCheck, run

    warnings.simplefilter("ignore")  # the corpus is full of deprecated encodings
    root = Path(cryptography_vectors.__file__).parent / "x509"
    files = {str(p) for p in root.rglob("*") if p.is_file()}
    spec = TlsFileCheck.model_validate({"id": "corpus", "section": "1.2", "title": "b",
                                        "kind": "tls_file", "paths": [f"{root}/**/*"]})
    print(f"\ncryptography-vectors x509 tree: {len(files)} files under {root}")
    with tempfile.TemporaryDirectory() as state:
        ctx = RuntimeContext(state_dir=Path(state))
        try:
            for attempt in range(1, args.scans + 1):
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                wall0 = time.perf_counter()
                outcome = await run(spec, ctx)
                wall = time.perf_counter() - wall0
                cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                print(f"  scan {attempt}: {outcome.status.value} "
                      f"(reason {outcome.reason and outcome.reason.value}) | wall {wall:.2f}s  "
                      f"CPU {cpu:.2f}s")
        finally:
            await ctx.aclose()
    verdicts: collections.Counter[str] = collections.Counter()
    judged: set[str] = set()
    for m in outcome.measurements:
        if m.family == "readiness_tls_file_cert_info":
            verdicts["certificates exported"] += 1
        elif m.family == "readiness_tls_file_unparsable_certificates":
            verdicts[f"unparsable certificates: {m.labels['problem']}"] += int(m.value)
        elif m.family == "readiness_tls_file_file_error":
            verdicts[f"files unusable: {m.labels['problem']}"] += 1
        if "path" in m.labels:
            judged.add(m.labels["path"])
    for name, count in sorted(verdicts.items()):
        print(f"  {name}: {count}")
    print(f"  files without a verdict: {len(files - judged)}")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "endpoints", "files", "corpus"],
                        default="all")
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--serve-tls", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make-certs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_tls:
        asyncio.run(_serve(args.serve_tls, args.cert_dir))
        return
    if args.make_certs:
        make_cert_files(args.make_certs, args.files)
        return
    print(f"reproduce: .venv/bin/python bench/tls.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    if args.part in ("all", "files"):
        asyncio.run(files_part(args))
    if args.part in ("all", "endpoints"):
        asyncio.run(endpoints_part(args))
    if args.part in ("all", "corpus"):
        asyncio.run(corpus_part(args))


if __name__ == "__main__":
    main()
