"""`readiness-exporter serve | check | validate | list | attest`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from exporter import __version__, config, jsonlog, registry
from exporter.config import Config, ConfigError
from exporter.context import RuntimeContext
from exporter.model import CheckSpec, Severity, Status
from exporter.results import to_json, to_junit, to_table
from exporter.runner import run_check
from exporter.scheduler import disabled_outcome
from exporter.store import Store
from exporter.web.sections import in_section

EXIT_OK, EXIT_CRITICAL, EXIT_CONFIG = 0, 1, 2
DEFAULT_LISTEN = "127.0.0.1:9847"


def _print_errors(errors: Sequence[str]) -> None:
    print("configuration error:", file=sys.stderr)
    for error in errors:
        print(f"  {_printable(error)}", file=sys.stderr)


def _printable(text: str) -> str:
    """`text` with control characters (terminal escapes, NUL) shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _load(path: Path | None) -> Config | None:
    """The validated configuration, or None after printing why not (the caller exits 2)."""
    try:
        return config.load(path)
    except ConfigError as exc:
        _print_errors(exc.errors)
        return None
    except Exception as exc:  # a bug: still a configuration that cannot be used, not a crash
        source = path if path is not None else "the embedded default"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        _print_errors([f"{source}: cannot be loaded: unexpected {type(exc).__name__} at "
                       f"{Path(where.filename).name}:{where.lineno}; check the file, and "
                       "please report this (the exception's text is not shown: it may "
                       "hold a value from the file)"])
        return None


