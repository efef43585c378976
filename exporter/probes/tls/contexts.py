"""OpenSSL client contexts for `tls_endpoint`, built once per configuration and reused.

A context holds the CA store (parsing a system bundle costs milliseconds), so it is
cached by its settings and the modification times of the files it reads. Building one
is blocking: call `build_contexts` from a worker thread.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from exporter.probes.tls.certinfo import UnparsableCertificate, parsed_der
from exporter.probes.tls.handshake import verify_callback

__all__ = [
    "VERSIONS",
    "VERSION_NAMES",
    "ContextError",
    "ContextSettings",
    "Contexts",
    "build_contexts",
    "cache_key",
    "cached_contexts",
    "can_offer",
    "hostname_matches",
    "leaf_matches",
    "store_contexts",
    "verification_result",
]

VERSIONS: Mapping[str, int] = {
    "1.0": SSL.TLS1_VERSION,
    "1.1": SSL.TLS1_1_VERSION,
    "1.2": SSL.TLS1_2_VERSION,
    "1.3": SSL.TLS1_3_VERSION,
}
VERSION_NAMES: Mapping[str, str] = {
    "TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3",
}


class ContextError(Exception):
    """A context cannot be built from the configuration (message names the option)."""


@dataclass(frozen=True, slots=True)
class ContextSettings:
    """Everything a client context depends on (the cache key, with file mtimes)."""

    ca_file: str | None
    client_cert: str | None
    client_key: str | None
    groups: tuple[str, ...]
    legacy_ciphers: str
    versions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Contexts:
    """The verifying main context and one pinned-version context per probed version."""

    main: SSL.Context
    by_version: Mapping[str, SSL.Context]
    offerable: Mapping[str, bool]  # False: the local library cannot offer that version


def can_offer(context: SSL.Context) -> bool:
    """Can the local library write a ClientHello with this context (no network used)?"""
    conn = SSL.Connection(context, None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return True
    except SSL.Error:
        return False
    return True


def _mtime(path: str | None) -> float:
    if path is None:
        return 0.0
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


def _set_groups(context: SSL.Context, groups: tuple[str, ...]) -> None:
    if not groups:
        return
    from OpenSSL._util import lib  # pyOpenSSL has no public setter for groups

    setter = getattr(lib, "SSL_CTX_set1_curves_list", None)
    if setter is None:
        raise ContextError("groups: the local OpenSSL binding cannot set key-exchange groups")
    # pyOpenSSL has no public call for groups and the standard library's ssl module has no
    # set_groups before Python 3.15 (requires-python is 3.11): the binding needs the raw
    # SSL_CTX, which pyOpenSSL keeps in `_context`. Drop this once either offers a setter.
    raw_context = context._context  # noqa: SLF001
    if setter(raw_context, ":".join(groups).encode()) != 1:
        raise ContextError(f"groups: the local OpenSSL does not know one of {', '.join(groups)}")


def _client_identity(context: SSL.Context, settings: ContextSettings,
                     key_password: bytes | None) -> None:
    if settings.client_cert is None:
        return
    try:
        context.use_certificate_chain_file(settings.client_cert)
    except (SSL.Error, OSError):
        raise ContextError(f"client_cert: {settings.client_cert} cannot be loaded") from None
    key_path = settings.client_key or settings.client_cert
    try:
        if key_password is None:
            context.use_privatekey_file(key_path)
        else:
            with open(key_path, "rb") as handle:
                key = serialization.load_pem_private_key(handle.read(), key_password)
            context.use_privatekey(key)  # type: ignore[arg-type]
        context.check_privatekey()
    except (SSL.Error, OSError, ValueError, TypeError):
        raise ContextError("client_key: the key cannot be loaded or does not match "
                           "client_cert") from None


def build_contexts(settings: ContextSettings, key_password: bytes | None) -> Contexts:
    """Build the contexts (blocking: reads CA and client files)."""
    main = SSL.Context(SSL.TLS_METHOD)
    main.set_verify(SSL.VERIFY_PEER, verify_callback)
    if settings.ca_file is not None:
        try:
            main.load_verify_locations(settings.ca_file)
        except (SSL.Error, OSError):
            raise ContextError(f"ca_file: {settings.ca_file} is not a readable PEM CA "
                               "bundle") from None
    else:
        main.set_default_verify_paths()
    main.set_options(SSL.OP_NO_TICKET)
    _set_groups(main, settings.groups)
    _client_identity(main, settings, key_password)

    by_version: dict[str, SSL.Context] = {}
    for name in settings.versions:
        pinned = SSL.Context(SSL.TLS_METHOD)
        pinned.set_verify(SSL.VERIFY_NONE)
        pinned.set_min_proto_version(VERSIONS[name])
        pinned.set_max_proto_version(VERSIONS[name])
        pinned.set_options(SSL.OP_NO_TICKET)
        if name != "1.3":
            try:
                pinned.set_cipher_list(settings.legacy_ciphers.encode())
            except SSL.Error:
                raise ContextError("legacy_ciphers: no cipher matches "
                                   f"{settings.legacy_ciphers!r}") from None
        _set_groups(pinned, settings.groups)
        _client_identity(pinned, settings, key_password)
        by_version[name] = pinned
    offerable = {name: can_offer(pinned) for name, pinned in by_version.items()}
    return Contexts(main, by_version, offerable)


_CACHE: dict[tuple[object, ...], Contexts] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 256


def cache_key(settings: ContextSettings, key_password: bytes | None) -> tuple[object, ...]:
    """The cache key: settings, mtimes of the files they name, a digest of the password."""
    digest = None if key_password is None else hashlib.sha256(key_password).hexdigest()
    return (settings, _mtime(settings.ca_file), _mtime(settings.client_cert),
            _mtime(settings.client_key), digest)


def cached_contexts(key: tuple[object, ...]) -> Contexts | None:
    """A context built earlier for exactly this key."""
    with _CACHE_LOCK:
        return _CACHE.get(key)


def store_contexts(key: tuple[object, ...], contexts: Contexts) -> None:
    """Remember contexts for `key` (the cache is bounded)."""
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = contexts


def _dns_match(pattern: str, name: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    name = name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:] and "." in pattern[2:]
    return pattern == name


def hostname_matches(cert: x509.Certificate, name: str) -> bool:
    """Does the leaf certificate cover `name` (DNS name or IP address)?"""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:
            ascii_name = name.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_name = name
        return any(_dns_match(p, ascii_name) for p in san.get_values_for_type(x509.DNSName))
    return address in san.get_values_for_type(x509.IPAddress)


# OpenSSL X509_V_ERR_* codes -> bounded verification results
_EXPIRED = {10}
_NOT_YET = {9}
_SELF_SIGNED = {18}


@functools.lru_cache(maxsize=4096)
def leaf_matches(leaf_der: bytes, name: str) -> bool:
    """`hostname_matches` for a DER leaf, remembered (the same leaf comes back every run).

    Raises `UnparsableCertificate` when `cryptography` rejects the leaf.
    """
    return hostname_matches(parsed_der(leaf_der)[0], name)


def verification_result(errors: list[tuple[int, int]], leaf_der: bytes | None,
                        server_name: str) -> str:
    """`ok`, `expired`, `not_yet_valid`, `self_signed`, `untrusted`, `unparsable` (OpenSSL
    accepted the chain but the leaf cannot be parsed, so its names cannot be checked) or
    `hostname_mismatch`."""
    codes = {code for code, _ in errors}
    if codes & _EXPIRED:
        return "expired"
    if codes & _NOT_YET:
        return "not_yet_valid"
    if codes & _SELF_SIGNED:
        return "self_signed"
    if codes:
        return "untrusted"
    try:
        matches = leaf_der is not None and leaf_matches(leaf_der, server_name)
    except UnparsableCertificate:
        return "unparsable"
    if not matches:
        return "hostname_mismatch"
    return "ok"
