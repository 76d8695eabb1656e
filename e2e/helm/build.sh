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
# shellcheck source=e2e/cached-build.sh
source "${script_dir}/../cached-build.sh"
parse_args "$@"
module=helm.sh/helm/v4

helm_version="$(required_version "${script_dir}/go.mod" "${module}")"
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

exit_if_built "${helm_dir}" helm_ok "helm ${helm_version}"

command -v go >/dev/null 2>&1 || die "go is not installed (need Go >= $(awk '$1 == "go" { print $2; exit }' "${script_dir}/go.mod"))"

begin_build "${helm_dir}" helm_ok "helm ${helm_version}"

# Upstream's release settings (its Makefile): the version and a clean tree.
ldflags="-s -w -X ${module}/internal/version.version=${helm_version}"
ldflags+=" -X ${module}/internal/version.metadata="
ldflags+=" -X ${module}/internal/version.gitTreeState=clean"

log "==> building helm ${helm_version} into ${helm_dir} ($(go version))"
start="${SECONDS}"
step "building helm ${helm_version}" \
  go -C "${script_dir}" build "${go_flags[@]}" -ldflags "${ldflags}" \
  -o "${tmp_dir}/helm" "${module}/cmd/helm"

helm_ok "${tmp_dir}" || die "the freshly built helm in ${tmp_dir} does not report ${helm_version}"

finish_build "${helm_dir}"

log "==> built helm ${helm_version} in $((SECONDS - start))s"
printf '%s\n' "${helm_dir}"
