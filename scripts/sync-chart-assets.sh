#!/usr/bin/env bash
# Render the reference rule files (alerts/*.yml: `readiness-exporter mixin` with the
# ${RUNBOOK_BASE_URL}/${BOARD_URL} placeholders) and dashboards (dashboards/generate.py),
# then copy both into the chart (helm/readiness-exporter/files/), which Helm reads with
# .Files and fills the placeholders in. exporter/mixin_rules.py and
# exporter/mixin_dashboards.py stay the one source of truth. Copies that no longer have
# a source are removed. Promtool unit-test files (with `rule_files:`) are skipped.
#
#   scripts/sync-chart-assets.sh          update the chart's copies
#   scripts/sync-chart-assets.sh --check  exit 1 (and list them) if any copy differs
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# CHART_FILES_DIR: another chart copy's files/ (tests sync into a temporary copy).
chart_files="${CHART_FILES_DIR:-$root/helm/readiness-exporter/files}"
check=false
[[ "${1:-}" == "--check" ]] && check=true

is_rule_file() {
    grep -q '^groups:' "$1" && ! grep -q '^rule_files:' "$1"
}

stale=0
sync_dir() {  # sync_dir SOURCE_DIR PATTERN TARGET_DIR [filter]
    local source_dir="$1" pattern="$2" target_dir="$3" filter="${4:-}"
    local wanted=() src name
    shopt -s nullglob
    for src in "$source_dir"/$pattern; do
        if [[ -n "$filter" ]] && ! "$filter" "$src"; then continue; fi
        name="$(basename "$src")"
        wanted+=("$name")
        if ! cmp -s "$src" "$target_dir/$name"; then
            stale=1
            if $check; then
                echo "differs: ${target_dir#"$root"/}/$name (source ${src#"$root"/})" >&2
            else
                mkdir -p "$target_dir"
                cp "$src" "$target_dir/$name"
                echo "copied ${src#"$root"/}" >&2
            fi
        fi
    done
    for src in "$target_dir"/$pattern; do
        name="$(basename "$src")"
        if [[ " ${wanted[*]} " != *" $name "* ]]; then
            stale=1
            if $check; then
                echo "no source: ${src#"$root"/}" >&2
            else
                rm -f "$src"
                echo "removed ${src#"$root"/}" >&2
            fi
        fi
    done
    shopt -u nullglob
}

# READINESS_EXPORTER / PYTHON: the console script and interpreter of the venv.
exporter_bin="${READINESS_EXPORTER:-$root/.venv/bin/readiness-exporter}"
python="${PYTHON:-$root/.venv/bin/python}"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
# shellcheck disable=SC2016  # the placeholders are literal
"$exporter_bin" mixin --runbook-base-url '${RUNBOOK_BASE_URL}' --board-url '${BOARD_URL}' \
    --output "$rendered" >/dev/null
sync_dir "$rendered" "*.yml" "$root/alerts" is_rule_file
if $check; then
    "$python" "$root/dashboards/generate.py" --check || stale=1
else
    "$python" "$root/dashboards/generate.py"
fi

sync_dir "$root/alerts" "*.yml" "$chart_files/alerts" is_rule_file
sync_dir "$root/dashboards" "*.json" "$chart_files/dashboards"

if $check && [[ $stale -ne 0 ]]; then
    echo "chart assets are out of date: run scripts/sync-chart-assets.sh" >&2
    exit 1
fi
exit 0
