"""Benchmark: `secret_scan` over a generated tree (default 10,000 files, 500 MB).

Prints wall time, throughput, peak RSS and the longest event-loop stall observed by a
10 ms ticker running beside the scan (target: no stall over 100 ms).

    .venv/bin/python bench/secret_scan.py [--files 10000] [--total-mb 500] [--dir PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import string
import sys
import tempfile
import time
from pathlib import Path

# Replace the script directory (whose other bench scripts could shadow stdlib modules)
# with the repository root.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from exporter.context import RuntimeContext  # noqa: E402
from exporter.probes.secret_scan import KIND, SecretScanCheck  # noqa: E402

LINES = [
    "def handle_request(request, response):\n",
    "    user = repository.find_user(request.user_id)\n",
    "    if not user.is_active:\n",
    "        raise PermissionError('inactive user')\n",
    "    return render(template, {'user': user, 'items': items})\n",
    "# Compute the cache key for the session; tokens expire after token_ttl seconds.\n",
    "  replicas: 3\n",
    "  image: registry.example.com/qbitel/api:2.1.0\n",
    "  password: ${DATABASE_PASSWORD}\n",
    "  secretName: qbitel-db-credentials\n",
    "    timeout_seconds = config.get('timeout', 30)\n",
    "logger.info('processed %d records in %.2f s', count, elapsed)\n",
    "        for key, value in sorted(mapping.items()):\n",
    '  "description": "Lorem ipsum dolor sit amet, consectetur adipiscing elit",\n',
    "SELECT id, name, created_at FROM accounts WHERE tenant_id = $1 ORDER BY id;\n",
]


def _secret_line(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits
    token = "".join(rng.choice(alphabet) for _ in range(24))
    other = "".join(rng.choice(alphabet) for _ in range(24))
    return rng.choice([
        f"api_token: tok_{token}\n",
        f"AWS_ACCESS_KEY_ID=AKIA{token[:16].upper()}\n",
        f'blob = "{token}{other}+/="\n',
    ])


def generate(root: Path, files: int, total_bytes: int, seed: int = 7) -> int:
    """Write `files` text files of about total_bytes/files bytes; return findings planted."""
    rng = random.Random(seed)
    size = total_bytes // files
    block = "".join(rng.choice(LINES).replace("1", str(rng.randrange(10_000)))
                    for _ in range(20_000))
    planted = 0
    for i in range(files):
        directory = root / f"d{i // 500:03d}"
        directory.mkdir(exist_ok=True)
        offset = rng.randrange(0, len(block) - size) if len(block) > size else 0
        body = (block * (size // len(block) + 2))[offset:offset + size]
        body = body[:body.rfind("\n") + 1]  # whole lines only
        if i % 100 == 0:
            body += _secret_line(rng)
            planted += 1
        (directory / f"f{i:05d}.{rng.choice(['py', 'yaml', 'txt', 'env'])}").write_text(body)
    return planted


class Ticker:
    """A 10 ms timer on the event loop; records how late each tick fires."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.over: list[tuple[float, float]] = []  # (seconds since start, lateness)
        self.done = False

    async def run(self) -> None:
        started = time.perf_counter()
        while not self.done:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            late = time.perf_counter() - before - 0.01
            self.lateness.append(late)
            if late > 0.1:
                self.over.append((before - started, late))

    def summary(self) -> str:
        late = sorted(self.lateness)
        if not late:
            return "no ticks"
        p99 = late[int(len(late) * 0.99) - 1] if len(late) >= 100 else late[-1]
        over = sum(1 for x in late if x > 0.1)
        where = ", ".join(f"{x * 1000:.0f} ms at {at:.1f} s" for at, x in self.over[:5])
        return (f"longest {late[-1] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                f"median {late[len(late) // 2] * 1000:.1f} ms, {over} of {len(late)} "
                f"ticks over 100 ms{f' ({where})' if where else ''}")


async def idle(seconds: float) -> Ticker:
    """The loop's lateness with nothing else running (machine noise)."""
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    await asyncio.sleep(seconds)
    ticker.done = True
    await task
    return ticker


async def measure(root: Path, isolation: str, workers: int) -> tuple[float, Ticker, str]:
    ctx = RuntimeContext(state_dir=root / ".state", max_workers=2)
    spec = SecretScanCheck.model_validate({
        "id": "1.2.2", "section": "1.2", "title": "bench", "kind": "secret_scan",
        "paths": [str(root)], "exclude": [".state"], "max_findings": 1_000_000,
        "isolation": isolation, "workers": workers})
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    started = time.perf_counter()
    outcome = await KIND.run(spec, ctx)
    wall = time.perf_counter() - started
    ticker.done = True
    await task
    await ctx.aclose()
    return wall, ticker, outcome.message


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--total-mb", type=int, default=500)
    parser.add_argument("--dir", type=Path, help="reuse/keep the tree here")
    parser.add_argument("--isolation", choices=["process", "thread"], default="process")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="secret-scan-bench-") as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if not any(root.iterdir()):
            planted = generate(root, args.files, args.total_mb * 1024 * 1024)
            print(f"generated {args.files} files, {args.total_mb} MiB, {planted} planted "
                  f"findings in {time.perf_counter() - started:.1f} s")
        baseline = asyncio.run(idle(10.0))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wall, ticker, message = asyncio.run(measure(root, args.isolation, args.workers))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"outcome: {message[:160]}")
        print(f"wall time: {wall:.1f} s ({args.total_mb / wall:.1f} MiB/s)")
        print(f"isolation: {args.isolation}, workers: {args.workers}")
        print(f"peak RSS: exporter process {rss / 1024:.0f} MiB (before the scan "
              f"{rss_before / 1024:.0f} MiB); largest worker process {child / 1024:.0f} MiB")
        print(f"event-loop lateness during the scan: {ticker.summary()} (target: none "
              "over 100 ms)")
        print(f"event-loop lateness idle, same machine, 10 s: {baseline.summary()}")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} CPUs")
        print("reproduce: .venv/bin/python bench/secret_scan.py "
              f"--files {args.files} --total-mb {args.total_mb} --isolation {args.isolation} "
              f"--workers {args.workers}")


if __name__ == "__main__":
    main()
