"""`readiness-exporter inputs` and `readiness-exporter init`: see and write the preset's inputs.

`inputs` prints every input of the configuration, its value and where it came from
(default, environment, file, discovery); secrets appear by reference only. `init` writes
a starter configuration for the current environment: what discovery and the environment
found, and what is still missing as commented TODOs; then it validates the file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporter import config, discovery, redact
from exporter.config import ConfigError
from exporter.inputs import BY_NAME, INPUTS, ResolvedInput

EXIT_OK, EXIT_CONFIG = 0, 2
DEFAULT_OUTPUT = Path("readiness.yaml")
PRESET = "qbitel-production"


def _discovery_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path,
                        help="discover in the cluster of this kubeconfig (default: $KUBECONFIG, "
                             "or in-cluster when running in a pod)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--part-of", dest="part_of", default=discovery.DEFAULT_PART_OF,
                        help="value of the app.kubernetes.io/part-of label of the application")
    parser.add_argument("--no-discovery", dest="no_discovery", action="store_true",
                        help="do not ask a cluster")


def add_inputs(sub: Any) -> None:
    """Register `inputs`."""
    parser = sub.add_parser("inputs", help="each preset input, its value and where it came from")
    parser.add_argument("--config.file", dest="config_file", type=Path,
                        help="YAML configuration (default: the qbitel-production preset alone)")
    _discovery_args(parser)
    parser.set_defaults(func=cmd_inputs)


def add_init(sub: Any) -> None:
    """Register `init`."""
    parser = sub.add_parser("init", help="write a starter configuration for this environment")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"file to write (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    _discovery_args(parser)
    parser.set_defaults(func=cmd_init)


def _discover(args: argparse.Namespace) -> tuple[discovery.Discovered | None, str | None]:
    """What the cluster says, or None and why not."""
    if args.no_discovery:
        return None, "discovery off (--no-discovery)"
    kubeconfig = discovery.kubeconfig_path(args.kubeconfig, os.environ)
    try:
        return asyncio.run(discovery.discover(kubeconfig, args.context, args.part_of)), None
    except discovery.DiscoveryUnavailable as exc:
        return None, str(exc)
    except Exception as exc:  # an unreachable or refusing API server: say so, go on
        return None, f"cluster not reachable: {type(exc).__name__}"


# --------------------------------------------------------------------------- inputs


def _origin_text(item: ResolvedInput, found: discovery.Discovered | None) -> str:
    definition = BY_NAME[item.name]
    if item.origin == "environment":
        return f"environment (${definition.env})"
    if item.origin == "discovery" and found is not None:
        return f"discovery ({found.found_in.get(item.name, 'cluster')})"
    if item.origin == "default" and item.placeholder:
        how = f"set {definition.env} or inputs.{item.name}" if definition.env \
            else f"set inputs.{item.name}"
        return f"default, placeholder: {how}"
    return item.origin


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def _resolved(value: str, name: str, base: Path) -> str:
    """A relative path input with the absolute path it resolves to."""
    default = BY_NAME[name].default
    is_path = isinstance(default, str) and "/" in default and "://" not in default
    if not is_path or "://" in value or Path(value).is_absolute():
        return value
    return f"{value} -> {base / value}"


def _secret_lines(cfg: config.Config) -> list[tuple[str, str]]:
    """Secrets the connections use, by reference (never a value)."""
    lines = []
    for name, connection in sorted(cfg.connections.items()):
        for option, ref in config.iter_secret_refs(connection, f"connections.{name}"):
            lines.append((option, f"secret {ref.describe()}"))
        for field_name in type(connection).model_fields:
            value = getattr(connection, field_name)
            if field_name.endswith("password_env") and isinstance(value, str):
                lines.append((f"connections.{name}.{field_name}", f"secret ${{{value}}}"))
    return lines


def cmd_inputs(args: argparse.Namespace) -> int:
    """Print every input, its value and its origin."""
    found, why_not = _discover(args)
    values = found.values if found is not None else {}
    try:
        if args.config_file is not None:
            cfg = config.load(args.config_file, discovered=values)
        else:
            cfg = config.load_document({"include": [PRESET]}, f"preset {PRESET}", Path.cwd(),
                                       discovered=values)
    except ConfigError as exc:
        print("configuration error:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_CONFIG
    scrubber = redact.from_config(cfg)
    base = cfg.settings.base_dir or (args.config_file.resolve().parent
                                     if args.config_file is not None else Path.cwd())
    rows = [(name, _resolved(_shown(item.value), name, base), _origin_text(item, found))
            for name, item in cfg.inputs.items()]
    rows += [(option, ref, "reference, resolved when a probe runs")
             for option, ref in _secret_lines(cfg)]
    width = max(len(r[0]) for r in rows)
    value_width = min(48, max(len(r[1]) for r in rows))
    print(f"{'INPUT':<{width}}  {'VALUE':<{value_width}}  FROM")
    for name, value, origin in rows:
        print(scrubber.scrub(f"{name:<{width}}  {value:<{value_width}}  {origin}"))
    if why_not:
        print(f"\ndiscovery: {why_not}")
    return EXIT_OK


# --------------------------------------------------------------------------- init


def _quote(value: str) -> str:
    plain = value.replace("-", "").replace(".", "").replace("/", "").replace(":", "")
    return value if plain.isalnum() and ": " not in value else f'"{value}"'


def starter(found: discovery.Discovered | None, why_not: str | None,
            environ: Mapping[str, str], kubeconfig: Path | None,
            context: str | None) -> str:
    """The text of a starter configuration: found values set, the rest as TODO comments."""
    values = found.values if found is not None else {}
    lines = [
        "# Starter configuration written by `readiness-exporter init`.",
        "# Edit the TODO lines, then: readiness-exporter check --config.file THIS_FILE",
        "# Every input, its default and the checks using it: docs/inputs.md.",
        f"include: [{PRESET}]",
        "",
        "# TODO settings.release: the release being deployed (attestations are bound to it)",
        "# settings:",
        '#   release: "2.1.0"',
        "",
        "inputs:",
    ]
    todo: list[str] = []
    from_env: list[str] = []
    for definition in INPUTS:
        name = definition.name
        if definition.env and environ.get(definition.env):
            from_env.append(f"  # {name}: from ${definition.env}")
        elif name in values:
            source = found.found_in.get(name, "cluster") if found else "cluster"
            lines.append(f"  {name}: {_quote(_shown(values[name]))}  # discovered: {source}")
        elif definition.placeholder:
            hint = f" (or set {definition.env})" if definition.env else ""
            todo.append(f"  # TODO {name}: {_shown(definition.default)}  "
                        f"# placeholder{hint}: {definition.help}")
    lines += from_env + todo
    if kubeconfig is not None:
        context_part = f", context: {context}" if context else ""
        lines += ["", "connections:",
                  f"  kubernetes: {{kind: kubernetes, kubeconfig: {_quote(str(kubeconfig))}"
                  f"{context_part}, snapshot_ttl: 20s, request_timeout: 10s, secrets: none}}"]
    if found is not None and found.secrets:
        lines += ["", "# Secrets the application mounts (by reference):"]
        lines += [f"#   {entry}" for entry in found.secrets]
    if found is not None and found.problems:
        lines += ["", "# discovery could not read (grant list on these to see more):"]
        lines += [f"#   {problem}" for problem in found.problems]
    if why_not:
        lines += ["", f"# discovery: {why_not}"]
    return "\n".join(lines) + "\n"


def cmd_init(args: argparse.Namespace) -> int:
    """Write a starter configuration and validate it."""
    output: Path = args.output
    if output.exists() and not args.force:
        print(f"init: {output.resolve()} exists; pass --force to overwrite it or --output "
              "another file", file=sys.stderr)
        return EXIT_CONFIG
    found, why_not = _discover(args)
    kubeconfig = discovery.kubeconfig_path(args.kubeconfig, os.environ)
    if kubeconfig is not None:
        kubeconfig = kubeconfig.resolve()
    text = starter(found, why_not, os.environ, kubeconfig if found is not None else None,
                   args.context)
    output.write_text(text, encoding="utf-8")
    print(f"init: wrote {output.resolve()}")
    if why_not:
        print(f"init: discovery: {why_not}")
    try:
        cfg = config.load(output)
    except ConfigError as exc:
        print("init: the written file does not validate:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_CONFIG
    todo = text.count("# TODO")
    print(f"init: valid: {len(cfg.checks)} checks; {todo} TODO(s) left in the file")
    return EXIT_OK
