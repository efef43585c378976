"""Helpers for the backup / rpo / restore_drill tests: contexts, dumps, age keys."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from exporter.context import RuntimeContext
from exporter.model import ConnectionSpec
from exporter.probes.postgres.connection import PostgresConnection
from tests.support.servers import PgCluster, pg_bin

DATA = Path(__file__).parent


class ClockContext(RuntimeContext):
    """A RuntimeContext whose wall clock the test sets (for captured timestamps)."""

    def __init__(self, *args: object, now: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fixed_now = now

    def now(self) -> float:
        return self.fixed_now


def pg_connection(cluster: PgCluster, user: str = "postgres", database: str = "postgres",
                  password_env: str | None = None) -> ConnectionSpec:
    """A `postgres` connection spec for a throw-away cluster."""
    return PostgresConnection(kind="postgres", host="127.0.0.1", port=cluster.port,
                              user=user, database=database, password_env=password_env,
                              tls="disable", min_size=0, max_size=3)


def pg_dump(cluster: PgCluster, database: str, target: Path, fmt: str) -> Path:
    """Dump `database` with the real pg_dump (`fmt`: c, d or p; plain without owners)."""
    extra = ["--no-owner", "--no-acl"] if fmt == "p" else []
    subprocess.run([pg_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U",
                    "postgres", "-F", fmt, *extra, "-f", str(target), database],
                   check=True, capture_output=True, timeout=120)
    return target


def age_keypair(directory: Path) -> tuple[Path, str, str]:
    """A new age identity file, its recipient and its secret key line."""
    key = directory / "age-key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    lines = key.read_text(encoding="utf-8").splitlines()
    recipient = next(line.split(": ", 1)[1] for line in lines if "public key" in line)
    secret = next(line for line in lines if line.startswith("AGE-SECRET-KEY-"))
    return key, recipient, secret


def age_encrypt(source: Path, recipient: str, target: Path, armor: bool = False) -> Path:
    """Encrypt a file with the real age."""
    argv = ["age", "-r", recipient, "-o", str(target)]
    if armor:
        argv.insert(1, "-a")
    subprocess.run([*argv, str(source)], check=True, capture_output=True, timeout=120)
    return target


def set_mtime(path: Path, when: float) -> None:
    """Set a file's modification time."""
    os.utime(path, (when, when))
