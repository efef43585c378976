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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from exporter import __version__, config, init_cmd, jsonlog, lint, redact, registry
from exporter.checklist import in_section, section_key
from exporter.config import Config, ConfigError
from exporter.context import RuntimeContext
from exporter.model import CheckSpec
from exporter.runner import run_check
from exporter.scheduler import disabled_outcome
from exporter.store import CheckState, Store

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


def load_config(path: Path | None) -> Config | None:
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
    """`HOST:PORT`, `[::1]:PORT` or `:PORT` (host "": every interface, IPv4 and IPv6)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_telemetry_path(value: str) -> str:
    """`--web.telemetry-path`: an absolute URL path other than the exporter's own pages."""
    reserved = {"/", "/health", "/healthz", "/readyz", "/api/v1/checks", "/-/reload",
                "/report.json", "/report.html"}
    if not value.startswith("/") or any(c in value for c in "?#{} ") or value in reserved \
            or value.startswith(("/static/", "/check/")):
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected a path such as /metrics, not one of the exporter's own "
            "pages (/, /health, /healthz, /readyz, /api/..., /-/..., /check/..., /static/...)")
    return value


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the daemon."""
    from exporter.daemon import serve
    from exporter.sharding import ShardError, resolve_shard, total_shards_of
    from exporter.webconfig import load_web_config

    try:
        total_shards = total_shards_of(args.total_shards)
        shard = resolve_shard(args.shard, total_shards)
    except ShardError as exc:
        _print_errors([str(exc)])
        return EXIT_CONFIG
    cfg = load_config(args.config_file)
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
                          shard=shard, total_shards=total_shards,
                          telemetry_path=args.web_telemetry_path,
                          enable_lifecycle=args.web_enable_lifecycle))
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror}; change --web.listen-address",
              file=sys.stderr)
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


async def run_once(cfg: Config, specs: Sequence[CheckSpec],
                   on_result: Callable[[CheckState], None] | None = None) -> Store:
    """Run every selected check once, concurrently; checks that summarise others last.

    `on_result` is called with each check's state as soon as it has a result.
    """
    lint.print_warnings(cfg)
    redact.install(redact.from_config(cfg))
    store = Store(specs, cfg.settings.stale_after_intervals)
    if on_result is not None:
        report = on_result

        def each(states: Sequence[CheckState]) -> None:
            for state in states:
                report(state)

        store.subscribe(each)
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
    """1 unless every enabled critical check passes (the `readiness_go_live` rule), else 0."""
    from exporter.render.summary import summarise

    return EXIT_OK if summarise(store.states.values()).go_live else EXIT_CRITICAL


def _selection_errors(cfg: Config, sections: Sequence[str], only: Sequence[str],
                      chosen: Sequence[CheckSpec]) -> list[str]:
    """Why `--section`/`--only` are wrong or select nothing, naming what the file has."""
    errors = [f"--only {i}: no such check id in {cfg.source}" for i in only
              if not any(i in (c.id, c.item_id) for c in cfg.checks)]
    if errors or chosen:
        return errors
    present = sorted({c.section for c in cfg.checks}, key=section_key)
    where = f"--section {' '.join(sections)}" if sections else "the selection"
    hint = ("" if cfg.source != "embedded default" else
            "; pass --config.file (e.g. examples/qbitel-production.yaml) for the whole "
            "checklist")
    return [f"{where}: no check matches in {cfg.source} (its sections: "
            f"{', '.join(present) or 'none'}){hint}"]


def _render_check(args: argparse.Namespace, cfg: Config, store: Store) -> None:
    from exporter.render.json_output import RunInfo, to_json, to_json_v0
    from exporter.render.junit import to_junit
    from exporter.render.table import render, to_table
    from exporter.render.terminal import console_for

    states = list(store.states.values())
    run = RunInfo(source=cfg.source, release=cfg.settings.release)
    if args.output == "table":
        if sys.stdout.isatty():
            render(states, console_for(sys.stdout), args.failures_only)
        else:
            sys.stdout.write(to_table(states, args.failures_only))
    elif args.output == "json":
        sys.stdout.write(to_json(states, run))
    elif args.output == "json-v0":
        print("--output json-v0 is deprecated and will be removed in the next release: "
              "use --output json (schema_version 1, see docs/cli.md)", file=sys.stderr)
        sys.stdout.write(to_json_v0(states, run))
    else:
        sys.stdout.write(to_junit(states, run))


def cmd_check(args: argparse.Namespace) -> int:
    """Run the selected checks once and print the result; exit 1 unless go-live."""
    from exporter.render.progress import ProgressLine

    cfg = load_config(args.config_file)
    if cfg is None:
        return EXIT_CONFIG
    specs = select(cfg.checks, args.section, args.only)
    errors = _selection_errors(cfg, args.section, args.only, specs)
    if errors:
        for error in errors:
            print(f"check: {error}", file=sys.stderr)
        return EXIT_CONFIG
    with ProgressLine(len(specs), sys.stderr) as progress:
        store = asyncio.run(run_once(cfg, specs, progress))
    _render_check(args, cfg, store)
    return gate(store)


# --------------------------------------------------------------------------- validate, list


def cmd_validate(args: argparse.Namespace) -> int:
    """Load and validate; print a summary or every error."""
    cfg = load_config(args.config_file)
    if cfg is None:
        return EXIT_CONFIG
    warnings = lint.print_warnings(cfg)
    if args.strict and warnings:
        print(f"{cfg.source}: {len(warnings)} warning(s), refused by --strict",
              file=sys.stderr)
        return EXIT_CONFIG
    enabled = sum(1 for c in cfg.checks if c.enabled)
    print(f"{cfg.source}: OK: {len(cfg.checks)} checks ({enabled} enabled), "
          f"{len(cfg.connections)} connections")
    return EXIT_OK


def _print_kind(name: str, summary: str, model: type[BaseModel]) -> None:
    from exporter.describe import kind_option_lines

    print(f"\n  {name}: {summary}")
    for line in kind_option_lines(model):
        print(line)


def cmd_list(args: argparse.Namespace) -> int:
    """Print probe kinds and connection kinds with their options (or only KIND's)."""
    from exporter.describe import field_lines

    probes = registry.probe_kind_names()
    connections = registry.connection_kind_names()
    wanted: str | None = args.kind
    if wanted is not None and wanted not in probes and wanted not in connections:
        print(f"list: no probe or connection kind named {wanted!r} (kinds: "
              f"{', '.join(probes)}; connection kinds: {', '.join(connections)})",
              file=sys.stderr)
        return EXIT_CONFIG
    if wanted is None:
        print("Fields of every check:")
        for line in field_lines(CheckSpec, indent=2, skip=frozenset({"kind"})):
            print(line)
    if wanted is None or wanted in probes:
        print("\nProbe kinds:")
        for name in probes if wanted is None else [wanted]:
            kind = registry.probe_kind(name)
            _print_kind(name, kind.summary, kind.spec)
    if connections and (wanted is None or wanted in connections):
        print("\nConnection kinds (under connections:, referred to by name):")
        for name in connections if wanted is None else [wanted]:
            conn = registry.connection_kind(name)
            _print_kind(name, conn.summary, conn.spec)
    if wanted is None:
        print("\nPresets (include: NAME): " + ", ".join(config.preset_names()))
    return EXIT_OK


# --------------------------------------------------------------------------- explain, schema


def cmd_explain(args: argparse.Namespace) -> int:
    """Print one check (or every check of an item) after includes, with its provenance."""
    import difflib

    from exporter.explain import explain, find, trace

    cfg = load_config(args.config_file)
    if cfg is None:
        return EXIT_CONFIG
    specs = find(cfg, args.check_id)
    if not specs:
        ids = [c.id for c in cfg.checks]
        close = difflib.get_close_matches(args.check_id, ids, n=5, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"explain: no check or item {args.check_id!r} in {cfg.source}{hint}",
              file=sys.stderr)
        return EXIT_CONFIG
    provenance = trace(args.config_file)
    blocks = ["\n".join(explain(spec, provenance)) for spec in specs]
    print("\n\n".join(blocks))
    shown = {spec.id for spec in specs}
    siblings = [c.id for c in cfg.checks if c.item_id == args.check_id and c.id not in shown]
    if siblings:
        print(f"\nAlso checking item {args.check_id}: {', '.join(siblings)} "
              "(explain each by its id)")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the configuration's JSON Schema."""
    import json

    from exporter.config_schema import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))
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
    parser.add_argument("--log.format", dest="log_format", default="json",
                        choices=jsonlog.LOG_FORMATS, help="log line format (default: json)")
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
    serve.add_argument("--web.telemetry-path", dest="web_telemetry_path",
                       type=parse_telemetry_path, default="/metrics",
                       help="path of the metrics exposition (default: /metrics)")
    serve.add_argument("--web.enable-lifecycle", dest="web_enable_lifecycle",
                       action="store_true",
                       help="allow POST /-/reload (off: 403; SIGHUP always reloads)")
    serve.add_argument("--shard", default="0",
                       help="this process's shard of the checks: N, or 'auto' for the "
                            "StatefulSet ordinal of $POD_NAME or the hostname")
    serve.add_argument("--total-shards", dest="total_shards", type=int, default=None,
                       help="how many shards split the checks (default: $TOTAL_SHARDS or 1)")
    serve.add_argument("--log.level", dest="log_level", default=argparse.SUPPRESS,
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log.format", dest="log_format", default=argparse.SUPPRESS,
                       choices=jsonlog.LOG_FORMATS,
                       help="json (default) or logfmt; secrets are scrubbed in both")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="run checks once; exit 1 unless every enabled "
                                          "critical check passes")
    config_arg(check)
    check.add_argument("--output", choices=["table", "json", "junit", "json-v0"],
                       default="table",
                       help="table (for people), json (schema_version 1, docs/cli.md), junit; "
                            "json-v0 is the deprecated bare list")
    check.add_argument("--failures-only", action="store_true",
                       help="table: show only the checks that need attention, and the verdict")
    check.add_argument("--section", action="append", default=[],
                       help="only this checklist section (repeatable), e.g. 2.2")
    check.add_argument("--only", action="append", default=[], help="only this check id")
    check.add_argument("--log.level", dest="log_level", default=argparse.SUPPRESS,
                       choices=["debug", "info", "warning", "error"])
    check.set_defaults(func=cmd_check)

    validate = sub.add_parser("validate", help="validate a configuration file")
    config_arg(validate, required=True)
    validate.add_argument("--strict", action="store_true",
                          help="treat every warning as an error (exit 2), e.g. a secret "
                               "reference that cannot be resolved now")
    validate.set_defaults(func=cmd_validate)

    listing = sub.add_parser("list", help="probe kinds and their options")
    listing.add_argument("kind", nargs="?", metavar="KIND",
                         help="only this probe or connection kind")
    listing.set_defaults(func=cmd_list)

    _add_plugin_commands(sub)
    _add_explain(sub, config_arg)
    _add_schema(sub)
    _add_report(sub)
    _add_mixin(sub)
    init_cmd.add_inputs(sub)
    init_cmd.add_init(sub)
    return parser


