# shellcheck shell=bash
# What e2e/control-plane/build.sh and e2e/helm/build.sh share, sourced by both:
# the `[--print-dir]` command line, versions read from a go.mod, the cache
# directory, one build at a time per version (flock), and a build into a
# temporary directory that is renamed into place, so a half-built directory is
# never visible. A script sourcing this sets `script_dir` first.
#
# print_dir_only, cache_root and go_flags are read by the sourcing script.
# shellcheck disable=SC2034

log() { printf '%s\n' "$*" >&2; }
die() { log "build.sh: error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
}

# parse_args ARGS...: sets print_dir_only from `--print-dir`.
parse_args() {
  print_dir_only=false
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --print-dir) print_dir_only=true ;;
      -h | --help) usage; exit 0 ;;
      *) usage; die "unknown argument: $1" ;;
    esac
    shift
  done
}

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

cache_root="${VALIDATOR_WEBHOOK_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/validator-webhook}"

# exit_if_built DIR CHECK WHAT: when `CHECK DIR` passes, says WHAT is already
# built, prints DIR and exits.
exit_if_built() {
  if "$2" "$1"; then
    log "==> $3 already built"
    printf '%s\n' "$1"
    exit 0
  fi
}

# begin_build DIR CHECK WHAT: waits for any other build of DIR, exits if it
# built DIR meanwhile, then creates `tmp_dir` next to DIR, which is removed
# (and the running step stopped) on exit unless finish_build moved it.
begin_build() {
  mkdir -p "$(dirname "$1")"
  # Serialize concurrent builds of the same version (e.g. parallel test runs).
  if command -v flock >/dev/null 2>&1; then
    exec {lock_fd}>"$1.lock"
    if ! flock -n "${lock_fd}"; then
      log "==> waiting for another build.sh holding $1.lock ..."
      flock "${lock_fd}"
    fi
    exit_if_built "$1" "$2" "$3"
  fi
  tmp_dir="$(mktemp -d "$1.tmp.XXXXXX")"
  child_pid=""
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

cleanup() {
  if [[ -n "${child_pid}" ]]; then
    kill "${child_pid}" 2>/dev/null || true
    wait "${child_pid}" 2>/dev/null || true
  fi
  rm -rf "${tmp_dir}"
}

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

# finish_build DIR: moves `tmp_dir` into place as DIR (replacing a leftover,
# e.g. from an older, interrupted layout).
finish_build() {
  chmod 0755 "${tmp_dir}"
  if [[ -e "$1" ]]; then
    rm -rf "$1"
  fi
  mv -T "${tmp_dir}" "$1"
  trap - EXIT INT TERM
}

# Our own settings, not whatever the caller's environment says:
#  GOWORK=off        never pick up a go.work from an enclosing directory;
#  CGO_ENABLED=0     static binaries, as the upstream releases build them;
#  -mod=readonly     never rewrite go.mod/go.sum;
#  -buildvcs=false   the binaries must not depend on this repo's git state.
export GOWORK=off CGO_ENABLED=0
go_flags=(-mod=readonly -buildvcs=false -trimpath)
