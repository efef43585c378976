"""The transport foundation: error table, TLS options, secret policy, old spellings,
client registry, refreshing credentials, lifespans, Findings and ProbeError measurements."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import trustme
from pydantic import BaseModel, ValidationError

from exporter import registry
from exporter.context import RuntimeContext
from exporter.model import (
    CheckSpec,
    Findings,
    Lifespan,
    Measurement,
    MetricFamily,
    Outcome,
    ProbeContext,
    ProbeError,
    ProbeKind,
    Reason,
    SecretRef,
    Status,
)
from exporter.runner import run_check
from exporter.transport.base import Transport, TransportRuntime
from exporter.transport.credentials import Expiring, RefreshingCredential
from exporter.transport.errors import BASE_ERRORS, CredentialsRejected, ErrorRow
from exporter.transport.secrets import resolve_optional, resolve_secret
from exporter.transport.spellings import RenamedOptions, deprecation_warnings
from exporter.transport.tls import TlsClientOptions, build_ssl_context

# --------------------------------------------------------------------------- error table


@pytest.mark.parametrize(("exc", "reason", "fragment"), [
    (socket.gaierror(-2, "Name or service not known"), Reason.DNS, "cannot resolve db:5432"),
    (ConnectionRefusedError(111, "Connection refused"), Reason.CONNECT, "connection refused"),
    (OSError(113, "No route to host"), Reason.CONNECT, "no route to host"),
    (TimeoutError(), Reason.TIMEOUT, "did not answer within 2s"),
    (ssl.SSLCertVerificationError(1, "x"), Reason.TLS, "certificate of db:5432 rejected"),
    (ssl.SSLError(1, "wrong version"), Reason.TLS, "handshake with db:5432"),
    (CredentialsRejected("HTTP 401"), Reason.AUTH, "rejected the credentials (HTTP 401)"),
    (KeyError("x"), Reason.INTERNAL, "unexpected KeyError"),
], ids=["dns", "refused", "unreachable", "timeout", "verify", "handshake", "auth", "other"])
def test_base_table_maps_exceptions_to_reasons(exc: BaseException, reason: Reason,
                                               fragment: str) -> None:
    error = BASE_ERRORS.classify(exc, "db:5432", timeout=2)
    assert error.reason is reason
    assert fragment in error.message


def test_the_most_specific_row_wins_whatever_the_registration_order() -> None:
    class Library(Exception):
        pass

    class LibraryAuth(Library):
        pass

    table = BASE_ERRORS.extend([ErrorRow(LibraryAuth, Reason.AUTH, "{target}: refused"),
                                ErrorRow(Library, Reason.PROTOCOL, "{target}: {type}")])
    assert table.classify(LibraryAuth(), "t").reason is Reason.AUTH
    assert table.classify(Library(), "t").message == "t: Library"
    # the base table is unchanged by extend()
    assert BASE_ERRORS.classify(LibraryAuth(), "t").reason is Reason.INTERNAL


def test_the_exception_text_never_reaches_the_message() -> None:
    exc = ConnectionRefusedError(111, "postgresql://app:hunter2@db/app refused")
    wrapped = RuntimeError("dsn postgresql://app:hunter2@db/app")
    wrapped.__cause__ = exc
    for error in (BASE_ERRORS.classify(exc, "db:5432"),
                  BASE_ERRORS.classify(wrapped, "db:5432")):
        assert "hunter2" not in error.message
        assert error.reason is Reason.CONNECT  # the cause is classified when needed


def test_a_probe_error_passes_through_unchanged() -> None:
    original = ProbeError(Reason.CONFIG, "x")
    assert BASE_ERRORS.classify(original, "t") is original


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls_context_trusts_the_configured_ca(ca: trustme.CA, tmp_path: Path) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert("client.test")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "k.pem"))
    options = TlsClientOptions(ca_file=tmp_path / "ca.pem", cert_file=tmp_path / "c.pem",
                               key_file=tmp_path / "k.pem")
    context = build_ssl_context(options)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) >= 1


def test_insecure_skip_verify_turns_verification_off() -> None:
    context = build_ssl_context(TlsClientOptions(insecure_skip_verify=True))
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda d: TlsClientOptions(ca_file=d / "missing.pem"),
     "api.tls.ca_file: {d}/missing.pem does not exist"),
    (lambda d: TlsClientOptions(ca_file=d),
     "api.tls.ca_file: {d} is a directory"),
    (lambda d: TlsClientOptions(ca_file=d / "junk.pem"),
     "api.tls.ca_file: {d}/junk.pem holds no PEM certificate"),
    (lambda d: TlsClientOptions(cert_file=d / "junk.pem", key_file=d / "junk.pem"),
     "api.tls.cert_file / api.tls.key_file"),
], ids=["missing", "directory", "not-pem", "bad-pair"])
def test_bad_tls_files_are_config_errors_naming_the_option(make: Any, fragment: str,
                                                           tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ProbeError) as caught:
        build_ssl_context(make(tmp_path), "api.tls")
    assert caught.value.reason is Reason.CONFIG
    assert fragment.format(d=tmp_path) in caught.value.message


def test_tls_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        TlsClientOptions(cert_file=Path("c.pem"))
    with pytest.raises(ValidationError, match="pointless"):
        TlsClientOptions(ca_file=Path("ca.pem"), insecure_skip_verify=True)
    with pytest.raises(ValidationError):
        TlsClientOptions.model_validate({"ca_fil": "x"})  # unknown keys rejected


# --------------------------------------------------------------------------- old spellings


class _Holder(BaseModel):
    tls: TlsClientOptions = TlsClientOptions()


class _FlatTls(RenamedOptions):
    renamed: ClassVar[dict[str, str]] = {"ca_file": "tls.ca_file"}
    tls: TlsClientOptions = TlsClientOptions()


def test_old_tls_spellings_load_with_a_deprecation_warning() -> None:
    holder = _Holder.model_validate({"tls": {"client_cert": "c.pem", "client_key": "k.pem"}})
    assert holder.tls.cert_file == Path("c.pem") and holder.tls.key_file == Path("k.pem")
    warnings = deprecation_warnings(holder, "checks (id x)")
    assert warnings == [
        "checks (id x).tls.client_cert is deprecated: write checks (id x).tls.cert_file "
        "(the old name is accepted until the next release)",
        "checks (id x).tls.client_key is deprecated: write checks (id x).tls.key_file "
        "(the old name is accepted until the next release)",
    ]
    assert deprecation_warnings(_Holder.model_validate({"tls": {"cert_file": "c.pem",
                                                                "key_file": "k.pem"}}),
                                "x") == []


def test_a_flat_option_moves_into_its_block() -> None:
    model = _FlatTls.model_validate({"ca_file": "ca.pem", "tls": {"server_name": "db"}})
    assert model.tls.ca_file == Path("ca.pem") and model.tls.server_name == "db"
    assert "connections.db.ca_file is deprecated: write connections.db.tls.ca_file" in \
        deprecation_warnings(model, "connections.db")[0]


def test_both_spellings_at_once_are_rejected() -> None:
    with pytest.raises(ValidationError, match="client_cert is the old spelling of cert_file"):
        TlsClientOptions.model_validate({"client_cert": "a", "cert_file": "b",
                                         "key_file": "k"})
    with pytest.raises(ValidationError, match=r"write only tls\.ca_file"):
        _FlatTls.model_validate({"ca_file": "a", "tls": {"ca_file": "b"}})


# --------------------------------------------------------------------------- secrets


def test_secret_resolution_errors_name_the_option_never_a_value(tmp_path: Path) -> None:
    ref = SecretRef(env="API_TOKEN_FOR_TEST")
    assert resolve_secret(ref, "bearer_token", {"API_TOKEN_FOR_TEST": "s3cr3t-value"}) \
        .get_secret_value() == "s3cr3t-value"
    with pytest.raises(ProbeError) as caught:
        resolve_secret(ref, "api.bearer_token", {})
    assert caught.value.reason is Reason.CONFIG
    assert caught.value.message == ("api.bearer_token: environment variable API_TOKEN_FOR_TEST "
                                    "is not set (set it, or change api.bearer_token)")
    with pytest.raises(ProbeError, match=r"password: secret file .*nope cannot be read"):
        resolve_secret(SecretRef(file=tmp_path / "nope"), "password")
    assert resolve_optional(None, "x") is None


# --------------------------------------------------------------------------- registry


class _Counting(Transport[TlsClientOptions, dict[str, Any]]):
    name: ClassVar[str] = "counting"
    idle_close_after: ClassVar[float | None] = 900.0

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.stale = False

    async def open(self, options: TlsClientOptions,
                   runtime: TransportRuntime) -> dict[str, Any]:
        self.opened += 1
        await asyncio.sleep(0.01)  # concurrent first uses must still open once
        return {"n": self.opened}

    async def close(self, handle: dict[str, Any]) -> None:
        self.closed += 1

    def is_stale(self, handle: dict[str, Any]) -> bool:
        return self.stale


async def test_clients_are_opened_once_per_options_and_closed_with_the_runtime(
        tmp_path: Path) -> None:
    transport = _Counting()
    context = RuntimeContext(state_dir=tmp_path)
    a, b = TlsClientOptions(), TlsClientOptions(server_name="b")
    first = await asyncio.gather(*(context.client(transport, a) for _ in range(5)))
    assert transport.opened == 1 and all(handle is first[0] for handle in first)
    await context.client(transport, b)
    assert transport.opened == 2
    await context.refresh_client(transport, a)  # e.g. after a 401
    assert transport.closed == 1
    assert (await context.client(transport, a))["n"] == 3
    transport.stale = True
    await context.client(transport, a)
    assert transport.opened == 4 and transport.closed == 2
    await context.aclose()
    assert transport.closed == 4


async def test_clients_unused_for_their_idle_limit_are_closed() -> None:
    """A reload that changes a check's options leaves the old client unused: it goes."""
    from exporter.transport.clients import ClientRegistry

    now = [0.0]
    transport = _Counting()
    clients = ClientRegistry(lambda: None, lambda f, *a: f(*a),  # type: ignore[arg-type,return-value]
                             clock=lambda: now[0])
    old, new = TlsClientOptions(server_name="old"), TlsClientOptions(server_name="new")
    await clients.get(transport, old)
    for _ in range(20):  # only the new options are used from now on, every minute
        now[0] += 60
        await clients.get(transport, new)
    assert len(clients) == 1 and transport.closed == 1  # old: idle > 900 s, closed
    await clients.get(transport, old)  # reopened on demand
    assert transport.opened == 3
    await clients.aclose()


