"""The container image recipe, without a container engine.

The Dockerfile is parsed; its builder stage's COPY sources are copied into a temporary
build context, and its RUN steps (docker/install.sh) are run with the image paths mapped
to temporary directories: the wheels are built, a fresh virtual environment is made from
them offline and slimmed, its size is held to the image's budget, and
`readiness-exporter serve` (the image's ENTRYPOINT and CMD) is started from it on a
loopback port.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.servers import free_port, wait_for_port

# One worker builds the venv (a module fixture: pip, strip, compiling the Kubernetes
# client; 4 to 7 minutes on the loaded 2-core machine, counted in the first test's time).
pytestmark = [pytest.mark.xdist_group("image-recipe"), pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements" / "runtime.lock"
INSTALL = "install-readiness-exporter"
BASE = "python:3.11-slim-bookworm"
# The image budget: 200 MB unpacked. The base is documented at about 125 MB unpacked
# (`docker image inspect -f '{{.Size}}'`, not measurable here); 130 keeps a margin, so
# the venv, the only layer of substance the runtime stage adds, gets the rest.
IMAGE_BUDGET_MB = 200
BASE_IMAGE_MB = 130
VENV_BUDGET_BYTES = (IMAGE_BUDGET_MB - BASE_IMAGE_MB) * 1000 * 1000
DRILL_PACKAGES = {"postgresql-client": ["psql", "pg_restore"], "age": ["age"],
                  "pgbackrest": ["pgbackrest"]}


@dataclass
class Stage:
    """One FROM ... section of the Dockerfile: its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def args(self) -> dict[str, str]:
        """The stage's own `ARG NAME=default` values."""
        return dict(arg.partition("=")[::2] for arg in self.all("ARG"))


