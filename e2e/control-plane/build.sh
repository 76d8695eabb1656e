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

# shellcheck source=e2e/cached-build.sh
source "${script_dir}/../cached-build.sh"
parse_args "$@"

# replaced_version GOMOD MODULE: the version MODULE is replaced with in GOMOD.
replaced_version() {
  awk -v m="$2" '
    $1 == "replace" && $2 != "(" { $1 = ""; $0 = $0 }
    $1 == m && $2 == "=>" { print $4; exit }
  ' "$1"
}

k8s_version="$(required_version "${k8s_mod_dir}/go.mod" k8s.io/kubernetes)"
etcd_version="$(required_version "${etcd_mod_dir}/go.mod" go.etcd.io/etcd/server/v3)"

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

what="control-plane binaries k8s ${k8s_version} / etcd ${etcd_version}"
exit_if_built "${asset_dir}" assets_ok "${what}"

begin_build "${asset_dir}" assets_ok "${what}"

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

finish_build "${asset_dir}"

log "==> built ${binaries[*]} in $((SECONDS - total_start))s:"
(cd "${asset_dir}" && ls -l "${binaries[@]}" >&2)
printf '%s\n' "${asset_dir}"