async def test_a_client_context_rejects_foreign_connectors(ctx: RuntimeContext) -> None:
    class NotATransport:
        name = "x"

        async def open(self, options: int, runtime: Any) -> int:
            return options

    with pytest.raises(TypeError, match=r"not an exporter\.transport Transport"):
        await ctx.client(NotATransport(), 1)


# --------------------------------------------------------------------------- credentials


async def test_credentials_refresh_on_expiry_and_after_a_rejection() -> None:
    now = [1000.0]
    issued: list[str] = []

    async def fetch() -> Expiring[str]:
        issued.append(f"token-{len(issued)}")
        return Expiring(issued[-1], expires_at=now[0] + 60)

    credential = RefreshingCredential(fetch, skew=5, clock=lambda: now[0])
    tokens = await asyncio.gather(*(credential.get() for _ in range(4)))
    assert tokens == ["token-0"] * 4 and credential.fetches == 1
    now[0] += 50
    assert await credential.get() == "token-0"
    now[0] += 6  # within the skew of expiry
    assert await credential.get() == "token-1"
    credential.invalidate()  # the server answered 401
    assert await credential.get() == "token-2" and credential.fetches == 3


# --------------------------------------------------------------------------- lifespans

EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def _background(ctx: ProbeContext) -> AsyncIterator[list[str]]:
    EVENTS.append("enter")
    started: list[str] = []
    yield started
    EVENTS.append(f"exit after {len(started)} runs")


