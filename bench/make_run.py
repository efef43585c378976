"""`make run` on a fresh clone: seconds until the readiness board answers 200 on `/`.

Run:  .venv/bin/python bench/make_run.py [--repo .] [--runs 1] [--cold-pip-cache]

Clones the repository's committed HEAD into a temporary directory (`git clone`, nothing
shared with this work tree), runs `make run LISTEN=127.0.0.1:<free port>` there and
polls `http://127.0.0.1:<port>/` until it answers 200 (virtual environment creation,
pip install of the runtime dependencies, daemon start). Prints each run's figure, the
virtual environment's size, and the command. `--cold-pip-cache` points pip at an
empty cache directory so nothing is reused from earlier installs.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def board_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def directory_mib(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 2**20


def one_run(repo: Path, cold_cache: bool) -> tuple[float, float]:
    """Seconds from `make run` to the first 200 on `/`, and the venv's size in MiB."""
    with tempfile.TemporaryDirectory(prefix="make-run-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(clone)],
                       check=True)
        env = dict(os.environ)
        if cold_cache:
            env["PIP_CACHE_DIR"] = str(Path(tmp) / "pip-cache")
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        log = (Path(tmp) / "make-run.log").open("w")
        start = time.monotonic()
        proc = subprocess.Popen(["make", "run", f"LISTEN=127.0.0.1:{port}"], cwd=clone,
                                stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            while time.monotonic() - start < DEADLINE_SECONDS:
                if proc.poll() is not None:
                    raise SystemExit(f"make run exited with {proc.returncode}: see the log "
                                     f"(re-run with a kept directory to read it)")
                if board_answers(url):
                    break
                time.sleep(0.2)
            else:
                raise SystemExit(f"no 200 on {url} within {DEADLINE_SECONDS:.0f} s")
            elapsed = time.monotonic() - start
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()
        return elapsed, directory_mib(clone / ".venv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cold-pip-cache", action="store_true")
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(args.repo), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    figures = []
    for index in range(args.runs):
        seconds, venv_mib = one_run(args.repo, args.cold_pip_cache)
        figures.append(seconds)
        print(f"run {index + 1}: {seconds:.1f} s to the first 200 on / "
              f"(.venv {venv_mib:.0f} MiB)")
    cache = "empty pip cache" if args.cold_pip_cache else "pip cache as found"
    print(f"fresh clone of {commit}, {cache}: median {statistics.median(figures):.1f} s, "
          f"max {max(figures):.1f} s over {len(figures)} run(s); target < 60 s")
    flags = " --cold-pip-cache" if args.cold_pip_cache else ""
    print(f"command: .venv/bin/python bench/make_run.py --runs {args.runs}{flags}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