def parse_listen_address(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or `:PORT` (all interfaces)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - only when the user asks for ':PORT'
    return host, int(port)


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the daemon."""
    from exporter.daemon import serve
    from exporter.webconfig import load_web_config

    if not 0 <= args.shard < args.total_shards:
        _print_errors([f"--shard must be between 0 and {args.total_shards - 1} "
                       "(--total-shards - 1)"])
        return EXIT_CONFIG
    cfg = _load(args.config_file)
    if cfg is None:
        return EXIT_CONFIG
    web_config = None
    if args.web_config_file is not None:
        try:
            web_config = load_web_config(args.web_config_file)
        except ConfigError as exc:
            _print_errors(exc.errors)
            return EXIT_CONFIG
    host, port = args.web_listen_address
    web_dir = args.web_config_file.parent if args.web_config_file else Path.cwd()
    try:
        asyncio.run(serve(cfg, args.config_file, host, port, web_config, web_dir,
                          shard=args.shard, total_shards=args.total_shards))
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    _exit_past_blocked_probe_threads()
    return EXIT_OK


def _exit_past_blocked_probe_threads() -> None:
    """Exit now if a probe thread is still blocked (a hung NFS read, a FIFO...).

    The interpreter would otherwise wait for it forever at exit; the daemon's own state
    is already closed at this point.
    """
    stuck = [t for t in threading.enumerate()
             if t.name.startswith("readiness-probe") and t.is_alive()]
    if stuck:
        logging.getLogger("readiness.daemon").warning(
            "probe threads still blocked at exit; not waiting for them",
            extra={"threads": len(stuck)})
        logging.shutdown()
        os._exit(EXIT_OK)


# --------------------------------------------------------------------------- check


def select(checks: Sequence[CheckSpec], sections: Sequence[str],
           only: Sequence[str]) -> list[CheckSpec]:
    """Checks in any of `sections` (prefix on dots) and, if given, with an id in `only`."""
    chosen = list(checks)
    if sections:
        chosen = [c for c in chosen if any(in_section(c.section, s) for s in sections)]
    if only:
        wanted = set(only)
        chosen = [c for c in chosen if c.id in wanted or c.item_id in wanted]
    return chosen


async def run_once(cfg: Config, specs: Sequence[CheckSpec]) -> Store:
    """Run every selected check once, concurrently; checks that summarise others last."""
    store = Store(specs, cfg.settings.stale_after_intervals)
    ctx = RuntimeContext(cfg.connections, state_dir=cfg.settings.state_dir,
                         checks=store.views, release=cfg.settings.release)
    semaphore = asyncio.Semaphore(cfg.settings.max_concurrency)

    async def one(spec: CheckSpec) -> None:
        if not spec.enabled:
            store.record(spec.id, disabled_outcome(spec), time.time(), 0.0)
            return
        async with semaphore:
            outcome, duration = await run_check(spec, ctx)
        store.record(spec.id, outcome, time.time(), duration)

    try:
        later = [s for s in specs if getattr(type(s), "summarises_other_checks", False)]
        first = [s for s in specs if s not in later]
        await asyncio.gather(*(one(s) for s in first))
        await asyncio.gather(*(one(s) for s in later))
    finally:
        await registry.shutdown_kinds(s.kind for s in specs)
        await ctx.aclose()
    return store


def gate(store: Store) -> int:
    """1 when an enabled critical check failed or errored, else 0."""
    for state in store.states.values():
        if (state.spec.enabled and state.spec.severity is Severity.CRITICAL
                and state.status in (Status.FAIL, Status.ERROR)):
            return EXIT_CRITICAL
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Run the selected checks once and print the result; exit 1 on a critical failure."""
    cfg = _load(args.config_file)
    if cfg is None:
        return EXIT_CONFIG
    specs = select(cfg.checks, args.section, args.only)
    unknown = [i for i in args.only if not any(i in (c.id, c.item_id) for c in cfg.checks)]
    if unknown:
        _print_errors([f"--only {i}: no such check id" for i in unknown])
        return EXIT_CONFIG
    if not specs:
        _print_errors(["no check matches the selection"])
        return EXIT_CONFIG
    store = asyncio.run(run_once(cfg, specs))
    states = store.states.values()
    render = {"table": to_table, "json": to_json, "junit": to_junit}[args.output]
    sys.stdout.write(render(states))
    return gate(store)


# --------------------------------------------------------------------------- validate, list


def cmd_validate(args: argparse.Namespace) -> int:
    """Load and validate; print a summary or every error."""
    cfg = _load(args.config_file)
    if cfg is None:
        return EXIT_CONFIG
    enabled = sum(1 for c in cfg.checks if c.enabled)
    print(f"{cfg.source}: OK: {len(cfg.checks)} checks ({enabled} enabled), "
          f"{len(cfg.connections)} connections")
    return EXIT_OK


def _describe_field(name: str, info: FieldInfo) -> str:
    annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
    annotation = annotation.replace("typing.", "").replace("pathlib.", "")
    default = ("required" if info.is_required()
               else f"default {info.get_default(call_default_factory=True)!r}")
    text = f"    {name}: {annotation} ({default})"
    if info.description:
        text += f": {info.description}"
    return text


def _options(model: type[BaseModel]) -> list[str]:
    base = set(CheckSpec.model_fields) | {"kind"}
    return [_describe_field(n, f) for n, f in model.model_fields.items() if n not in base]


def cmd_list(args: argparse.Namespace) -> int:
    """Print probe kinds and connection kinds with their options."""
    print("Fields of every check: " + ", ".join(n for n in CheckSpec.model_fields))
    print("\nProbe kinds:")
    for name in registry.probe_kind_names():
        kind = registry.probe_kind(name)
        print(f"\n  {name}: {kind.summary}")
        for line in _options(kind.spec):
            print(line)
    names = registry.connection_kind_names()
    if names:
        print("\nConnection kinds (under connections:, referred to by name):")
        for name in names:
            conn = registry.connection_kind(name)
            print(f"\n  {name}: {conn.summary}")
            for line in _options(conn.spec):
                print(line)
    print("\nPresets (include: NAME): " + ", ".join(config.preset_names()))
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="readiness-exporter",
        description="A production deployment checklist as live Prometheus metrics.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    def config_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
        p.add_argument("--config.file", dest="config_file", type=Path, required=required,
                       help="YAML configuration (default: the embedded default)")

    serve = sub.add_parser("serve", help="run the exporter")
    config_arg(serve)
    serve.add_argument("--web.listen-address", dest="web_listen_address",
                       type=parse_listen_address, default=parse_listen_address(DEFAULT_LISTEN))
    serve.add_argument("--web.config.file", dest="web_config_file", type=Path,
                       help="exporter-toolkit web config (TLS, basic auth)")
    serve.add_argument("--shard", type=int, default=0)
    serve.add_argument("--total-shards", dest="total_shards", type=int, default=1)
    serve.add_argument("--log.level", dest="log_level", default=argparse.SUPPRESS,
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="run checks once; exit 1 if a critical one fails")
    config_arg(check)
    check.add_argument("--output", choices=["table", "json", "junit"], default="table")
    check.add_argument("--section", action="append", default=[],
                       help="only this checklist section (repeatable), e.g. 2.2")
    check.add_argument("--only", action="append", default=[], help="only this check id")
    check.add_argument("--log.level", dest="log_level", default=argparse.SUPPRESS,
                       choices=["debug", "info", "warning", "error"])
    check.set_defaults(func=cmd_check)

    validate = sub.add_parser("validate", help="validate a configuration file")
    config_arg(validate, required=True)
    validate.set_defaults(func=cmd_validate)

    listing = sub.add_parser("list", help="probe kinds and their options")
    listing.set_defaults(func=cmd_list)

    _add_attest(sub)
    return parser


def _add_attest(sub: Any) -> None:
    try:
        from exporter.probes.attestation import cli as attest_cli
    except ImportError:
        return
    attest = sub.add_parser("attest", help="sign a checklist item (attestation)")
    attest_cli.add_arguments(attest)
    attest.set_defaults(func=attest_cli.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    level = args.log_level if args.command in ("serve", "check") else "warning"
    jsonlog.setup(level)
    try:
        code: int = args.func(args)
    except BrokenPipeError:  # `readiness-exporter list | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
