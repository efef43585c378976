"""Conformance: every migrated probe kind, through its transport, gives the same reason
for the same failure against real servers on loopback, never shows a secret, and keeps
its measurements on error where they mean something.

To add a transport: add a `Family` in `conformance_servers.py` (a TLS server and a
server refusing credentials for its protocol) and one `Subject` per probe kind below.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Outcome, Reason, Status
from exporter.runner import run_check
from tests.transport.conformance_servers import (
    HTTP_FAMILY,
    UNRESOLVABLE_HOST,
    Endpoint,
    Family,
    refused,
    silent_server,
    unresolvable,
)

TOKEN_ENV = "READINESS_CONFORMANCE_TOKEN"
UNSET_ENV = "READINESS_CONFORMANCE_TOKEN_UNSET"
TIMEOUT = 1.5


def _base(endpoint: Endpoint) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{'https' if endpoint.tls else 'http'}://{host}:{endpoint.port}"


@dataclass(frozen=True)
class Subject:
    """One probe kind under test: how to point a check of it at an endpoint."""

    kind: str
    family: Family
    fields: Callable[[Endpoint], dict[str, Any]]
    """Kind-specific fields targeting the endpoint (no credentials, no TLS)."""
    kept_on_error: frozenset[str] = field(default_factory=frozenset)
    """Families that must still be exported when the transport fails."""
    credentials: Callable[[str], dict[str, Any]] = lambda env: {"bearer_token": f"${{{env}}}"}
    tls_option: str = "tls"

    def spec(self, endpoint: Endpoint, *, tls: dict[str, Any] | None = None,
             token_env: str = TOKEN_ENV) -> CheckSpec:
        data: dict[str, Any] = {
            "id": f"conformance-{self.kind}", "section": "1.1", "title": "conformance",
            "kind": self.kind, "timeout": TIMEOUT, **self.fields(endpoint),
            **self.credentials(token_env),
        }
        if tls is not None:
            data[self.tls_option] = tls
        return registry.probe_kind(self.kind).spec.model_validate(data)


SUBJECTS = [
    Subject("http", HTTP_FAMILY, lambda e: {"url": f"{_base(e)}/health"},
            frozenset({"readiness_http_status_code"})),
    Subject("prometheus_query", HTTP_FAMILY, lambda e: {"url": _base(e), "query": "up"},
            frozenset({"readiness_prometheus_query_threshold"})),
    Subject("alertmanager", HTTP_FAMILY,
            lambda e: {"url": _base(e), "mode": "active_alerts"},
            frozenset({"readiness_alertmanager_active_alerts_max"})),
    Subject("report", HTTP_FAMILY,
            lambda e: {"url": f"{_base(e)}/reports/junit.xml", "format": "junit"},
            frozenset({"readiness_report_max_age_seconds"})),
]


@dataclass(frozen=True)
class Case:
    """One failure and the reason every kind must give for it."""

    name: str
    reason: Reason
    transport_reached: bool = True
    """Whether a connection was attempted (then `kept_on_error` applies)."""


CASES = [
    Case("refused", Reason.CONNECT),
    Case("dns", Reason.DNS),
    Case("silent", Reason.TIMEOUT),
    Case("wrong_ca", Reason.TLS),
    Case("wrong_credentials", Reason.AUTH),
    Case("missing_ca_file", Reason.CONFIG, transport_reached=False),
    Case("unset_secret", Reason.CONFIG, transport_reached=False),
]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"conformance-s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv(TOKEN_ENV, value)
    monkeypatch.delenv(UNSET_ENV, raising=False)
    return value


@contextlib.asynccontextmanager
async def _check_for(case: Case, subject: Subject, ca: trustme.CA, other_ca: Path,
                     tmp_path: Path) -> AsyncIterator[CheckSpec]:
    if case.name == "refused":
        yield subject.spec(refused())
    elif case.name == "dns":
        yield subject.spec(unresolvable())
    elif case.name == "silent":
        async with silent_server() as endpoint:
            yield subject.spec(endpoint)
    elif case.name == "wrong_ca":
        async with subject.family.tls_server(ca) as endpoint:
            yield subject.spec(endpoint, tls={"ca_file": str(other_ca)})
    elif case.name == "wrong_credentials":
        async with subject.family.rejecting_server() as endpoint:
            yield subject.spec(endpoint)
    elif case.name == "missing_ca_file":
        yield subject.spec(refused(), tls={"ca_file": str(tmp_path / "missing-ca.pem")})
    elif case.name == "unset_secret":
        yield subject.spec(refused(), token_env=UNSET_ENV)
    else:  # pragma: no cover - a new case needs its set-up here
        raise AssertionError(case.name)


def _secret_free(outcome: Outcome, secret: str) -> None:
    assert secret not in outcome.message
    assert secret not in repr(outcome)
    for measurement in outcome.measurements:
        assert secret not in "".join(measurement.labels.values())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("subject", SUBJECTS, ids=[s.kind for s in SUBJECTS])
async def test_same_failure_same_reason(subject: Subject, case: Case, ca: trustme.CA,
                                        other_ca: Path, token: str, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    context = RuntimeContext(state_dir=tmp_path / "state")
    try:
        async with _check_for(case, subject, ca, other_ca, tmp_path) as spec:
            outcome, _ = await run_check(spec, context)
    finally:
        await context.aclose()
    assert outcome.status is Status.ERROR, outcome
    assert outcome.reason is case.reason, outcome.message
    _secret_free(outcome, token)
    assert token not in caplog.text
    if case.transport_reached:
        kept = {m.family for m in outcome.measurements}
        assert subject.kept_on_error <= kept, outcome.measurements


@pytest.mark.parametrize("subject", SUBJECTS, ids=[s.kind for s in SUBJECTS])
async def test_messages_name_what_to_change(subject: Subject, token: str, tmp_path: Path,
                                            ca: trustme.CA, other_ca: Path) -> None:
    """Errors name the target (host:port) or the option to fix."""
    context = RuntimeContext(state_dir=tmp_path / "state")
    try:
        outcomes = {}
        for name in ("dns", "missing_ca_file", "unset_secret"):
            case = next(c for c in CASES if c.name == name)
            async with _check_for(case, subject, ca, other_ca, tmp_path) as spec:
                outcomes[name], _ = await run_check(spec, context)
    finally:
        await context.aclose()
    assert UNRESOLVABLE_HOST in outcomes["dns"].message
    assert f"{subject.tls_option}.ca_file" in outcomes["missing_ca_file"].message
    assert "missing-ca.pem" in outcomes["missing_ca_file"].message
    assert UNSET_ENV in outcomes["unset_secret"].message
    assert "bearer_token" in outcomes["unset_secret"].message


@pytest.mark.parametrize("subject", SUBJECTS, ids=[s.kind for s in SUBJECTS])
async def test_the_right_ca_is_trusted(subject: Subject, ca: trustme.CA, token: str,
                                       tmp_path: Path) -> None:
    """The wrong-CA case is not a broken TLS server: with the right CA the handshake
    succeeds (whatever the kind then thinks of the answer)."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = RuntimeContext(state_dir=tmp_path / "state")
    try:
        async with subject.family.tls_server(ca) as endpoint:
            outcome, _ = await run_check(subject.spec(endpoint, tls={"ca_file": str(ca_file)}),
                                         context)
    finally:
        await context.aclose()
    assert outcome.reason not in (Reason.TLS, Reason.CONNECT, Reason.TIMEOUT), outcome
