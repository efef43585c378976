"""Local TLS peers for the tls_endpoint tests: real pyOpenSSL servers on loopback.

Each server listens on a free 127.0.0.1 port (bound to port 0, so xdist workers never
collide) and serves connections in daemon threads. Besides TLS servers with any
certificate, version range and group list, there are bad peers: one that accepts and
never speaks, one that resets, one that answers in plain HTTP.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL


def server_context(chain_pem: bytes, key_pem: bytes, *, min_version: int = SSL.TLS1_2_VERSION,
                   max_version: int = SSL.TLS1_3_VERSION, legacy: bool = False,
                   groups: str | None = None) -> SSL.Context:
    """A pyOpenSSL server context serving `chain_pem` (leaf first) with `key_pem`."""
    context = SSL.Context(SSL.TLS_METHOD)
    with tempfile.TemporaryDirectory() as tmp:  # file loading accepts every key type
        chain_file, key_file = Path(tmp, "chain.pem"), Path(tmp, "key.pem")
        chain_file.write_bytes(chain_pem)
        key_file.write_bytes(key_pem)
        context.use_certificate_chain_file(str(chain_file))
        context.use_privatekey_file(str(key_file))
    context.set_min_proto_version(min_version)
    context.set_max_proto_version(max_version)
    if legacy:
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if groups is not None:
        from OpenSSL._util import lib

        assert lib.SSL_CTX_set1_curves_list(context._context, groups.encode()) == 1
    return context


def cert_context(cert: trustme.LeafCert, **kwargs: object) -> SSL.Context:
    """`server_context` for a trustme leaf."""
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return server_context(chain, cert.private_key_pem.bytes(), **kwargs)  # type: ignore[arg-type]


class Peer:
    """A loopback listener whose connections are handled by `handler` in threads."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.handler = handler
        self.connections = 0
        self._closed = False
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        with contextlib.suppress(Exception):
            self.handler(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def close(self) -> None:
        """Stop accepting and drop open connections."""
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()


def tls_handler(context: SSL.Context, *, postgres: bool = False) -> Callable[[socket.socket],
                                                                            None]:
    """Serve TLS (after a PostgreSQL SSLRequest when `postgres`) and close cleanly."""

    def handle(sock: socket.socket) -> None:
        sock.settimeout(None)  # pyOpenSSL treats a socket timeout as non-blocking I/O
        if postgres:
            request = sock.recv(8)
            assert struct.unpack("!II", request) == (8, 80877103)
            sock.sendall(b"S")
        conn = SSL.Connection(context, sock)
        conn.set_accept_state()
        conn.do_handshake()
        with contextlib.suppress(SSL.Error, OSError):
            conn.recv(1024)  # wait for the client's close_notify / FIN
        with contextlib.suppress(SSL.Error, OSError):
            conn.shutdown()

    return handle


def silent_handler(sock: socket.socket) -> None:
    """Accept and never speak (holds the connection until the client gives up)."""
    with contextlib.suppress(OSError):
        sock.recv(65536)
        sock.recv(65536)


def reset_handler(sock: socket.socket) -> None:
    """Read the ClientHello, then reset the connection (RST)."""
    sock.recv(65536)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def http_handler(sock: socket.socket) -> None:
    """Answer whatever arrives with a plain-text HTTP response."""
    sock.recv(65536)
    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@contextlib.contextmanager
def peer(handler: Callable[[socket.socket], None]) -> Iterator[Peer]:
    """A started `Peer`, closed afterwards."""
    server = Peer(handler)
    try:
        yield server
    finally:
        server.close()


def dated_cert(ca: trustme.CA, host: str, not_before: datetime.datetime,
               not_after: datetime.datetime) -> trustme.LeafCert:
    """A leaf for `host` with explicit validity dates."""
    return ca.issue_cert(host, not_before=not_before, not_after=not_after)


def ml_dsa_cert(tmp: Path, cn: str = "pq.example", level: int = 65) -> tuple[bytes, bytes]:
    """A self-signed ML-DSA certificate (ML-DSA-44, 65 or 87) and its key, both PEM."""
    keys = {44: mldsa.MLDSA44PrivateKey, 65: mldsa.MLDSA65PrivateKey,
            87: mldsa.MLDSA87PrivateKey}
    key = keys[level].generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, None))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def self_signed_cert(host: str) -> tuple[bytes, bytes]:
    """A self-signed ECDSA certificate for `host` and its key, both PEM."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tweaked_cert(cn: str | None, *, serial: int = 5, days_left: float = 90,
                 days_since: float = 1, version: int = 2, duplicate_extension: bool = False,
                 san: bool = True) -> tuple[bytes, bytes]:
    """A self-signed ECDSA certificate (DER) and its key (PEM) that `cryptography`'s
    builder refuses to make: any serial (zero, negative), any X.509 version number, an
    extension present twice.

    The certificate is built normally, its TBS edited with asn1crypto and signed again,
    so OpenSSL still loads it and a TLS server can present it.
    """
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now - datetime.timedelta(days=days_since))
               .not_valid_after(now + datetime.timedelta(days=days_left))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                              critical=True))
    if san and cn:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]),
                                        critical=False)
    built = builder.sign(key, hashes.SHA256())
    cert = asn1_x509.Certificate.load(built.public_bytes(serialization.Encoding.DER))
    tbs = cert["tbs_certificate"]
    tbs["serial_number"] = serial
    tbs["version"] = version
    if duplicate_extension:
        tbs["extensions"].append(tbs["extensions"][0].copy())
    cert["signature_value"] = key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.dump(force=True), key_pem


def der_to_pem(der: bytes) -> bytes:
    """One PEM CERTIFICATE block for a DER certificate."""
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"
