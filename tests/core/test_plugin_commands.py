"""Plug-in subcommands register in `registry.PLUGIN_COMMANDS`; the core CLI names none."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

from exporter import cli, registry


def _fake_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_plugin_cli")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--colour", required=True)

    def run(args: argparse.Namespace) -> int:
        return 7 if args.colour == "green" else 1

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_plugin_cli", module)
    monkeypatch.setitem(registry.PLUGIN_COMMANDS, "paint", ("paint things", "fake_plugin_cli"))


def test_a_registered_plugin_command_becomes_a_subcommand(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_plugin(monkeypatch)
    args = cli.build_parser().parse_args(["paint", "--colour", "green"])
    assert args.func(args) == 7


def test_a_plugin_whose_module_is_missing_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.PLUGIN_COMMANDS, "ghost",
                        ("not installed", "exporter.probes.no_such_plugin_module"))
    assert "ghost" not in [c.name for c in registry.plugin_commands()]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["ghost"])


def test_attest_is_still_a_subcommand() -> None:
    args = cli.build_parser().parse_args(["attest", "keygen", "--private-key", "k.pem",
                                          "--name", "Alice", "--role", "Lead"])
    assert args.func.__module__ == "exporter.probes.attestation.cli"