def _add_explain(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    explain = sub.add_parser("explain", help="one check's definition and where each value "
                                             "came from")
    explain.add_argument("check_id", metavar="ID", help="check id or checklist item id")
    config_arg(explain)
    explain.set_defaults(func=cmd_explain)


def _add_schema(sub: Any) -> None:
    schema = sub.add_parser("schema", help="the configuration's JSON Schema (for editors)")
    schema.set_defaults(func=cmd_schema)


def _add_mixin(sub: Any) -> None:
    from exporter import mixin

    parser = sub.add_parser("mixin", help="write alert rules and dashboards for your setup")
    mixin.add_arguments(parser)
    parser.set_defaults(func=mixin.run)


def _add_plugin_commands(sub: Any) -> None:
    """Subcommands plug-ins register in `registry.PLUGIN_COMMANDS` (e.g. `attest`)."""
    for command in registry.plugin_commands():
        parser = sub.add_parser(command.name, help=command.help)
        command.add_arguments(parser)
        parser.set_defaults(func=command.run)


def _add_report(sub: Any) -> None:
    from exporter.report import cli as report_cli

    report = sub.add_parser("report", help="run the gate and write a signed go-live "
                            "evidence report; `report verify FILE` checks one")
    report_cli.add_arguments(report)
    report.set_defaults(func=report_cli.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    level = args.log_level if args.command in ("serve", "check") else "warning"
    jsonlog.setup(level, args.log_format)
    try:
        code: int = args.func(args)
    except BrokenPipeError:  # `readiness-exporter list | head`: the reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
