#!/bin/sh
# The install steps of the container image (all in its builder stage), kept here so the
# Dockerfile and tests/deploy/test_image_recipe.py run exactly the same commands.
#
#   install.sh wheels SRC WHEEL_DIR   wheels of every runtime dependency pinned in
#                                     SRC/requirements/runtime.lock, each download
#                                     checked against the lock's hashes (--require-hashes),
#                                     plus the project's own wheel; then WHEEL_DIR/wheels.lock:
#                                     name==version --hash of every wheel made here
#                                     (builder stage: may compile)
#   install.sh venv WHEEL_DIR VENV    create VENV and install exactly the wheels of
#                                     WHEEL_DIR/wheels.lock, offline, with --require-hashes
#                                     and --no-deps, without .pyc files; then pip check,
#                                     and pip and setuptools removed (offline: no index)
#   install.sh slim VENV              drop from VENV what the exporter never loads at run
#                                     time: debug symbols of native modules
#                                     (strip --strip-unneeded, needs binutils), type
#                                     stubs (*.pyi), packages' own tests/ directories,
#                                     the API models of AWS services other than S3
#                                     and the credential services boto3 may call
#                                     (sts, sso, sso-oidc, signin), and stray project
#                                     files at the top of site-packages; and
#                                     kubernetes_asyncio's 20 MB of source becomes one
#                                     zip with its compiled code; then prints the size
set -eu

usage() {
    echo "usage: $0 wheels SRC WHEEL_DIR | venv WHEEL_DIR VENV | slim VENV" >&2
    exit 2
}

[ "$#" -ge 2 ] || usage
python="${PYTHON:-python3}"
pip_flags="--disable-pip-version-check --quiet --no-cache-dir"

case "$1" in
wheels)
    [ "$#" -eq 3 ] || usage
    lock="$2/requirements/runtime.lock"
    [ -f "$lock" ] || { echo "$0: $lock is missing (see docs/deployment.md)" >&2; exit 2; }
    # shellcheck disable=SC2086
    "$python" -m pip wheel $pip_flags --require-hashes --no-deps --wheel-dir "$3" -r "$lock"
    # shellcheck disable=SC2086
    "$python" -m pip wheel $pip_flags --no-deps --wheel-dir "$3" "$2"
    "$python" - "$3" <<'PY'
import hashlib, pathlib, sys
out = pathlib.Path(sys.argv[1])
lines = []
for wheel in sorted(out.glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lines.append(f"{name}=={version} --hash=sha256:{digest}\n")
(out / "wheels.lock").write_text("".join(lines))
PY
    ;;
venv)
    [ "$#" -eq 3 ] || usage
    "$python" -m venv "$3"
    # shellcheck disable=SC2086
    # --no-compile: no .pyc files (about 65 MB); the read-only image compiles in memory.
    "$3/bin/pip" install $pip_flags --no-index --find-links "$2" --require-hashes --no-deps \
        --no-compile -r "$2/wheels.lock"
    "$3/bin/pip" check --disable-pip-version-check
    # pip and setuptools are not needed at run time; leave only what the exporter uses.
    "$3/bin/pip" uninstall --quiet --yes setuptools pip
    ;;
slim)
    [ "$#" -eq 2 ] || usage
    command -v strip >/dev/null || { echo "$0: slim needs strip (binutils)" >&2; exit 2; }
    site="$(echo "$2"/lib/python3*/site-packages)"
    [ -d "$site" ] || { echo "$0: $2 is not a virtual environment" >&2; exit 2; }
    # Native modules carry symbol tables and debug sections (about 30 MB): not loaded.
    find "$site" -name '*.so' -type f -exec strip --strip-unneeded {} +
    # Type stubs are read by type checkers only; tests/ directories by their own suites.
    find "$site" -name '*.pyi' -type f -delete
    find "$site" -depth -type d -name tests -path "$site/*/tests" -exec rm -rf {} +
    # botocore ships the API model of every AWS service (about 25 MB); the exporter
    # creates S3 clients only (exporter/transport/s3.py), and botocore's credential
    # providers create sts (assume-role, web identity), sso, sso-oidc and signin clients.
    for service in "$site"/botocore/data/*/; do
        case "$(basename "$service")" in
        s3 | sts | sso | sso-oidc | signin) ;;
        *) rm -rf "$service" ;;
        esac
    done
    # boto3's resource models: the exporter uses clients, never boto3.resource().
    rm -rf "$site/boto3/data"
    # kubernetes_asyncio is 20 MB of generated source (the client and models of every
    # API group, all imported by kubernetes_asyncio.client): kept as one zip of the
    # sources and their compiled code (about 6.5 MB) that zipimport loads through a
    # .pth file. The image compiles nothing of it at start (faster, less memory), and
    # logged tracebacks still show its source lines (zipimport serves them).
    "$2/bin/python" - "$site" kubernetes_asyncio <<'PY'
import os, py_compile, shutil, sys, tempfile, zipfile
site, package = sys.argv[1], sys.argv[2]
root, target = os.path.join(site, package), os.path.join(site, package + ".zip")
mode = py_compile.PycInvalidationMode.CHECKED_HASH  # valid whatever the file times
with tempfile.TemporaryDirectory() as tmp, \
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            inner = os.path.relpath(path, site)
            archive.write(path, inner)
            if name.endswith(".py"):
                compiled = os.path.join(tmp, "module.pyc")
                py_compile.compile(path, compiled, dfile=os.path.join(target, inner),
                                   doraise=True, invalidation_mode=mode)
                with open(compiled, "rb") as handle:
                    archive.writestr(inner + "c", handle.read())
shutil.rmtree(root)
with open(os.path.join(site, package + ".pth"), "w", encoding="utf-8") as handle:
    handle.write(package + ".zip\n")
PY
    # Project files kubernetes_asyncio's wheel drops at the top of site-packages (its
    # changelog, readme, contributing guide, pyproject.toml; its LICENSE stays): unread.
    find "$site" -maxdepth 1 -type f \( -name '*.md' -o -name pyproject.toml \) -delete
    echo "slimmed $2: $(du -sk --apparent-size "$2" | cut -f1) KiB," \
         "$(find "$2" -type f | wc -l) files"
    ;;
*)
    usage
    ;;
esac