def substitute(text: str, args: dict[str, str]) -> str:
    """Dockerfile variable substitution: `${X}`, `${X:+word}`, `${X:-word}`."""
    def one(match: re.Match[str]) -> str:
        name, op, word = match.group(1), match.group(2), match.group(3)
        value = args.get(name, "")
        if op == ":+":
            return word if value else ""
        if op == ":-":
            return value or word
        return value
    return re.sub(r"\$\{(\w+)(?:(:[+-])([^}]*))?\}", one, text)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = substitute(words[0], args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


def stage_named(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)


def lock_pins(text: str) -> dict[str, str]:
    """`name==version` lines of a pip lock file (canonical names)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _install_steps(stage: Stage) -> list[list[str]]:
    """The `install-readiness-exporter ...` commands of a stage's RUN lines, with the
    stage's ARG defaults substituted."""
    steps = []
    for run in stage.all("RUN"):
        words = shlex.split(substitute(run, stage.args()))
        words = [w for w in words if not w.startswith("--mount=")]
        for command in " ".join(words).split("&&"):
            parts = command.split()
            if parts and parts[0] == INSTALL:
                steps.append(parts[1:])
    return steps


def venv_bytes(root: Path) -> int:
    """What a directory adds to an image layer: file bytes plus one 512-byte tar header
    per entry (symlinks and directories count their header only)."""
    total = 0
    for path in root.rglob("*"):
        total += 512
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


@dataclass
class Installed:
    context: Path
    wheels: Path
    venv: Path
    workdir: Path
    unslimmed_bytes: int  # the venv's size before `install.sh slim`


@pytest.fixture(scope="module")
def installed(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Run the Dockerfile's build steps outside a container."""
    tmp = tmp_path_factory.mktemp("image")
    builder, final = stage_named(stages, "builder"), stage_named(stages, "runtime")
    context = tmp / "src"
    # COPY SRC... DEST into the build context (only what the Dockerfile copies).
    for copy in builder.all("COPY"):
        *sources, dest = [w for w in copy.split() if not w.startswith("--")]
        for source in sources:
            if source == "docker/install.sh":
                continue
            src = ROOT / source
            target = context / (Path(dest).relative_to("/src") if dest.startswith("/src")
                                else dest)
            if src.is_dir():
                shutil.copytree(src, target if not dest.endswith("/") else target / src.name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
    paths = {"/src": context, "/wheels": tmp / "wheels",
             "/opt/readiness-exporter": tmp / "venv"}

    def mapped(word: str) -> str:
        for image_path, here in paths.items():
            if word == image_path or word.startswith(image_path + "/"):
                return str(here) + word[len(image_path):]
        return word

    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    unslimmed = 0
    assert not _install_steps(final), "the runtime stage copies the builder's venv"
    for step in _install_steps(builder):
        if step[0] == "slim":
            unslimmed = venv_bytes(tmp / "venv")
        result = subprocess.run(["sh", str(ROOT / "docker" / "install.sh"),
                                 *map(mapped, step)], capture_output=True, text=True,
                                env=env, timeout=240, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
    workdir = tmp / "workdir"
    workdir.mkdir()
    return Installed(context, tmp / "wheels", tmp / "venv", workdir, unslimmed)


# --------------------------------------------------------------------------- the recipe


def test_dockerfile_is_multi_stage_slim_and_non_root(stages: list[Stage]) -> None:
    args, _ = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert args["PYTHON_IMAGE"] == BASE
    assert [s.name for s in stages] == ["builder", "runtime", "restore-drill", None]
    builder, final = stage_named(stages, "builder"), stage_named(stages, "runtime")
    # The base by digest (docker/check-digest), the same in both stages.
    digest = args["PYTHON_DIGEST"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    assert builder.base == final.base == f"{BASE}@{digest}"
    # `docker build .` builds the last stage: the runtime image, unchanged.
    assert stages[-1].base == "runtime" and not stages[-1].instructions
    assert _install_steps(builder) == [
        ["wheels", "/src", "/wheels"],
        ["venv", "/wheels", "/opt/readiness-exporter"],
        ["slim", "/opt/readiness-exporter"]]
    assert "binutils" in " ".join(builder.all("RUN"))  # strip, in the builder only
    # The final stage takes only the slimmed venv from the builder.
    assert final.all("COPY") == ["--from=builder /opt/readiness-exporter "
                                 "/opt/readiness-exporter"]
    assert not _install_steps(final)
    assert any("READINESS_EXPORTER_REVISION=${REVISION}" in e for e in final.all("ENV"))
    # No compilers, binutils or package installs in the final image.
    final_runs = " ".join(final.all("RUN"))
    for word in ("apt-get", "gcc", "build-essential", "binutils", "apk ", "pip "):
        assert word not in final_runs
    assert final.all("USER") == ["10001:10001"]
    assert "--uid 10001" in final_runs
    assert final.all("EXPOSE") == ["9847"]
    assert json.loads(final.all("ENTRYPOINT")[0]) == ["readiness-exporter"]
    assert json.loads(final.all("CMD")[0]) == ["serve", "--web.listen-address", ":9847"]
    assert not final.all("HEALTHCHECK")


def test_dockerignore_keeps_the_context_to_what_is_copied() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!exporter/", "!docker/install.sh",
            "!requirements/runtime.lock"} <= set(lines)


def _check_digest(dockerfile_text: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """docker/check-digest run against a copy of the repository's layout."""
    (tmp_path / "docker").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "docker" / "check-digest", tmp_path / "docker" / "check-digest")
    (tmp_path / "Dockerfile").write_text(dockerfile_text, encoding="utf-8")
    return subprocess.run(["sh", str(tmp_path / "docker" / "check-digest"), *args],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": "/usr/bin:/bin"})


def test_check_digest_passes_the_pinned_dockerfile(tmp_path: Path) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    result = _check_digest(text, tmp_path)
    assert result.returncode == 0, result.stderr
    args, _ = parse_dockerfile(text)
    assert result.stdout.strip() == f"base image pinned: {BASE}@{args['PYTHON_DIGEST']}"


def test_check_digest_verify_says_what_it_needs_without_docker(tmp_path: Path) -> None:
    """No registry can be asked here: --verify and --write stop with the reason (the
    pinned digest is unverified on this machine, docs/deployment.md)."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    for option in ("--verify", "--write"):
        result = _check_digest(text, tmp_path, option)
        assert result.returncode == 1
        assert "need docker buildx and registry access" in result.stderr
    assert (tmp_path / "Dockerfile").read_text(encoding="utf-8") == text  # not rewritten


@pytest.mark.parametrize("digest", ["", "sha256:abc", "latest"])
def test_check_digest_refuses_an_unpinned_or_malformed_digest(tmp_path: Path,
                                                              digest: str) -> None:
    text = re.sub(r"(?m)^ARG PYTHON_DIGEST=.*$", f"ARG PYTHON_DIGEST={digest}",
                  DOCKERFILE.read_text(encoding="utf-8"))
    result = _check_digest(text, tmp_path)
    assert result.returncode == 1
    assert "PYTHON_DIGEST" in result.stderr and "--write" in result.stderr
    # --verify needs something to verify before it asks any registry.
    verify = _check_digest(text, tmp_path, "--verify")
    assert verify.returncode == 1 and "no digest to verify" in verify.stderr


def test_restore_drill_target_adds_the_drill_tools_only(stages: list[Stage]) -> None:
    drill = stage_named(stages, "restore-drill")
    assert drill.base == "runtime"
    (run,) = drill.all("RUN")
    words = run.split()
    assert "--no-install-recommends" in words and "rm -rf /var/lib/apt/lists/*" in run
    installed = words[words.index("--no-install-recommends") + 1:words.index("&&", words.index(
        "--no-install-recommends"))]
    assert set(installed) == set(DRILL_PACKAGES)
    assert drill.all("USER") == ["0:0", "10001:10001"]  # back to the runtime's user
    assert not drill.all("ENTRYPOINT") and not drill.all("CMD")  # the runtime's


@pytest.mark.parametrize("package", sorted(DRILL_PACKAGES))
def test_drill_packages_provide_the_drill_binaries(package: str) -> None:
    """The Debian package names of the drill target ship the binaries the drills call
    (checked on this machine's Debian, where the test suite installs them)."""
    wanted = DRILL_PACKAGES[package]
    if package == "postgresql-client":  # a metapackage: its binaries are in -client-NN
        query = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n",
                                "postgresql-client-[0-9]*"], capture_output=True, text=True,
                               check=False)
        versioned = [line.split()[0] for line in query.stdout.splitlines()
                     if line.endswith("install ok installed")]
        package = versioned[0] if versioned else package
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                            check=False)
    if listed.returncode != 0:
        pytest.skip(f"Debian package {package} is not installed here (make system-deps)")
    names = {Path(p).name for p in listed.stdout.split()}
    assert set(wanted) <= names


# --------------------------------------------------------------------------- the lock


def test_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    text = LOCK.read_text(encoding="utf-8")
    pins = lock_pins(text)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for spec in pyproject["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in pyproject.toml but not in {LOCK.name}; " \
            "regenerate it (docs/deployment.md)"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"{LOCK.name} pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}"
    # Every pin carries at least one hash (pip --require-hashes refuses otherwise).
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#")
                       else text)
    for entry in entries:
        if re.match(r"^[A-Za-z0-9._-]+==", entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_venv_holds_exactly_the_locked_versions(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    listing = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
         "{d.metadata['Name']: d.version for d in m.distributions()}))"],
        capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    found = {canonicalize_name(k): v for k, v in json.loads(listing.stdout).items()}
    expected = {**lock_pins(LOCK.read_text(encoding="utf-8")), "readiness-exporter": "0.1.0"}
    assert found == expected


def test_venv_install_refuses_a_wheel_that_does_not_match_its_hash(
        installed: Installed, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    shutil.copytree(installed.wheels, wheels)
    victim = next(wheels.glob("six-*.whl"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(["sh", str(ROOT / "docker" / "install.sh"), "venv", str(wheels),
                             str(tmp_path / "venv")], capture_output=True, text=True,
                            env=env, timeout=240, check=False)
    assert result.returncode != 0
    assert "hash" in result.stderr.lower() and "six" in result.stderr


def test_wheel_carries_presets_and_board_templates(installed: Installed) -> None:
    (wheel,) = installed.wheels.glob("readiness_exporter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "exporter").rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts]
    assert "exporter/presets/default.yaml" in data_files
    assert any(p.startswith("exporter/web/templates/") for p in data_files)
    missing = sorted(set(data_files) - names)
    assert not missing, f"package data missing from the wheel: {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "readiness-exporter = exporter.cli:main" in text


def test_venv_is_self_contained(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import exporter, importlib.resources as r; print(exporter.__file__);"
         "print(r.files('exporter.presets').joinpath('default.yaml').is_file())"],
        capture_output=True, text=True, cwd=installed.workdir, check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})  # as the image
    module_path, preset_found = result.stdout.split()
    assert Path(module_path).is_relative_to(installed.venv), module_path
    assert preset_found == "True"
    # pip and setuptools were removed after the install: nothing in the image can install
    # more; no .pyc files were written (smaller image).
    assert not (installed.venv / "bin" / "pip").exists()
    site = next((installed.venv / "lib").glob("python3*/site-packages"))
    assert not (site / "setuptools").exists()
    compiled = sorted(str(p.relative_to(site)) for p in site.rglob("*.pyc"))
    assert not compiled, compiled[:5]
    version = subprocess.run([str(installed.venv / "bin" / "readiness-exporter"), "--version"],
                             capture_output=True, text=True, check=True,
                             env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert version.stdout.strip().startswith("readiness-exporter ")


# --------------------------------------------------------------------------- the size


def _run_in(installed: Installed, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Python code run by the installed venv's interpreter, as the image would."""
    return subprocess.run([str(installed.venv / "bin" / "python"), "-c", code],
                          capture_output=True, text=True, cwd=installed.workdir, timeout=120,
                          check=False, env={"PATH": "/usr/bin:/bin",
                                            "PYTHONDONTWRITEBYTECODE": "1", **env})


def test_venv_fits_the_image_budget_only_once_slimmed(installed: Installed) -> None:
    """base (130 MB) + venv <= 200 MB; the same venv before `install.sh slim` does not
    fit, so the budget is what keeps the slimming in the recipe."""
    slimmed = venv_bytes(installed.venv)
    assert slimmed <= VENV_BUDGET_BYTES, (
        f"venv {slimmed / 1e6:.1f} MB > {VENV_BUDGET_BYTES / 1e6:.0f} MB: the image would "
        f"exceed {IMAGE_BUDGET_MB} MB on a {BASE_IMAGE_MB} MB base (bench/image_size.py)")
    assert installed.unslimmed_bytes > VENV_BUDGET_BYTES
    site = next((installed.venv / "lib").glob("python3*/site-packages"))
    assert not list(site.rglob("*.pyi"))
    assert sorted(p.name for p in (site / "botocore" / "data").iterdir() if p.is_dir()) == \
        ["s3", "signin", "sso", "sso-oidc", "sts"]
    assert not (site / "kubernetes_asyncio").exists()  # zipped (test below)
    for library in site.rglob("*.so"):  # stripped: no symbol table left
        header = library.read_bytes()
        assert b".symtab" not in header, library.relative_to(site)


def test_stripped_native_modules_all_load(installed: Installed) -> None:
    site = next((installed.venv / "lib").glob("python3*/site-packages"))
    modules = sorted(
        ".".join(p.relative_to(site).with_suffix("").with_suffix("").parts)
        for p in site.rglob("*.so"))
    assert "cryptography.hazmat.bindings._rust" in modules and len(modules) > 20
    result = _run_in(installed, "import importlib, sys\n"
                     "for name in sys.argv[1:] or " + repr(modules) + ":\n"
                     "    importlib.import_module(name)\nprint('loaded')")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "loaded"


async def test_zipped_kubernetes_client_loads_compiled_and_talks_to_an_api_server(
        installed: Installed) -> None:
    """kubernetes_asyncio from its zip, compiled code used (nothing compiled at start),
    listing namespaces from the Kubernetes API stand-in with a bearer token."""
    from tests.probes.k8s_apiserver import FIXTURES, FakeApiServer

    site = next((installed.venv / "lib").glob("python3*/site-packages"))
    with zipfile.ZipFile(site / "kubernetes_asyncio.zip") as archive:
        names = set(archive.namelist())
    assert "kubernetes_asyncio/client/api_client.py" in names  # sources, for tracebacks
    assert "kubernetes_asyncio/client/api_client.pyc" in names
    expected = sorted(item["metadata"]["name"] for item in json.loads(
        (FIXTURES / "namespaces.json").read_text(encoding="utf-8"))["items"])
    token = "image-recipe-token-do-not-leak"
    server = FakeApiServer(token=token)
    server.load_fixtures()
    port = free_port()
    await server.start(port)
    code = (
        "import asyncio, os, zipimport\n"
        "from kubernetes_asyncio import client\n"
        "assert isinstance(client.__loader__, zipimport.zipimporter)\n"
        "assert client.__file__.endswith('.pyc'), client.__file__\n"
        "async def main():\n"
        "    conf = client.Configuration(host=os.environ['API'],\n"
        "                                api_key={'BearerToken': os.environ['TOKEN']},\n"
        "                                api_key_prefix={'BearerToken': 'Bearer'})\n"
        "    async with client.ApiClient(conf) as api:\n"
        "        found = await client.CoreV1Api(api).list_namespace()\n"
        "    print(sorted(n.metadata.name for n in found.items))\n"
        "asyncio.run(main())\n")
    try:
        process = await asyncio.create_subprocess_exec(
            str(installed.venv / "bin" / "python"), "-c", code, cwd=installed.workdir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
                 "API": f"http://127.0.0.1:{port}", "TOKEN": token})
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        await server.stop()
    assert process.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == repr(expected)
    assert token not in (out + err).decode()


def test_pruned_botocore_still_talks_s3(installed: Installed) -> None:
    """S3 through the slimmed botocore, against moto's S3 server with signatures on,
    with the client options exporter/transport/s3.py uses."""
    from tests.transport.kv_servers import BUCKET, moto_with_auth

    with moto_with_auth() as moto:
        result = _run_in(installed, (
            "import os, boto3\nfrom botocore.config import Config\n"
            "s3 = boto3.session.Session().client('s3', endpoint_url=os.environ['URL'],"
            " region_name='us-east-1', aws_access_key_id=os.environ['KEY'],"
            " aws_secret_access_key=os.environ['SECRET'],"
            " config=Config(retries={'total_max_attempts': 1}))\n"
            f"print([o['Key'] for o in s3.list_objects_v2(Bucket={BUCKET!r})['Contents']])"),
            URL=moto.url, KEY=moto.key_id, SECRET=moto.secret)
    assert result.returncode == 0, result.stderr[-2000:].replace(moto.secret, "<secret>")
    assert result.stdout.strip() == "['db/db-1.dump']"
    assert moto.secret not in result.stdout + result.stderr


# --------------------------------------------------------------------------- the image runs


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return response.status, response.read().decode()


@pytest.fixture
def serving(installed: Installed, stages: list[Stage]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """ENTRYPOINT + CMD from the Dockerfile, listen address moved to a loopback port."""
    final = stage_named(stages, "runtime")
    command = json.loads(final.all("ENTRYPOINT")[0]) + json.loads(final.all("CMD")[0])
    port = free_port()
    at = command.index("--web.listen-address") + 1
    command[at] = f"127.0.0.1:{port}"
    binary = installed.venv / "bin" / command[0]
    env = {"PATH": f"{installed.venv / 'bin'}:/usr/bin:/bin", "HOME": str(installed.workdir),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([str(binary), *command[1:]], cwd=installed.workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout=30)
        yield port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_installed_exporter_serves_health_and_metrics(
        serving: tuple[int, subprocess.Popen[str]]) -> None:
    port, process = serving
    status, body = _get(f"http://127.0.0.1:{port}/health")
    assert (status, json.loads(body)) == (200, {"status": "healthy"})
    assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    deadline = time.monotonic() + 30
    metrics = ""
    while time.monotonic() < deadline:  # the embedded default's first round of checks
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        if 'readiness_check_status{check="6.1"' in metrics:
            break
        time.sleep(0.2)
    assert status == 200
    assert "readiness_exporter_build_info{" in metrics
    assert 'readiness_check_status{check="6.1"' in metrics
    assert "readiness_go_live " in metrics
    # The embedded default runs from the installed package, without a config file.
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output[-2000:]
