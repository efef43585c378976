"""`make run` installs the runtime only; `make test` (target `venv`) still gets the extras.

Dry runs (`make -n`) of the real Makefile in a scratch copy, with the stamp files in the
states a developer's checkout goes through.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.core.conftest import REPO

TEST_INSTALL = "-e '.[test]'"
RUNTIME_INSTALL = "install --quiet --disable-pip-version-check -e ."


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    old = time.time() - 3600
    os.utime(tmp_path / "pyproject.toml", (old, old))
    return tmp_path


def planned(checkout: Path, target: str) -> str:
    result = subprocess.run(["make", "-n", target], cwd=checkout, capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def test_make_run_on_a_fresh_clone_installs_the_runtime_only(checkout: Path) -> None:
    plan = planned(checkout, "run")
    assert RUNTIME_INSTALL in plan and "[test]" not in plan
    assert "readiness-exporter serve --web.listen-address 127.0.0.1:9847" in plan


def test_make_test_after_make_run_still_installs_the_test_extras(checkout: Path) -> None:
    # what `make run` leaves: the console script and the runtime stamp
    touch(checkout / ".venv/bin/readiness-exporter")
    touch(checkout / ".venv/.installed-runtime")
    assert "pip" not in planned(checkout, "run")
    assert TEST_INSTALL in planned(checkout, "venv")


def test_make_run_after_make_test_installs_nothing(checkout: Path) -> None:
    touch(checkout / ".venv/bin/readiness-exporter")
    touch(checkout / ".venv/.installed-test")
    touch(checkout / ".venv/.installed-runtime")
    assert "pip" not in planned(checkout, "run")
    assert "pip" not in planned(checkout, "venv")