BACKGROUND = Lifespan("test_lifespan", _background)


async def test_a_kind_lifespan_is_entered_once_and_exited_with_the_runtime(
        tmp_path: Path) -> None:
    EVENTS.clear()
    context = RuntimeContext(state_dir=tmp_path)
    states = await asyncio.gather(*(context.kind_state(BACKGROUND) for _ in range(3)))
    assert EVENTS == ["enter"] and states[0] is states[1] is states[2]
    states[0].append("run")
    await context.aclose()
    assert EVENTS == ["enter", "exit after 1 runs"]


# --------------------------------------------------------------------------- Findings

FAMILY = MetricFamily("readiness_test_value", "test", ("part",))


def test_findings_have_one_meaning() -> None:
    findings = Findings()
    findings.measure(FAMILY, 3, part="a")
    findings.note("3 parts")
    assert findings.outcome() == Outcome.passed(
        "3 parts", (Measurement(FAMILY.name, 3.0, {"part": "a"}),))
    findings.problem("part b missing")
    outcome = findings.outcome()
    assert outcome.status is Status.FAIL and outcome.message == "part b missing"
    assert outcome.measurements == (Measurement(FAMILY.name, 3.0, {"part": "a"}),)
    error = findings.error(ProbeError(Reason.TIMEOUT, "slow",
                                      (Measurement(FAMILY.name, 1.0, {"part": "b"}),)))
    assert error.status is Status.ERROR and error.reason is Reason.TIMEOUT
    assert [m.labels["part"] for m in error.measurements] == ["a", "b"]
    assert Findings().outcome("nothing to check").message == "nothing to check"


class _ErrorWithFacts(CheckSpec):
    kind: Literal["test_error_with_facts"]


async def _raise_with_facts(spec: _ErrorWithFacts, ctx: ProbeContext) -> Outcome:
    raise ProbeError(Reason.AUTH, "refused", (Measurement(FAMILY.name, 401.0, {"part": "x"}),))


async def test_the_runner_keeps_measurements_of_a_probe_error(
        ctx: RuntimeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = ProbeKind("test_error_with_facts", _ErrorWithFacts, _raise_with_facts, "test")
    monkeypatch.setattr(registry, "probe_kind", lambda name: kind)
    spec = _ErrorWithFacts(id="e", section="1.1", title="t", kind="test_error_with_facts")
    outcome, _ = await run_check(spec, ctx)
    assert outcome.status is Status.ERROR and outcome.reason is Reason.AUTH
    assert outcome.measurements == (Measurement(FAMILY.name, 401.0, {"part": "x"}),)
