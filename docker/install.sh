#!/bin/sh
# The two install steps of the container image, kept here so the Dockerfile and
# tests/deploy/test_image_recipe.py run exactly the same commands.
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
#                                     and pip and setuptools removed (final stage: no
#                                     compilers, no index)
set -eu

usage() {
    echo "usage: $0 wheels SRC WHEEL_DIR | venv WHEEL_DIR VENV" >&2
    exit 2
}

[ "$#" -eq 3 ] || usage
python="${PYTHON:-python3}"
pip_flags="--disable-pip-version-check --quiet --no-cache-dir"

case "$1" in
wheels)
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
    "$python" -m venv "$3"
    # shellcheck disable=SC2086
    # --no-compile: no .pyc files (about 65 MB); the read-only image compiles in memory.
    "$3/bin/pip" install $pip_flags --no-index --find-links "$2" --require-hashes --no-deps \
        --no-compile -r "$2/wheels.lock"
    "$3/bin/pip" check --disable-pip-version-check
    # pip and setuptools are not needed at run time; leave only what the exporter uses.
    "$3/bin/pip" uninstall --quiet --yes setuptools pip
    ;;
*)
    usage
    ;;
esac
