"""`readiness-exporter mixin`: the alert rules and dashboards rendered for one setup.

Like a monitoring mixin, without jsonnet: the rules of exporter/mixin_rules.py and the
dashboards of exporter/mixin_dashboards.py, with the user's label selector, runbook
and board URLs, disabled alerts, `for:` overrides and extra labels applied. The Helm
chart embeds this command's output (scripts/sync-chart-assets.sh).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter import mixin_dashboards, mixin_rules

RULES_FILE = "readiness-exporter.rules.yml"
ALERTS_FILE = "readiness-exporter.alerts.yml"
_DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED_LABELS = {"severity", "job", "check", "alertname"}
REFERENCE_RUNBOOK_BASE_URL = "${RUNBOOK_BASE_URL}"
REFERENCE_BOARD_URL = "${BOARD_URL}"
"""What the reference rendering (alerts/, dashboards/, the chart's copies) carries in
place of the two URLs; the chart and `envsubst '${RUNBOOK_BASE_URL} ${BOARD_URL}'` fill
them in."""


class MixinError(ValueError):
    """An option of `mixin` that cannot be applied (the message names the option)."""


@dataclass(frozen=True)
class MixinOptions:
    """What `mixin` renders for."""

    runbook_base_url: str
    board_url: str
    selector: str = ""
    disabled: frozenset[str] = frozenset()
    for_overrides: Mapping[str, str] = field(default_factory=dict)
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def runbook_url(self, alert: str) -> str:
        """`%s` in the base is replaced by the anchor, else `#anchor` is appended."""
        anchor = alert.lower()
        if "%s" in self.runbook_base_url:
            return self.runbook_base_url.replace("%s", anchor)
        return f"{self.runbook_base_url}#{anchor}"


def _selector_prefix(selector: str) -> str:
    selector = selector.strip().strip("{}").strip().rstrip(",").strip()
    return f"{selector}, " if selector else ""


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (PromQL expressions)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: Any, header: str) -> str:
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + body


def _fill(text: str, options: MixinOptions, alert: str) -> str:
    for token, fragment in mixin_rules.FRAGMENTS.items():
        text = text.replace(token, fragment)
    return (text.replace("__BOARD__", options.board_url.rstrip("/"))
            .replace("__RUNBOOK__", options.runbook_url(alert)))


def _source(text: str, options: MixinOptions) -> list[dict[str, Any]]:
    prefix = _selector_prefix(options.selector)
    expanded = text.replace("{__SEL__}", "{" + prefix.rstrip(", ") + "}")
    expanded = expanded.replace("__SEL__", prefix)
    groups: list[dict[str, Any]] = yaml.safe_load(expanded)["groups"]
    return groups


def _phase_twins(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """A critical rule that pages only in live, and its warning twin for other phases."""
    expr = rule["expr"].strip()
    live = "on (job) (readiness:phase_live:max == 1)"
    paging = {**rule, "expr": f"(\n{_indent(expr)}\n)\nand {live}\n"}
    ticket = copy.deepcopy(rule)
    ticket["expr"] = f"(\n{_indent(expr)}\n)\nunless {live}\n"
    ticket["labels"] = {**rule["labels"], "severity": "warning"}
    return [paging, ticket]


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def known_alerts() -> set[str]:
    """Names of every shipped alert."""
    return {rule["alert"] for group in yaml.safe_load(mixin_rules.ALERTING_RULES)["groups"]
            for rule in group["rules"]}


def _validate(options: MixinOptions) -> None:
    known = known_alerts()
    for option, names in (("--disable", options.disabled),
                          ("--for", set(options.for_overrides))):
        unknown = sorted(set(names) - known)
        if unknown:
            raise MixinError(f"{option}: unknown alert {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
    for name, duration in options.for_overrides.items():
        if not _DURATION.fullmatch(duration):
            raise MixinError(f"--for {name}={duration}: not a Prometheus duration such as 10m")
    for name in options.extra_labels:
        if not _LABEL_NAME.fullmatch(name) or name in _RESERVED_LABELS:
            raise MixinError(f"--extra-label {name}: not a label name the rules can carry "
                             f"(reserved: {', '.join(sorted(_RESERVED_LABELS))})")


def render_rules(options: MixinOptions) -> dict[str, str]:
    """File name -> text of the recording and alerting rule files."""
    _validate(options)
    recording = _source(mixin_rules.RECORDING_RULES, options)
    alerting = _source(mixin_rules.ALERTING_RULES, options)
    for group in alerting:
        rules: list[dict[str, Any]] = []
        for rule in group["rules"]:
            name = rule["alert"]
            if name in options.disabled:
                continue
            twins = _phase_twins(rule) if name in mixin_rules.PHASE_GATED else [rule]
            for twin in twins:
                if name in options.for_overrides:
                    twin["for"] = options.for_overrides[name]
                twin["labels"] = {**twin["labels"], **options.extra_labels}
                twin["annotations"] = {key: _fill(value, options, name)
                                       for key, value in twin["annotations"].items()}
                rules.append(twin)
        group["rules"] = rules
    header = ("# Rendered by `readiness-exporter mixin` (exporter/mixin_rules.py): "
              "do not edit; re-render.\n")
    return {RULES_FILE: _dump({"groups": recording}, header),
            ALERTS_FILE: _dump({"groups": alerting}, header)}


def render_dashboards(options: MixinOptions) -> dict[str, str]:
    """File name -> JSON of every dashboard."""
    dashboards = mixin_dashboards.build(selector=options.selector,
                                        board_url=options.board_url.rstrip("/"),
                                        runbook_url=options.runbook_base_url)
    return {f"{uid}.json": json.dumps(d, indent=2, ensure_ascii=False) + "\n"
            for uid, d in dashboards.items()}


def write(options: MixinOptions, output: Path) -> list[Path]:
    """Write the rule files to `output` and the dashboards to `output/dashboards`."""
    written = []
    (output / "dashboards").mkdir(parents=True, exist_ok=True)
    for name, text in render_rules(options).items():
        (output / name).write_text(text, encoding="utf-8")
        written.append(output / name)
    for name, text in render_dashboards(options).items():
        (output / "dashboards" / name).write_text(text, encoding="utf-8")
        written.append(output / "dashboards" / name)
    return written


# --------------------------------------------------------------------------- CLI


def _pair(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the `mixin` subcommand."""
    parser.add_argument("--runbook-base-url", required=True,
                        help="where docs/runbooks.md is published; '#<alert>' is appended "
                             "(or '%%s' replaced by the lower-case alert name)")
    parser.add_argument("--board-url", required=True,
                        help="base URL of the readiness board; alerts link <URL>/check/<id>")
    parser.add_argument("--selector", default="",
                        help="label matchers of your exporter's series, e.g. 'job=\"readiness\"'")
    parser.add_argument("--disable", action="append", default=[], metavar="ALERT",
                        help="leave this alert out (repeatable)")
    parser.add_argument("--for", dest="for_overrides", action="append", default=[],
                        metavar="ALERT=DURATION", type=lambda t: _pair(t, "--for"),
                        help="override an alert's for: (repeatable)")
    parser.add_argument("--extra-label", dest="extra_labels", action="append", default=[],
                        metavar="NAME=VALUE", type=lambda t: _pair(t, "--extra-label"),
                        help="label added to every alert, e.g. team=platform (repeatable)")
    parser.add_argument("--output", type=Path, required=True, help="directory to write")


def options_from(args: argparse.Namespace) -> MixinOptions:
    """`MixinOptions` of parsed arguments."""
    return MixinOptions(runbook_base_url=args.runbook_base_url, board_url=args.board_url,
                        selector=args.selector, disabled=frozenset(args.disable),
                        for_overrides=dict(args.for_overrides),
                        extra_labels=dict(args.extra_labels))


def run(args: argparse.Namespace) -> int:
    """Entry point of `readiness-exporter mixin`: 0, or 2 on a bad option."""
    try:
        written = write(options_from(args), args.output)
    except MixinError as exc:
        print(f"mixin: {exc}")
        return 2
    for path in written:
        print(path)
    return 0
