"""Throw-away real servers on free loopback ports: PostgreSQL clusters and redis-server.

`initdb` and `postgres` refuse to run as root, so when the tests run as root the
cluster is created and started as the `postgres` user through `runuser`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a child process, SIGKILL it after `timeout` seconds, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (Debian keeps them out of PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(f"PostgreSQL binary {name} not found")


def _as_postgres(argv: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return list(argv)


@dataclass
class PgCluster:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:port."""

    port: int
    datadir: Path
    root: Path
    superuser: str = "postgres"
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql as the superuser; return stdout."""
        result = subprocess.run(
            [pg_bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", self.superuser, "-d", database, "-c", sql],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return result.stdout

    def start(self) -> None:
        subprocess.run(
            _as_postgres([pg_bin("pg_ctl"), "-D", str(self.datadir), "-l",
                          str(self.root / "server.log"), "-w", "-t", "60", "start"]),
            check=True, capture_output=True, timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres([pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w",
                          "stop"]),
            check=False, capture_output=True, timeout=90,
        )

    def restart(self) -> None:
        self.stop()
        self.start()


def create_pg_cluster(settings: dict[str, str] | None = None,
                      hba_extra: Sequence[str] = ()) -> PgCluster:
    """initdb a new cluster on a free port with `settings` appended to postgresql.conf."""
    root = Path(tempfile.mkdtemp(prefix="readiness-pg-"))
    os.chmod(root, 0o777)
    datadir = root / "data"
    port = free_port()
    subprocess.run(
        _as_postgres([pg_bin("initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust",
                      "--no-sync", "-E", "UTF8", "--locale=C"]),
        check=True, capture_output=True, timeout=120,
    )
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{root}'",
        "fsync": "off",
        "max_connections": "50",
        "shared_buffers": "16MB",
        **(settings or {}),
    }
    with open(datadir / "postgresql.conf", "a", encoding="utf-8") as handle:
        for key, value in conf.items():
            handle.write(f"{key} = {value}\n")
    if hba_extra:
        hba = datadir / "pg_hba.conf"
        original = hba.read_text(encoding="utf-8")
        hba.write_text("\n".join(hba_extra) + "\n" + original, encoding="utf-8")
    cluster = PgCluster(port=port, datadir=datadir, root=root, settings=conf)
    cluster.start()
    return cluster


@contextlib.contextmanager
def pg_cluster(settings: dict[str, str] | None = None,
               hba_extra: Sequence[str] = ()) -> Iterator[PgCluster]:
    """A started throw-away cluster, stopped and removed afterwards."""
    cluster = create_pg_cluster(settings, hba_extra)
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1:port with its own directory."""

    port: int
    dir: Path
    process: subprocess.Popen[bytes]
    password: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        terminate(self.process)


def start_redis(args: Sequence[str] = (), password: str | None = None,
                port: int | None = None, directory: Path | None = None) -> RedisServer:
    """Start `redis-server` with extra `args` (e.g. `--appendonly yes`)."""
    port = port or free_port()
    workdir = directory or Path(tempfile.mkdtemp(prefix="readiness-redis-"))
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(workdir / "redis.log")]
    if password is not None:
        argv += ["--requirepass", password]
    argv += list(args)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return RedisServer(port=port, dir=workdir, process=process, password=password)


@contextlib.contextmanager
def redis_server(args: Sequence[str] = (), password: str | None = None) -> Iterator[RedisServer]:
    """A started throw-away redis-server, stopped and removed afterwards."""
    server = start_redis(args, password)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@contextlib.contextmanager
def pg_tls_cluster(hba_extra: Sequence[str] = ()) -> Iterator[tuple[PgCluster, Path]]:
    """A started throw-away cluster with ssl=on (a certificate for 127.0.0.1 from its own
    trustme CA), and the CA file that verifies it; both removed afterwards."""
    import pwd

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certdir = Path(tempfile.mkdtemp(prefix="readiness-pgtls-"))
    cert.cert_chain_pems[0].write_to_path(str(certdir / "server.crt"))
    cert.private_key_pem.write_to_path(str(certdir / "server.key"))
    ca.cert_pem.write_to_path(str(certdir / "ca.crt"))
    if os.geteuid() == 0:  # the server runs as postgres and must read its key
        uid = pwd.getpwnam("postgres").pw_uid
        for name in ("server.crt", "server.key"):
            os.chown(certdir / name, uid, -1)
    os.chmod(certdir / "server.key", 0o600)
    os.chmod(certdir, 0o755)
    settings = {"ssl": "on", "ssl_cert_file": f"'{certdir / 'server.crt'}'",
                "ssl_key_file": f"'{certdir / 'server.key'}'"}
    try:
        with pg_cluster(settings, hba_extra) as cluster:
            yield cluster, certdir / "ca.crt"
    finally:
        shutil.rmtree(certdir, ignore_errors=True)
