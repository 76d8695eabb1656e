#!/usr/bin/env bash
# Makes a Docker engine answer on this machine, with every address in 198.19.0.0/16 and nothing
# able to leave through the uplink:
#
#   - where `docker info` fails: installs Debian's docker.io and iptables, writes
#     /etc/docker/daemon.json (bip 198.19.0.1/24, address pools in 198.19.16.0/20, container DNS
#     pointed at the bridge address, where nothing answers, instead of the host's resolver),
#     registers a runc wrapper as the default runtime where CAP_SYS_RESOURCE is missing from the
#     bounding set (privileged containers fail otherwise), starts dockerd and waits for it;
#   - everywhere: the egress guard `iptables -I DOCKER-USER -o <uplink> -j DROP` (once) and the
#     IPv4-only `kind` network 198.19.1.0/24.
#
# Usage: engine.sh              set up (idempotent); progress on stdout, one line per step
#        engine.sh --guard-count  print the packet counter of the egress guard (one number)
#
# Exit status: 0 when the engine answers with the guard and the kind network in place;
# 1 with one sentence on stderr otherwise.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
daemon_json=/etc/docker/daemon.json
dockerd_log=/var/log/validator-webhook-dockerd.log
wrapper=/usr/local/libexec/validator-webhook/runc-without-sys-resource
runtime_name=runc-without-sys-resource
kind_subnet=198.19.1.0/24
kind_gateway=198.19.1.1

step() { printf '==> %s\n' "$*"; }
die() { printf 'engine.sh: %s\n' "$*" >&2; exit 1; }

uplink() {
    local dev
    dev="$(ip -4 route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')"
    [[ -n "${dev}" ]] || die "there is no IPv4 default route, so there is no uplink to guard."
    printf '%s\n' "${dev}"
}

guard_count() {
    local dev count
    dev="$(uplink)"
    count="$(iptables -w -L DOCKER-USER -n -v -x 2>/dev/null |
        awk -v dev="${dev}" '$3 == "DROP" && $7 == dev { print $1; exit }')"
    [[ -n "${count}" ]] || die "the egress guard (iptables DOCKER-USER -o ${dev} -j DROP) is not installed: run e2e/kind/engine.sh."
    printf '%s\n' "${count}"
}

case "${1:-}" in
    "") ;;
    --guard-count) guard_count; exit 0 ;;
    -h | --help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument $1 (expected nothing or --guard-count)." ;;
esac

[[ "$(id -u)" -eq 0 ]] || die "run it as root: it installs packages, starts dockerd and edits iptables."

# CAP_SYS_RESOURCE is bit 24 of the bounding set.
sys_resource_missing() {
    local bnd
    bnd="$(awk '$1 == "CapBnd:" { print $2 }' /proc/self/status)"
    (((16#${bnd} >> 24 & 1) == 0))
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v jq >/dev/null || missing+=(jq)
    command -v ip >/dev/null || missing+=(iproute2)
    [[ ${#missing[@]} -eq 0 ]] && { step "docker.io, iptables and jq are installed"; return; }
    step "installing ${missing[*]} from Debian"
    apt-get update -qq || die "apt-get update failed, so ${missing[*]} cannot be installed."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed."
}

install_wrapper() {
    step "installing the runc wrapper that drops CAP_SYS_RESOURCE ($wrapper)"
    mkdir -p "$(dirname "${wrapper}")"
    cp "${script_dir}/runc-without-sys-resource" "${wrapper}.tmp"
    chmod 0755 "${wrapper}.tmp"
    mv -f "${wrapper}.tmp" "${wrapper}"
}

write_daemon_json() {
    local config
    config="$(jq -n --arg wrapper "${wrapper}" --arg name "${runtime_name}" --argjson wrap "$1" '
        {
            bip: "198.19.0.1/24",
            "default-address-pools": [{ base: "198.19.16.0/20", size: 24 }],
            dns: ["198.19.0.1"],
            ipv6: false
        }
        + if $wrap then { runtimes: { ($name): { path: $wrapper } }, "default-runtime": $name } else {} end')"
    mkdir -p "$(dirname "${daemon_json}")"
    if [[ -f "${daemon_json}" ]]; then
        # Keep whatever else the file says; ours wins on the keys above.
        config="$(jq -s '.[0] + .[1]' "${daemon_json}" <(printf '%s' "${config}"))" ||
            die "${daemon_json} is not valid JSON: fix or remove it."
        if [[ "$(jq -S . "${daemon_json}")" == "$(jq -S . <<<"${config}")" ]]; then
            step "${daemon_json} already has the 198.19.0.0/16 addresses"
            return
        fi
    fi
    step "writing ${daemon_json} (bip 198.19.0.1/24, pools 198.19.16.0/20, dns 198.19.0.1)"
    printf '%s\n' "${config}" >"${daemon_json}"
}

start_dockerd() {
    local i
    step "starting dockerd (log: ${dockerd_log})"
    setsid dockerd >>"${dockerd_log}" 2>&1 </dev/null &
    for ((i = 0; i < 120; i++)); do
        docker info >/dev/null 2>&1 && { step "dockerd answers (waited $((i * 5 / 10)).$((i * 5 % 10))s)"; return; }
        sleep 0.5
    done
    tail -n 20 "${dockerd_log}" >&2 || true
    die "dockerd did not answer within 60 s; its log is ${dockerd_log}."
}

if docker info >/dev/null 2>&1; then
    step "a Docker engine already answers: leaving its configuration alone"
else
    install_packages
    if sys_resource_missing; then
        install_wrapper
        write_daemon_json true
    else
        step "CAP_SYS_RESOURCE is in the bounding set: no runc wrapper needed"
        write_daemon_json false
    fi
    pgrep -x dockerd >/dev/null && die "dockerd is running but does not answer (docker info fails); stop it or read ${dockerd_log}."
    start_dockerd
fi

dev="$(uplink)"
command -v iptables >/dev/null || die "iptables is not installed, so the egress guard cannot be set."
iptables -w -L DOCKER-USER -n >/dev/null 2>&1 ||
    die "the DOCKER-USER chain does not exist (dockerd runs without iptables?), so the egress guard cannot be set."
if iptables -w -C DOCKER-USER -o "${dev}" -j DROP 2>/dev/null; then
    step "egress guard already in place (DOCKER-USER -o ${dev} -j DROP)"
else
    iptables -w -I DOCKER-USER -o "${dev}" -j DROP
    step "egress guard installed: iptables -I DOCKER-USER -o ${dev} -j DROP"
fi

if subnets="$(docker network inspect kind --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null)"; then
    [[ "${subnets% }" == "${kind_subnet}" ]] ||
        die "the docker network kind exists with subnets '${subnets% }', not ${kind_subnet} alone: remove it (docker network rm kind) and run again."
    step "docker network kind already on ${kind_subnet}"
else
    docker network create --driver bridge --subnet "${kind_subnet}" --gateway "${kind_gateway}" \
        -o com.docker.network.driver.mtu=1500 kind >/dev/null ||
        die "docker network create kind (${kind_subnet}) failed."
    step "created docker network kind (${kind_subnet}, gateway ${kind_gateway}, IPv4 only)"
fi
step "engine ready: guard counter $(guard_count)"
