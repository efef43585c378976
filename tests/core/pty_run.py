"""Run the real `readiness-exporter` with its stdout and stderr on a pseudo-terminal."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import pyte

from tests.core.conftest import EXE

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SCREEN_LINES = 3000  # taller than any output here: nothing scrolls off
COLOUR_SGR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[25])[;m]")


@dataclass
class TerminalRun:
    """What a person would have seen, raw (with escape codes) and as visible lines."""

    returncode: int
    raw: str

    columns: int = 80

    @property
    def visible_lines(self) -> list[str]:
        """The screen at the end, as a VT100 terminal (pyte) shows it: erased lines gone."""
        screen = pyte.Screen(self.columns, SCREEN_LINES)
        stream = pyte.Stream(screen)
        stream.feed(self.raw.replace("\n", "\r\n").replace("\r\r\n", "\r\n"))
        lines = [line.rstrip() for line in screen.display]
        while lines and not lines[-1]:
            lines.pop()
        return lines


def run_on_terminal(args: list[str], env: dict[str, str], columns: int = 80,
                    cwd: Path | None = None, timeout: float = 60.0) -> TerminalRun:
    """Start the CLI on a pty of `columns` columns and read everything it prints."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    full_env = {"PATH": os.environ["PATH"], "TERM": "xterm-256color", **env}
    proc = subprocess.Popen([str(EXE), *args], stdin=slave, stdout=slave, stderr=slave,
                            env=full_env, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return TerminalRun(returncode, b"".join(chunks).decode("utf-8", "replace"), columns)
