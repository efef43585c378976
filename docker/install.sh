#!/bin/sh
# The two install steps of the container image, kept here so the Dockerfile and
# tests/deploy/test_image_recipe.py run exactly the same commands.
#
#   install.sh wheels SRC WHEEL_DIR   build the project's wheel and a wheel of every
#                                     runtime dependency (builder stage: may compile)
#   install.sh venv WHEEL_DIR VENV    create VENV and install the project from WHEEL_DIR
#                                     only, offline (final stage: no compilers, no index)
set -eu

usage() {
    echo "usage: $0 wheels SRC WHEEL_DIR | venv WHEEL_DIR VENV" >&2
    exit 2
}

[ "$#" -eq 3 ] || usage
python="${PYTHON:-python3}"

case "$1" in
wheels)
    "$python" -m pip wheel --disable-pip-version-check --quiet \
        --wheel-dir "$3" "$2"
    ;;
venv)
    "$python" -m venv "$3"
    "$3/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet \
        --no-index --find-links "$2" readiness-exporter
    # pip is not needed at run time; leave the venv with only what the exporter uses.
    "$3/bin/pip" uninstall --quiet --yes pip
    ;;
*)
    usage
    ;;
esac
