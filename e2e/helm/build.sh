#!/usr/bin/env bash
# Builds the pinned Helm the chart checks use, from its Go module, into a cache
# directory keyed by version:
#
#   ${VALIDATOR_WEBHOOK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/validator-webhook}/helm/vX.Y.Z/helm
#
# The version comes from go.mod next to this script (the single source of
# truth). Nothing is rebuilt when the directory already holds a helm that runs
# and reports that version.
#
# Usage: build.sh [--print-dir]
#   --print-dir   only print the directory (does not build or check it)
#
# stdout: exactly one line, the directory holding `helm` (callers capture it,
#         e.g. PATH="$(e2e/helm/build.sh):$PATH");
# stderr: progress.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module=helm.sh/helm/v4

log() { printf '%s\n' "$*" >&2; }
die() { log "build.sh: error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
}

print_dir_only=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --print-dir) print_dir_only=true ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done

# The version go.mod requires the module at (`require m v` or the block form).
helm_version="$(awk -v m="${module}" '
  $1 == "require" && $2 != "(" { $1 = ""; $0 = $0 }
  $1 == m && $2 ~ /^v/ { print $2; exit }
' "${script_dir}/go.mod")"
[[ -n "${helm_version}" ]] || die "cannot find the version of ${module} in ${script_dir}/go.mod"

cache_root="${VALIDATOR_WEBHOOK_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/validator-webhook}"
helm_dir="${cache_root}/helm/${helm_version}"

if [[ "${print_dir_only}" == true ]]; then
  printf '%s\n' "${helm_dir}"
  exit 0
fi

# helm_ok DIR: the binary exists, runs, and reports the pinned version.
helm_ok() {
  local out
  [[ -x "$1/helm" ]] || return 1
  out="$("$1/helm" version --template '{{.Version}}' 2>&1)" || return 1
  [[ "${out}" == "${helm_version}" ]]
}

if helm_ok "${helm_dir}"; then
  log "==> helm ${helm_version} already built"
  printf '%s\n' "${helm_dir}"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not installed (need Go >= $(awk '$1 == "go" { print $2; exit }' "${script_dir}/go.mod"))"

mkdir -p "${cache_root}/helm"

# Serialize concurrent builds of the same version (e.g. parallel test runs).
if command -v flock >/dev/null 2>&1; then
  exec {lock_fd}>"${helm_dir}.lock"
  if ! flock -n "${lock_fd}"; then
    log "==> waiting for another build.sh holding ${helm_dir}.lock ..."
    flock "${lock_fd}"
  fi
  if helm_ok "${helm_dir}"; then
    log "==> helm ${helm_version} already built"
    printf '%s\n' "${helm_dir}"
    exit 0
  fi
fi

# Build next to the final directory and rename it into place, so a half-built
# directory is never visible.
tmp_dir="$(mktemp -d "${helm_dir}.tmp.XXXXXX")"
child_pid=""
cleanup() {
  if [[ -n "${child_pid}" ]]; then
    kill "${child_pid}" 2>/dev/null || true
    wait "${child_pid}" 2>/dev/null || true
  fi
  rm -rf "${tmp_dir}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Our own settings, as for the control plane: no go.work, a static binary,
# go.mod/go.sum never rewritten, nothing taken from this repository's git state.
export GOWORK=off CGO_ENABLED=0
# Upstream's release settings (its Makefile): the version and a clean tree.
ldflags="-s -w -X ${module}/internal/version.version=${helm_version}"
ldflags+=" -X ${module}/internal/version.metadata="
ldflags+=" -X ${module}/internal/version.gitTreeState=clean"

log "==> building helm ${helm_version} into ${helm_dir} ($(go version))"
start="${SECONDS}"
# In the background so that a signal reaches the trap, which stops the build.
go -C "${script_dir}" build -mod=readonly -buildvcs=false -trimpath -ldflags "${ldflags}" \
  -o "${tmp_dir}/helm" "${module}/cmd/helm" >&2 &
child_pid=$!
if ! wait "${child_pid}"; then
  child_pid=""
  die "building helm ${helm_version} failed"
fi
child_pid=""

helm_ok "${tmp_dir}" || die "the freshly built helm in ${tmp_dir} does not report ${helm_version}"

chmod 0755 "${tmp_dir}"
if [[ -e "${helm_dir}" ]]; then
  rm -rf "${helm_dir}"
fi
mv -T "${tmp_dir}" "${helm_dir}"
trap - EXIT INT TERM

log "==> built helm ${helm_version} in $((SECONDS - start))s"
printf '%s\n' "${helm_dir}"
