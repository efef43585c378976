"""Size of the container image's virtual environment, built as the Dockerfile builds it.

Runs docker/install.sh's three builder steps (wheels from the lock, venv, slim) outside
a container and prints the venv's layer size before and after `slim`, the largest
packages, and what is left of the 200 MB image budget on the documented base size.
Usage: python bench/image_size.py [--top 12] (`make image-size`)
(no Docker needed; PyPI access for the wheels).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_BUDGET_MB = 200
BASE_IMAGE_MB = 130  # python:3.11-slim-bookworm, about 125 MB unpacked, with a margin


def layer_bytes(root: Path) -> int:
    """File bytes plus one 512-byte tar header per entry: what a layer holds."""
    total = 0
    for path in root.rglob("*"):
        total += 512
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def step(*args: str) -> None:
    """One docker/install.sh step with this interpreter, as the builder stage runs it."""
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(["sh", str(ROOT / "docker" / "install.sh"), *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def largest(venv: Path, top: int) -> list[tuple[int, str]]:
    """The `top` largest entries of site-packages, by layer bytes."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    sizes = [(layer_bytes(p) if p.is_dir() else p.stat().st_size + 512, p.name)
             for p in site.iterdir() if not p.name.endswith(".dist-info")]
    return sorted(sizes, reverse=True)[:top]


def main() -> int:
    """Build, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="image-size-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "exporter", src / "exporter",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (src / "requirements").mkdir()
        shutil.copy2(ROOT / "requirements" / "runtime.lock", src / "requirements")
        wheels, venv = Path(tmp) / "wheels", Path(tmp) / "venv"
        step("wheels", str(src), str(wheels))
        step("venv", str(wheels), str(venv))
        before = layer_bytes(venv)
        top_before = dict((name, size) for size, name in largest(venv, 200))
        step("slim", str(venv))
        after = layer_bytes(venv)
        print(f"venv before slim: {before / 1e6:.1f} MB; after: {after / 1e6:.1f} MB "
              f"({sum(1 for _ in venv.rglob('*'))} entries)")
        budget = (IMAGE_BUDGET_MB - BASE_IMAGE_MB) * 1e6
        print(f"budget: {IMAGE_BUDGET_MB} MB image - {BASE_IMAGE_MB} MB base = "
              f"{budget / 1e6:.0f} MB; left: {(budget - after) / 1e6:.1f} MB")
        print("| package | MB before slim | MB after |")
        print("| --- | ---: | ---: |")
        for size, name in largest(venv, args.top):
            was = top_before.get(name.removesuffix(".zip"), 0)  # kubernetes_asyncio
            print(f"| {name} | {was / 1e6:.1f} | {size / 1e6:.1f} |")
    return 0 if after <= budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
