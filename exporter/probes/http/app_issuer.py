"""2.1.4, the application side: the issuer the application is configured with (its
config file or its own endpoint) equals the IdP's, or its login redirects to the IdP's
`authorization_endpoint`. Discovery alone says the IdP works, not that the app uses it.
"""

from __future__ import annotations

from typing import Any

from yarl import URL

from exporter.model import Findings, ProbeContext, ProbeError, Reason
from exporter.probes.config_value import load_document
from exporter.probes.config_value import lookup as config_lookup
from exporter.probes.http import metrics as m
from exporter.probes.http.assertions import lookup as json_lookup
from exporter.probes.http.client import Caller
from exporter.probes.http.documents import parse_json, url_host
from exporter.probes.http.spec import ApplicationIssuerSpec

__all__ = ["check_application_issuer"]


def _same_endpoint(location: str, endpoint: str) -> bool:
    """Same scheme, host, port and path (the query carries client_id, state, ...)."""
    try:
        got, want = URL(location), URL(endpoint)
    except ValueError:
        return False
    return (got.scheme, got.host, got.port, got.path.rstrip("/")) == (
        want.scheme, want.host, want.port, want.path.rstrip("/"))


def _host(value: object) -> str:
    """A URL by its host only (its path or query may carry a token)."""
    host = url_host(value)
    return f"host {host}" if host else "not a URL"


async def _configured_issuer(spec: ApplicationIssuerSpec, caller: Caller,
                             ctx: ProbeContext) -> tuple[Any, str]:
    """(the application's issuer, where it was read)."""
    if spec.config_file is not None:
        document = await ctx.run_blocking(load_document, spec.config_file, "auto")
        found = config_lookup(document, spec.config_path)
        where = f"{spec.config_file}:{spec.config_path}"
        if not isinstance(found, str):
            raise ProbeError(Reason.CONFIG, f"no issuer string at {where}: set "
                             "oidc.application.config_path")
        return found, where
    assert spec.discovery_url is not None
    response = await caller.call("GET", spec.discovery_url, authenticated=False)
    where = f"{URL(spec.discovery_url).with_query(None)} {spec.issuer_path}"
    if response.status != 200:
        raise ProbeError(Reason.PROTOCOL, f"{where} answered {response.status}")
    try:
        found = json_lookup(await parse_json(response, ctx), spec.issuer_path)
    except ValueError:
        raise ProbeError(Reason.PROTOCOL, f"{where} is not JSON") from None
    if not isinstance(found, str):
        raise ProbeError(Reason.PROTOCOL, f"no issuer string at {where}: set "
                         "oidc.application.issuer_path")
    return found, where


async def check_application_issuer(spec: ApplicationIssuerSpec, idp: dict[str, Any],
                                   caller: Caller, ctx: ProbeContext,
                                   report: Findings) -> None:
    """Compare the application's OIDC setting with the IdP's discovery document `idp`."""
    if spec.login_url is not None:
        endpoint = idp.get("authorization_endpoint")
        response = await caller.call("GET", spec.login_url, authenticated=False,
                                     read_body=False)
        location = response.headers.get("Location", "")
        ok = (300 <= response.status < 400 and isinstance(endpoint, str)
              and _same_endpoint(str(URL(spec.login_url).join(URL(location))), endpoint))
        report.measure(m.OIDC_APP_MATCHES, 1 if ok else 0)
        if ok:
            report.note("the application's login redirects to the IdP's "
                        "authorization_endpoint")
        elif not 300 <= response.status < 400:
            report.problem(f"the application's login answered {response.status}, not a "
                           "redirect to the IdP")
        else:
            report.problem(f"the application's login redirects to {_host(location)}, not "
                           "the IdP's authorization_endpoint")
        return
    found, where = await _configured_issuer(spec, caller, ctx)
    ok = found == idp.get("issuer")
    report.measure(m.OIDC_APP_MATCHES, 1 if ok else 0)
    if ok:
        report.note(f"the application's issuer ({where}) equals the IdP's")
    else:
        report.problem(f"the application's issuer ({where}) is {_host(found)}, not the "
                       "IdP's issuer")
