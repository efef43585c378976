"""Bench: CPU cost of the structure-aware secret strength estimate (2.1.1, 6.1).

zxcvbn matches patterns at tens of milliseconds per 64 characters, so the estimate
matches only the first 256 characters and counts the rest by alphabet. Prints the median
time of `estimate_bits` per value length (random url-safe values, and the human phrase
of issue 11) and the estimate in bits. The probe runs it in the thread pool.

    cd /work/main && .venv/bin/python -m bench.secret_strength [--runs 7]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from exporter.probes.strength_estimate import estimate_bits

PHRASE = "qbitel-production-jwt-secret-2024"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    values = [("human phrase (33)", PHRASE)]
    values += [(f"random ({n})", secrets.token_urlsafe(n)[:n])
               for n in (43, 64, 256, 1024, 8192, 65536)]
    estimate_bits("warm-up: load the frequency lists")
    print(f"{'value':<20} {'median ms':>10} {'max ms':>8} {'bits':>8}")
    for label, value in values:
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            bits = estimate_bits(value)
            times.append((time.perf_counter() - started) * 1000)
        print(f"{label:<20} {statistics.median(times):>10.1f} {max(times):>8.1f} {bits:>8.0f}")
    print("command: .venv/bin/python -m bench.secret_strength --runs", args.runs)


if __name__ == "__main__":
    main()
