"""One TLS client options model for every transport, and the `ssl.SSLContext` it builds.

The option names are those of Prometheus exporter-toolkit and blackbox_exporter's
`tls_config`: `ca_file`, `cert_file`, `key_file`, `server_name`, `insecure_skip_verify`.
A file that is missing, unreadable or not PEM ends the run as `error/config` naming the
option (`tls.ca_file: /etc/ca.pem does not exist`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import Field, model_validator

from exporter.model import ProbeError, Reason
from exporter.transport.spellings import RenamedOptions

__all__ = ["TlsClientOptions", "TlsContexts", "build_ssl_context"]



class TlsClientOptions(RenamedOptions):
    """TLS client options (`tls:` of every kind that talks to a server)."""

    renamed = {"client_cert": "cert_file", "client_key": "key_file"}

    ca_file: Path | None = Field(default=None, description="PEM CA bundle to trust "
                                 "(default: the system store)")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM)")
    key_file: Path | None = Field(default=None, description="client key (PEM)")
    server_name: str | None = Field(default=None, description="name sent as SNI and "
                                    "verified in the certificate, when it differs from "
                                    "the host")
    insecure_skip_verify: bool = Field(default=False, description="do not verify the "
                                       "server certificate (never in production)")

    @model_validator(mode="after")
    def _consistent(self) -> TlsClientOptions:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError("ca_file is pointless with insecure_skip_verify")
        return self

    def files(self) -> tuple[tuple[str, Path], ...]:
        """(option name, path) of every file option that is set."""
        named = (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                 ("key_file", self.key_file))
        return tuple((name, path) for name, path in named if path is not None)

    def fingerprint(self) -> tuple[object, ...]:
        """The options plus each file's modification time (a changed file is rebuilt)."""
        return (self, *(_mtime(path) for _, path in self.files()))


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _check_file(option: str, path: Path) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ProbeError(Reason.CONFIG, f"{option}: {path} does not exist; fix the path "
                         "or remove the option") from None
    except IsADirectoryError:
        raise ProbeError(Reason.CONFIG, f"{option}: {path} is a directory, not a PEM "
                         "file") from None
    except OSError as exc:
        raise ProbeError(Reason.CONFIG, f"{option}: {path} cannot be read "
                         f"({(exc.strerror or type(exc).__name__).lower()})") from None


def build_ssl_context(options: TlsClientOptions, option_path: str = "tls") -> ssl.SSLContext:
    """Build the client context (blocking: reads files). Raises `ProbeError(config)`."""
    for name, path in options.files():
        _check_file(f"{option_path}.{name}", path)
    context = ssl.create_default_context()
    if options.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(options.ca_file))
        except (ssl.SSLError, ValueError):
            raise ProbeError(Reason.CONFIG, f"{option_path}.ca_file: {options.ca_file} holds "
                             "no PEM certificate") from None
    if options.cert_file is not None and options.key_file is not None:
        try:
            context.load_cert_chain(str(options.cert_file), str(options.key_file))
        except ssl.SSLError:
            raise ProbeError(Reason.CONFIG, f"{option_path}.cert_file / "
                             f"{option_path}.key_file: {options.cert_file} and "
                             f"{options.key_file} are not a matching PEM certificate and "
                             "unencrypted key") from None
    return context


class TlsContexts:
    """Built contexts of one runtime, keyed by options and file times (bounded)."""

    def __init__(self, limit: int = 64) -> None:
        self._built: dict[tuple[object, ...], ssl.SSLContext] = {}
        self._limit = limit

    async def get(
        self,
        options: TlsClientOptions,
        option_path: str,
        run_blocking: Callable[[Callable[[TlsClientOptions, str], ssl.SSLContext],
                                TlsClientOptions, str], Awaitable[ssl.SSLContext]],
    ) -> ssl.SSLContext:
        """The context for `options`, built in the thread pool on first use."""
        key = options.fingerprint()
        context = self._built.get(key)
        if context is None:
            context = await run_blocking(build_ssl_context, options, option_path)
            if len(self._built) >= self._limit:
                self._built.clear()
            self._built[key] = context
        return context
