#!/usr/bin/env bash
# Builds the pinned e2e control-plane binaries (kube-apiserver,
# kube-controller-manager, kubectl, etcd) from source with the Go toolchain, into
# a cache directory keyed by version:
#
#   ${VALIDATOR_WEBHOOK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/validator-webhook}/control-plane/k8s-vX.Y.Z-etcd-vA.B.C/
#     etcd  kube-apiserver  kubectl      (same layout as setup-envtest's KUBEBUILDER_ASSETS)
#     kube-controller-manager           (which setup-envtest's assets lack)
#
# The versions come from kubernetes/go.mod and etcd/go.mod next to this script
# (the single source of truth). Nothing is rebuilt when the directory already
# holds all four binaries and they run; a binary that already runs at its
# pinned version is kept when another one is missing.
#
# Usage: build.sh [--print-dir]
#   --print-dir   only print the asset directory (does not build or check it)
#
# stdout: exactly one line, the asset directory (callers capture it, e.g.
#         KUBEBUILDER_ASSETS="$(e2e/control-plane/build.sh)");
# stderr: progress.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_mod_dir="${script_dir}/kubernetes"
etcd_mod_dir="${script_dir}/etcd"

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

# required_version GOMOD MODULE: the version MODULE is required at in GOMOD
# (handles both `require m v` and the `require ( ... )` block form).
required_version() {
  local v
  v="$(awk -v m="$2" '
    $1 == "require" && $2 != "(" { $1 = ""; $0 = $0 }
    $1 == m && $2 ~ /^v/ { print $2; exit }
  ' "$1")"
  [[ -n "${v}" ]] || die "cannot find the version of $2 in $1"
  printf '%s\n' "${v}"
}

# replaced_version GOMOD MODULE: the version MODULE is replaced with in GOMOD.
replaced_version() {
  awk -v m="$2" '
    $1 == "replace" && $2 != "(" { $1 = ""; $0 = $0 }
    $1 == m && $2 == "=>" { print $4; exit }
  ' "$1"
}

k8s_version="$(required_version "${k8s_mod_dir}/go.mod" k8s.io/kubernetes)"
etcd_version="$(required_version "${etcd_mod_dir}/go.mod" go.etcd.io/etcd/server/v3)"

cache_root="${VALIDATOR_WEBHOOK_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/validator-webhook}"
asset_dir="${cache_root}/control-plane/k8s-${k8s_version}-etcd-${etcd_version}"

if [[ "${print_dir_only}" == true ]]; then
  printf '%s\n' "${asset_dir}"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not installed (need Go >= $(awk '$1 == "go" { print $2; exit }' "${k8s_mod_dir}/go.mod"))"

# Staging modules (k8s.io/api, ...) are published as v0.<minor>.<patch> of the
# k8s release; make sure the replace block was bumped together with k8s.
staging_version="v0.${k8s_version#v1.}"
api_version="$(replaced_version "${k8s_mod_dir}/go.mod" k8s.io/api)"
[[ "${api_version}" == "${staging_version}" ]] ||
  die "kubernetes/go.mod: k8s.io/kubernetes is ${k8s_version} but k8s.io/api is replaced with '${api_version}' (want ${staging_version} for every k8s.io staging module)"

# binary_ok DIR NAME: DIR/NAME exists, runs, and reports its pinned version.
binary_ok() {
  local binary="$1/$2" out
  [[ -x "${binary}" ]] || return 1
  case "$2" in
    kube-apiserver | kube-controller-manager)
      out="$("${binary}" --version 2>&1)" || return 1
      [[ "${out}" == "Kubernetes ${k8s_version}" ]] ;;
    kubectl)
      out="$("${binary}" version --client 2>&1)" || return 1
      [[ "${out}" == *"Client Version: ${k8s_version}"* ]] ;;
    etcd)
      out="$("${binary}" --version 2>&1)" || return 1
      [[ "${out}" == *"etcd Version: ${etcd_version#v}"* ]] ;;
    *) return 1 ;;
  esac
}

binaries=(kube-apiserver kube-controller-manager kubectl etcd)

# assets_ok DIR: every binary exists, runs, and reports the pinned version.
assets_ok() {
  local name
  for name in "${binaries[@]}"; do
    binary_ok "$1" "${name}" || return 1
  done
}

if assets_ok "${asset_dir}"; then
  log "==> control-plane binaries k8s ${k8s_version} / etcd ${etcd_version} already built"
  printf '%s\n' "${asset_dir}"
  exit 0
fi

mkdir -p "${cache_root}/control-plane"

# Serialize concurrent builds of the same versions (e.g. parallel test jobs).
if command -v flock >/dev/null 2>&1; then
  exec {lock_fd}>"${asset_dir}.lock"
  if ! flock -n "${lock_fd}"; then
    log "==> waiting for another build.sh holding ${asset_dir}.lock ..."
    flock "${lock_fd}"
  fi
  if assets_ok "${asset_dir}"; then
    log "==> control-plane binaries k8s ${k8s_version} / etcd ${etcd_version} already built"
    printf '%s\n' "${asset_dir}"
    exit 0
  fi
