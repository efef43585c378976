"""One TLS client handshake, driven on the event loop through OpenSSL memory BIOs.

pyOpenSSL (on the OpenSSL that `cryptography` bundles) does the TLS work, so the
negotiated key-exchange group (e.g. `X25519MLKEM768`) is visible; asyncio does the
socket I/O, so no thread blocks on the network and timeouts are plain asyncio
timeouts. PostgreSQL STARTTLS (SSLRequest) is supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from OpenSSL import SSL, crypto

__all__ = ["Failure", "HandshakeError", "HandshakeResult", "handshake"]

_PG_SSLREQUEST = struct.pack("!II", 8, 80877103)
_TLS_RECORD_TYPES = {0x14, 0x15, 0x16, 0x17}


class Failure(StrEnum):
    """Why a handshake did not complete (bounded)."""

    DNS = "dns"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    CLOSED = "closed"  # peer closed the connection mid-handshake
    RESET = "reset"
    NOT_TLS = "not_tls"  # peer answered with something that is not a TLS record
    ALERT = "alert"  # the handshake failed (alert sent or received)
    LOCAL = "local"  # the local library could not even build a ClientHello
    NO_SSL = "no_ssl"  # PostgreSQL answered 'N' to SSLRequest
    PROTOCOL = "protocol"  # STARTTLS peer answered something unexpected


class HandshakeError(Exception):
    """A handshake that did not complete; `detail` is short and holds no secret."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail


@dataclass(slots=True)
class HandshakeResult:
    """What a completed handshake negotiated and the certificates the peer showed."""

    version: str
    cipher: str
    group: str
    chain: list[bytes]  # DER, leaf first, as the peer sent it
    verified_chain: list[bytes]  # DER, leaf to trust anchor (empty when not verified)
    verify_errors: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0


def verify_callback(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    """Record chain errors on the connection and carry on, so facts are always seen."""
    if errno:
        errors = conn.get_app_data()
        if isinstance(errors, list):
            errors.append((errno, depth))
    return True


def _ssl_error_text(exc: SSL.Error) -> str:
    parts: list[str] = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and item and item[-1]:
            parts.append(str(item[-1]))
    return "; ".join(parts)[:200] or type(exc).__name__


def _pending(conn: SSL.Connection) -> bytes:
    chunks = []
    while True:
        try:
            chunks.append(conn.bio_read(65536))
        except SSL.WantReadError:
            break
    return b"".join(chunks)


def _chain(certs: list[crypto.X509] | None) -> list[bytes]:
    return [crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in certs or []]


class _Client(asyncio.Protocol):
    """Feeds socket bytes to an OpenSSL memory-BIO connection and back, on the loop.

    Driving the handshake from `data_received` (not from a coroutine reading a stream)
    costs one callback per flight instead of several task wake-ups.
    """

    def __init__(self, conn: SSL.Connection, starttls: str) -> None:
        self.conn = conn
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.awaiting_pg = starttls == "postgres"
        self.sent = False
        self.received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.awaiting_pg:
            transport.write(_PG_SSLREQUEST)
        else:
            self._step()

    def _fail(self, failure: Failure, detail: str) -> None:
        if not self.done.done():
            self.done.set_exception(HandshakeError(failure, detail))

    def flush(self) -> None:
        out = _pending(self.conn)
        if out and self.transport is not None:
            self.transport.write(out)
            self.sent = True

    def _step(self) -> None:
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            self.flush()
            return
        except SSL.Error as exc:
            sent_before = self.sent
            self.flush()  # the alert, if any
            self._fail(Failure.ALERT if sent_before else Failure.LOCAL, _ssl_error_text(exc))
            return
        self.flush()
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        if self.awaiting_pg:
            self.awaiting_pg = False
            if data[:1] == b"N":
                self._fail(Failure.NO_SSL, "PostgreSQL server does not offer SSL (answered N "
                           "to SSLRequest)")
            elif data != b"S":
                self._fail(Failure.PROTOCOL, "peer did not answer SSLRequest like PostgreSQL")
            else:
                self._step()
            return
        if not self.received and data[0] not in _TLS_RECORD_TYPES:
            self._fail(Failure.NOT_TLS, "peer is not speaking TLS (plain-text answer)")
            return
        self.received = True
        self.conn.bio_write(data)
        self._step()

    def eof_received(self) -> bool:
        self._fail(Failure.CLOSED, "peer closed the connection during the handshake")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError):
            self._fail(Failure.RESET, exc.strerror or "connection reset by peer")
        else:
            self._fail(Failure.CLOSED, "peer closed the connection during the handshake")


async def handshake(
    context: SSL.Context,
    host: str,
    port: int,
    server_name: str | None,
    within: float,
    *,
    starttls: str = "none",
    collect: bool = True,
) -> HandshakeResult:
    """Connect, optionally STARTTLS, and complete one TLS handshake in `within` seconds.

    With `collect` the peer chain and negotiated parameters are returned; raises
    `HandshakeError` otherwise.
    """
    started = time.perf_counter()
    transport: asyncio.BaseTransport | None = None
    loop = asyncio.get_running_loop()
    conn = SSL.Connection(context, None)
    conn.set_connect_state()
    if server_name:
        conn.set_tlsext_host_name(server_name.encode("idna"))
    errors: list[tuple[int, int]] = []
    conn.set_app_data(errors)
    client = _Client(conn, starttls)
    try:
        async with asyncio.timeout(within):
            try:
                transport, _ = await loop.create_connection(lambda: client, host, port)
            except socket.gaierror as exc:
                raise HandshakeError(Failure.DNS, f"cannot resolve {host}: {exc.strerror}") \
                    from None
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise HandshakeError(Failure.CONNECT, f"cannot connect to {host}:{port}: "
                                     f"{reason}") from None
            await client.done
        result = HandshakeResult(
            version=conn.get_protocol_version_name(),
            cipher=conn.get_cipher_name() or "",
            group=(conn.get_group_name() or "") if hasattr(conn, "get_group_name") else "",
            chain=_chain(conn.get_peer_cert_chain()) if collect else [],
            verified_chain=(_chain(conn.get_verified_chain())
                            if collect and not errors else []),
            verify_errors=errors,
            seconds=time.perf_counter() - started,
        )
        with contextlib.suppress(SSL.Error):
            conn.shutdown()
        client.flush()  # close_notify
        return result
    except TimeoutError:
        raise HandshakeError(Failure.TIMEOUT, f"no TLS handshake with {host}:{port} within "
                             f"{within:g}s") from None
    finally:
        if transport is not None:
            transport.close()
