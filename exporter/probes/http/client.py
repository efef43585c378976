"""What every request of one `http` run shares: the transport client, one deadline, the
run's headers and credentials.

Sending, TLS and the mapping of failures to reasons belong to the HTTP transport
(`exporter.transport.http`); this module only shares the run's deadline between the
main request and the sub-checks' extra requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict

from exporter.transport.base import Deadline
from exporter.transport.http import HttpClient, Response

__all__ = ["USER_AGENT", "Caller", "Deadline", "Response"]

USER_AGENT = "readiness-exporter/http-probe"
"""What `http` checks send as User-Agent (unchanged by the transport layer: WAF rules and
access-log filters may name it); other HTTP kinds send `readiness-exporter`."""


@dataclass(frozen=True, slots=True)
class Caller:
    """What every request of one run shares: client, deadline and headers."""

    client: HttpClient
    deadline: Deadline
    headers: Mapping[str, str]
    auth_headers: Mapping[str, str]
    max_body_bytes: int

    async def call(
        self,
        method: str,
        url: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
        read_body: bool = True,
    ) -> Response:
        """One request with the run's headers (and credentials unless told not to)."""
        headers: CIMultiDict[str] = CIMultiDict(self.headers)
        headers.setdefault("User-Agent", USER_AGENT)
        if authenticated:
            headers.update(self.auth_headers)
        if extra_headers:
            headers.update(extra_headers)
        return await self.client.request(
            method, url, budget=self.deadline.remaining(), headers=headers, data=data,
            params=params, follow_redirects=follow_redirects,
            max_body_bytes=self.max_body_bytes, read_body=read_body and method != "HEAD")