fi

# Build into a temporary directory next to the final one (same filesystem),
# then rename it into place, so a half-built directory is never visible.
tmp_dir="$(mktemp -d "${asset_dir}.tmp.XXXXXX")"
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

# Our own settings, not whatever the caller's environment says:
#  GOWORK=off        never pick up a go.work from an enclosing directory;
#  CGO_ENABLED=0     static binaries, as the upstream release builds them;
#  -mod=readonly     never rewrite go.mod/go.sum;
#  -buildvcs=false   the binaries must not depend on this repo's git state.
export GOWORK=off CGO_ENABLED=0
go_flags=(-mod=readonly -buildvcs=false -trimpath)

# Upstream build settings (hack/lib/golang.sh, hack/lib/version.sh of k8s).
k8s_major="${k8s_version#v}"
k8s_minor="${k8s_major#*.}"
k8s_major="${k8s_major%%.*}"
k8s_minor="${k8s_minor%%.*}"
# The k8s module zip carries no git metadata, so the commit is a fixed
# placeholder; the build date is the release tag's time from the Go proxy.
k8s_build_date="$(go -C "${k8s_mod_dir}" list -mod=readonly -m \
  -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null)" ||
  k8s_build_date=""
k8s_build_date="${k8s_build_date:-1970-01-01T00:00:00Z}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X ${pkg}.gitVersion=${k8s_version}"
  k8s_ldflags+=" -X ${pkg}.gitMajor=${k8s_major}"
  k8s_ldflags+=" -X ${pkg}.gitMinor=${k8s_minor}"
  k8s_ldflags+=" -X ${pkg}.gitCommit=0000000000000000000000000000000000000000"
  k8s_ldflags+=" -X ${pkg}.gitTreeState=clean"
  k8s_ldflags+=" -X ${pkg}.buildDate=${k8s_build_date}"
done
k8s_tags="selinux,notest,grpcnotrace"
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=go-module-${etcd_version}"

# step DESCRIPTION COMMAND...: print the step, run it, print how long it took.
step() {
  local what="$1" start
  shift
  log "==> ${what} ..."
  start="${SECONDS}"
  # In the background so that a signal to this script reaches the trap (and
  # the cleanup stops the go command) instead of waiting for it to finish.
  "$@" >/dev/null &
  child_pid=$!
  if ! wait "${child_pid}"; then
    child_pid=""
    die "${what} failed"
  fi
  child_pid=""
  log "    done in $((SECONDS - start))s"
}

total_start="${SECONDS}"
log "==> building control-plane binaries k8s ${k8s_version} / etcd ${etcd_version} into ${asset_dir}"
log "    ($(go version), GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE))"

# Downloads only the modules needed for these packages (not the whole graph).
# Keep what an earlier build made and still runs at its pinned version.
k8s_missing=()
for name in "${binaries[@]}"; do
  if binary_ok "${asset_dir}" "${name}"; then
    log "==> keeping ${name}, already built"
    cp -p "${asset_dir}/${name}" "${tmp_dir}/${name}"
  elif [[ "${name}" != etcd ]]; then
    k8s_missing+=("k8s.io/kubernetes/cmd/${name}")
  fi
done

if [[ "${#k8s_missing[@]}" -gt 0 ]]; then
  step "downloading Go modules for kubernetes ${k8s_version}" \
    go -C "${k8s_mod_dir}" list -mod=readonly -deps -f '' -tags "${k8s_tags}" "${k8s_missing[@]}"
fi
for package in "${k8s_missing[@]}"; do
  step "building ${package##*/} ${k8s_version}" \
    go -C "${k8s_mod_dir}" build "${go_flags[@]}" -tags "${k8s_tags}" -ldflags "${k8s_ldflags}" \
    -o "${tmp_dir}/${package##*/}" "${package}"
done
if [[ ! -e "${tmp_dir}/etcd" ]]; then
  step "downloading Go modules for etcd ${etcd_version}" \
    go -C "${etcd_mod_dir}" list -mod=readonly -deps -f '' .
  step "building etcd ${etcd_version}" \
    go -C "${etcd_mod_dir}" build "${go_flags[@]}" -ldflags "${etcd_ldflags}" \
    -o "${tmp_dir}/etcd" .
fi

assets_ok "${tmp_dir}" || die "the freshly built binaries in ${tmp_dir} do not report k8s ${k8s_version} / etcd ${etcd_version}"

chmod 0755 "${tmp_dir}"
# A leftover invalid directory (e.g. from an older, interrupted layout) is replaced.
if [[ -e "${asset_dir}" ]]; then
  rm -rf "${asset_dir}"
fi
mv -T "${tmp_dir}" "${asset_dir}"
trap - EXIT INT TERM

log "==> built ${binaries[*]} in $((SECONDS - total_start))s:"
(cd "${asset_dir}" && ls -l "${binaries[@]}" >&2)
printf '%s\n' "${asset_dir}"
