"""One table-driven mapping from exceptions to `Reason`, shared by every transport.

A table is a list of rows `(exception type, reason, message template)`. `classify`
walks the exception's class hierarchy (most specific class first) and uses the first
class that has a row, so the order rows are registered in does not matter. A transport
extends the base table with its client library's exceptions.

Templates may use `{target}` (host:port or URL, never credentials), `{cause}` (the OS
error text, e.g. "connection refused", else the exception type), `{type}` (the
exception type name), `{within}` (" within 3s" when the timeout is known) and
`{detail}` (a row's own detail function). The exception's own text is never used: client
libraries put DSNs, URLs with passwords and tokens in it.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.model import ProbeError, Reason

__all__ = [
    "BASE_ERRORS",
    "CredentialsRejected",
    "ErrorRow",
    "ErrorTable",
    "os_cause",
    "verify_detail",
]


class CredentialsRejected(Exception):
    """Raised by a transport when the server refused the credentials (401, 403, NOAUTH).

    The argument is a short, secret-free detail such as "HTTP 401".
    """


def os_cause(error: BaseException | None) -> str:
    """'connection refused', 'no route to host'... from an OS error's errno, else its type."""
    if error is None:
        return "unknown error"
    inner = getattr(error, "os_error", None)  # aiohttp wraps the OS error
    if isinstance(inner, OSError):
        error = inner
    if isinstance(error, OSError) and error.errno and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno).lower()
    return type(error).__name__


def verify_detail(exc: BaseException) -> str:
    """The certificate verification reason of an ssl error (or of a library's wrapper)."""
    error = getattr(exc, "certificate_error", exc)  # aiohttp keeps the ssl error there
    message = getattr(error, "verify_message", None)
    return str(message) if message else "verification failed"


def _rejected_detail(exc: BaseException) -> str:
    return f" ({exc.args[0]})" if exc.args and isinstance(exc.args[0], str) else ""


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One row: instances of `exc_type` (and subclasses without their own row) map to
    `reason`, with a message built from `template`."""

    exc_type: type[BaseException]
    reason: Reason
    template: str
    detail: Callable[[BaseException], str] | None = None


class ErrorTable:
    """Exception type -> (reason, message template); see the module docstring.

    `translate`, when given, first replaces an exception by the one that decides its row
    (a library error that only wraps a lost connection becomes that loss); tables made
    by `extend` keep it.
    """

    def __init__(self, rows: Iterable[ErrorRow] = (),
                 translate: Callable[[BaseException], BaseException] | None = None) -> None:
        self._rows: dict[type[BaseException], ErrorRow] = {}
        self._translate = translate
        for row in rows:
            self.register(row)

    def register(self, row: ErrorRow) -> None:
        """Add a row (replacing the row of the same exception type)."""
        self._rows[row.exc_type] = row

    def extend(self, rows: Iterable[ErrorRow],
               translate: Callable[[BaseException], BaseException] | None = None
               ) -> ErrorTable:
        """A new table: these rows on top of this table's rows (and `translate`, else
        this table's)."""
        table = ErrorTable(self._rows.values(), translate or self._translate)
        for row in rows:
            table.register(row)
        return table

    def row_for(self, exc: BaseException) -> ErrorRow | None:
        """The row of the most specific class of `exc` that has one."""
        for klass in type(exc).__mro__:
            row = self._rows.get(klass)
            if row is not None:
                return row
        return None

    def classify(self, exc: BaseException, target: str,
                 timeout: float | None = None) -> ProbeError:
        """A `ProbeError` for `exc` naming `target`; `error/internal` when no row fits.

        A `ProbeError` is returned unchanged. When `exc` has no row, its `__cause__`
        (the library's underlying error) is tried before giving up.
        """
        if isinstance(exc, ProbeError):
            return exc
        if self._translate is not None:
            exc = self._translate(exc)
        row = self.row_for(exc)
        if row is None and exc.__cause__ is not None and exc.__cause__ is not exc:
            return self.classify(exc.__cause__, target, timeout)
        if row is None:
            return ProbeError(Reason.INTERNAL, f"{target}: unexpected {type(exc).__name__}")
        message = row.template.format(
            target=target,
            cause=os_cause(exc),
            type=type(exc).__name__,
            within=f" within {timeout:.3g}s" if timeout is not None else "",
            detail=row.detail(exc) if row.detail is not None else "",
        )
        return ProbeError(row.reason, message)


BASE_ERRORS = ErrorTable([
    ErrorRow(socket.gaierror, Reason.DNS, "cannot resolve {target}"),
    ErrorRow(ConnectionRefusedError, Reason.CONNECT,
             "cannot connect to {target}: connection refused"),
    ErrorRow(ConnectionError, Reason.CONNECT, "connection to {target} failed: {cause}"),
    ErrorRow(OSError, Reason.CONNECT, "cannot connect to {target}: {cause}"),
    ErrorRow(TimeoutError, Reason.TIMEOUT, "{target} did not answer{within}"),
    ErrorRow(ssl.SSLCertVerificationError, Reason.TLS,
             "TLS certificate of {target} rejected: {detail} (see tls.ca_file and "
             "tls.server_name)", verify_detail),
    ErrorRow(ssl.SSLError, Reason.TLS, "TLS handshake with {target} failed"),
    ErrorRow(CredentialsRejected, Reason.AUTH, "{target} rejected the credentials{detail}",
             _rejected_detail),
])
"""Rows every transport shares: OS, socket, ssl and timeout errors, rejected credentials."""
