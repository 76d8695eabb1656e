#!/usr/bin/env bash
# The kind node image for the pinned Kubernetes version, built with nothing pulled, and the kind
# binary, both cached under ${VALIDATOR_WEBHOOK_CACHE_DIR:-~/.cache/validator-webhook}/kind/.
#
# Versions come from the go.mod files they are built from (the single source of truth):
#   kind        e2e/kind/go.mod                     (binary, and the node's base files)
#   Kubernetes  e2e/control-plane/kubernetes/go.mod (kubeadm, kubelet, kubectl and the
#               control-plane images; kube-apiserver, kubectl and etcd come from
#               e2e/control-plane/build.sh, so they are built once for both backends)
#   etcd        e2e/control-plane/etcd/go.mod
#   containerd  e2e/kind/containerd/go.mod, crictl e2e/kind/crictl/go.mod,
#   CoreDNS     e2e/kind/coredns/go.mod (main.go there links only the plugins coredns.yaml uses)
# plus a Debian root file system from debootstrap (runc, CNI plugins, systemd, iptables) on the
# apt mirror this machine is configured with, and pause compiled from the kubernetes module.
#
# Usage: node-image.sh [--build]  make sure the built node image is in the engine (load the
#                                  cached tarball, or build and cache it); print its name
#        node-image.sh --ensure    print the node image to use: the pinned kindest/node of
#                                  e2e/kind/cluster.yaml when the engine has it or can pull it,
#                                  else the built one (as with --build)
#        node-image.sh --kind      build the pinned kind binary if needed; print its path
#        node-image.sh --name      print the built node image's name only (no work)
#
# stdout: exactly one line (image name or path); stderr: one line per step.
# Exit status 0 on success; 1 with one sentence on stderr otherwise.

# shellcheck disable=SC2016 # `bash -c '...' _ ARGS` scripts read their arguments as "$1", "$2".
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "${script_dir}/../.." && pwd)"
k8s_mod_dir="${repo_dir}/e2e/control-plane/kubernetes"
etcd_mod_dir="${repo_dir}/e2e/control-plane/etcd"
cluster_config="${script_dir}/cluster.yaml"

log() { printf '%s\n' "$*" >&2; }
step() { log "==> $*"; }
die() { log "node-image.sh: $*"; exit 1; }

mode=build
case "${1:-}" in
    "" | --build) ;;
    --ensure) mode=ensure ;;
    --kind) mode=kind ;;
    --name) mode=name ;;
    -h | --help) sed -n '2,/^$/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
    *) die "unknown argument $1 (expected --build, --ensure, --kind or --name)." ;;
esac

# module_version GOMOD MODULE: the version MODULE is required at in GOMOD.
module_version() {
    local v
    v="$(awk -v m="$2" '$1 == "require" && $2 != "(" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$1")"
    [[ -n "${v}" ]] || die "cannot find the version of $2 in $1."
    printf '%s\n' "${v}"
}

k8s_version="$(module_version "${k8s_mod_dir}/go.mod" k8s.io/kubernetes)"
etcd_version="$(module_version "${etcd_mod_dir}/go.mod" go.etcd.io/etcd/server/v3)"
kind_version="$(module_version "${script_dir}/go.mod" sigs.k8s.io/kind)"
containerd_version="$(module_version "${script_dir}/containerd/go.mod" github.com/containerd/containerd/v2)"
crictl_version="$(module_version "${script_dir}/crictl/go.mod" sigs.k8s.io/cri-tools)"
coredns_version="$(module_version "${script_dir}/coredns/go.mod" github.com/coredns/coredns)"

node_image="validator-webhook/kind-node:${k8s_version}"
cache_dir="${VALIDATOR_WEBHOOK_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/validator-webhook}/kind"
kind_bin="${cache_dir}/bin/kind-${kind_version}"
# The key names everything that decides the image's content; bump recipe_revision whenever this
# script changes what goes into the image, so every cache built by an older recipe is rebuilt.
recipe_revision=3
key="k8s-${k8s_version}-kind-${kind_version}-containerd-${containerd_version}-crictl-${crictl_version}-coredns-${coredns_version}-etcd-${etcd_version}-r${recipe_revision}"
cache_tarball="${cache_dir}/node-${key}.tar.zst"
key_label=io.github.msalinasc.validator-webhook.kind-node-key

export GOWORK=off CGO_ENABLED=0
go_flags=(-mod=readonly -buildvcs=false -trimpath)

if [[ "${mode}" == name ]]; then
    printf '%s\n' "${node_image}"
    exit 0
fi

# timed DESCRIPTION COMMAND...: one line for the step, its output to stderr only on failure.
timed() {
    local what="$1" start out
    shift
    start="${SECONDS}"
    out="$(mktemp)"
    if ! "$@" >"${out}" 2>&1; then
        tail -n 30 "${out}" >&2
        rm -f "${out}"
        die "${what} failed."
    fi
    rm -f "${out}"
    step "${what} ($((SECONDS - start))s)"
}

ensure_kind() {
    [[ -x "${kind_bin}" ]] && "${kind_bin}" version 2>/dev/null | grep -q "kind ${kind_version} " && return
    command -v go >/dev/null || die "go is not installed, so kind ${kind_version} cannot be built."
    mkdir -p "${cache_dir}/bin"
    # A name of its own, since `--kind` takes no lock and may run while a build makes kind too.
    timed "building kind ${kind_version}" \
        go -C "${script_dir}" build "${go_flags[@]}" -ldflags "-s -w" -o "${kind_bin}.tmp.$$" sigs.k8s.io/kind
    mv -f "${kind_bin}.tmp.$$" "${kind_bin}"
}

if [[ "${mode}" == kind ]]; then
    ensure_kind
    printf '%s\n' "${kind_bin}"
    exit 0
fi

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed): run e2e/kind/engine.sh first."
export DOCKER_BUILDKIT=0

if [[ "${mode}" == ensure ]]; then
    pinned="$(awk '$1 == "image:" { print $2; exit }' "${cluster_config}")"
    [[ -n "${pinned}" ]] || die "${cluster_config} names no node image."
    if docker image inspect "${pinned}" >/dev/null 2>&1; then
        step "the engine has the pinned node image ${pinned}"
        printf '%s\n' "${pinned}"
        exit 0
    fi
    if timeout 120 docker pull "${pinned}" >/dev/null 2>&1; then
        step "pulled the pinned node image ${pinned}"
        printf '%s\n' "${pinned}"
        exit 0
    fi
    step "the pinned node image ${pinned} cannot be pulled: using the node image built offline"
fi

image_key() { docker image inspect "$1" --format "{{ index .Config.Labels \"${key_label}\" }}" 2>/dev/null; }

if [[ "$(image_key "${node_image}")" == "${key}" ]]; then
    step "the engine has ${node_image} (${key})"
    printf '%s\n' "${node_image}"
    exit 0
fi

mkdir -p "${cache_dir}"
exec {lock_fd}>"${cache_dir}/node-image.lock"
if ! flock -n "${lock_fd}"; then
    step "waiting for another node-image.sh (${cache_dir}/node-image.lock)"
    flock "${lock_fd}"
fi

if [[ -f "${cache_tarball}" ]]; then
    command -v zstd >/dev/null || die "zstd is not installed, so ${cache_tarball} cannot be read (apt-get install zstd)."
    timed "loading ${node_image} from ${cache_tarball}" bash -c 'zstd -dc -- "$1" | docker load' _ "${cache_tarball}"
    [[ "$(image_key "${node_image}")" == "${key}" ]] || die "${cache_tarball} did not hold ${node_image} for ${key}: remove it and run again."
    printf '%s\n' "${node_image}"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Build. Every tool is checked first, so a missing one fails in a sentence before any work.
missing=()
command -v go >/dev/null || die "go is not installed (Go 1.26 builds the node's binaries)."
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v zstd >/dev/null || missing+=(zstd)
command -v jq >/dev/null || missing+=(jq)
if [[ ${#missing[@]} -gt 0 ]]; then
    step "installing ${missing[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed."
fi

build_start="${SECONDS}"
step "building ${node_image} (${key})"
work="$(mktemp -d "${cache_dir}/build.XXXXXX")"
container=""
built_images=()
cleanup() {
    [[ -n "${container}" ]] && docker rm -f -v "${container}" >/dev/null 2>&1
    [[ ${#built_images[@]} -gt 0 ]] && docker image rm "${built_images[@]}" >/dev/null 2>&1
    # An interrupted debootstrap leaves /proc and /sys mounted in its target: never rm through them.
    findmnt -rn -o TARGET | { grep "^${work}/" || true; } | sort -r | xargs -r umount -l
    rm -rf --one-file-system "${work}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bin="${work}/bin"
mkdir -p "${bin}"

# --- Debian root file system -----------------------------------------------------------------
# shellcheck source=/dev/null
suite="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
[[ -n "${suite}" ]] || die "/etc/os-release names no Debian codename, so there is no suite to debootstrap."
# The machine's own Debian archive for that suite, from its apt sources (one-line or deb822).
mirror="$({
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v s="${suite}" '$1 == "deb" { sub(/\[[^]]*\]/, ""); if ($3 == s) print $2 }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk -v s="${suite}" 'BEGIN { RS = "" } {
            uri = ""; ok = 0; n = split($0, line, "\n")
            for (i = 1; i <= n; i++) {
                m = split(line[i], w, /[ \t]+/)
                if (w[1] == "URIs:") uri = w[2]
                if (w[1] == "Suites:") for (j = 2; j <= m; j++) if (w[j] == s) ok = 1
            }
            if (ok && uri != "") print uri
        }'
} | sed -n 1p)"
[[ -n "${mirror}" ]] || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d: debootstrap needs one."
# jq: kind's createContainer hook (mount-product-files.sh) runs it in every container start.
packages=systemd,systemd-sysv,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,procps,runc,containernetworking-plugins,socat,jq
rootfs_tarball="${cache_dir}/debian-${suite}-$(printf '%s %s' "${packages}" "${mirror}" | sha256sum | cut -c1-12).tar"
if [[ ! -f "${rootfs_tarball}" ]]; then
    timed "debootstrap --variant=minbase ${suite} from ${mirror}" \
        debootstrap --variant=minbase --include="${packages}" "${suite}" "${work}/debian" "${mirror}"
    rm -rf "${work}/debian/var/cache/apt/archives/"*.deb "${work}/debian/var/lib/apt/lists/"*
    tar -C "${work}/debian" --numeric-owner -cf "${rootfs_tarball}.tmp" .
    mv -f "${rootfs_tarball}.tmp" "${rootfs_tarball}"
    find "${cache_dir}" -maxdepth 1 -name 'debian-*.tar' ! -name "$(basename "${rootfs_tarball}")" -delete
    rm -rf "${work}/debian"
else
    step "Debian ${suite} root file system from ${rootfs_tarball}"
fi

# --- containerd, crictl, CoreDNS, kind -----------------------------------------------------
timed "building containerd, containerd-shim-runc-v2, ctr ${containerd_version}" \
    go -C "${script_dir}/containerd" build "${go_flags[@]}" -tags "no_aufs no_zfs no_btrfs no_devmapper" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=${containerd_version}" -o "${bin}/" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
timed "building crictl ${crictl_version}" \
    go -C "${script_dir}/crictl" build "${go_flags[@]}" \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${crictl_version}" -o "${bin}/crictl" sigs.k8s.io/cri-tools/cmd/crictl
timed "building coredns ${coredns_version}" \
    go -C "${script_dir}/coredns" build "${go_flags[@]}" -ldflags "-s -w" -o "${bin}/coredns" .
ensure_kind

# --- Kubernetes ----------------------------------------------------------------------------------
asset_dir="$("${repo_dir}/e2e/control-plane/build.sh" 2>"${work}/control-plane.log")" || {
    tail -n 20 "${work}/control-plane.log" >&2
    die "e2e/control-plane/build.sh failed, so there is no kube-apiserver, kubectl or etcd for the node."
}
cp "${asset_dir}/kube-apiserver" "${asset_dir}/kubectl" "${asset_dir}/etcd" "${bin}/"
step "kube-apiserver, kubectl, etcd ${etcd_version} from ${asset_dir}"

# The same settings as e2e/control-plane/build.sh (upstream's hack/lib/version.sh).
k8s_major="${k8s_version#v}"
k8s_minor="${k8s_major#*.}"
k8s_major="${k8s_major%%.*}"
k8s_minor="${k8s_minor%%.*}"
k8s_build_date="$(go -C "${k8s_mod_dir}" list -mod=readonly -m \
    -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null)" || k8s_build_date=""
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X ${pkg}.gitVersion=${k8s_version} -X ${pkg}.gitMajor=${k8s_major} -X ${pkg}.gitMinor=${k8s_minor}"
    k8s_ldflags+=" -X ${pkg}.gitCommit=0000000000000000000000000000000000000000 -X ${pkg}.gitTreeState=clean"
    k8s_ldflags+=" -X ${pkg}.buildDate=${k8s_build_date:-1970-01-01T00:00:00Z}"
done
timed "building kubeadm, kubelet, kube-controller-manager, kube-scheduler, kube-proxy ${k8s_version}" \
    go -C "${k8s_mod_dir}" build "${go_flags[@]}" -tags selinux,notest,grpcnotrace -ldflags "${k8s_ldflags}" -o "${bin}/" \
    k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy

# The images kubeadm will ask for, by the exact names it prints.
mapfile -t wanted < <("${bin}/kubeadm" config images list --kubernetes-version "${k8s_version}" 2>/dev/null)
[[ ${#wanted[@]} -gt 0 ]] || die "kubeadm config images list --kubernetes-version ${k8s_version} printed nothing."
image_named() {
    local i
    for i in "${wanted[@]}"; do [[ "${i}" == */"$1":* ]] && { printf '%s\n' "${i}"; return; }; done
    die "kubeadm lists no $1 image (it lists: ${wanted[*]})."
}
coredns_image="$(image_named coredns)"
etcd_image="$(image_named etcd)"
pause_image="$(image_named pause)"
[[ "${coredns_image##*:}" == "${coredns_version}" ]] ||
    die "kubeadm ${k8s_version} wants ${coredns_image} but e2e/kind/coredns/go.mod pins ${coredns_version}: align them."
[[ "${etcd_image##*:}" == "${etcd_version#v}-"* ]] ||
    die "kubeadm ${k8s_version} wants ${etcd_image} but e2e/control-plane/etcd/go.mod pins ${etcd_version}: align them."

pause_version="${pause_image##*:}"
k8s_src="$(go -C "${k8s_mod_dir}" list -mod=readonly -m -f '{{.Dir}}' k8s.io/kubernetes)"
[[ -f "${k8s_src}/build/pause/linux/pause.c" ]] || die "the kubernetes module in ${k8s_src} has no build/pause/linux/pause.c."
timed "compiling pause ${pause_version} with musl-gcc -static" \
    musl-gcc -Os -Wall -Werror -static -DVERSION="v${pause_version}-0" -o "${bin}/pause" "${k8s_src}/build/pause/linux/pause.c"

kind_src="$(go -C "${script_dir}" list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kind)"
files="${kind_src}/images/base/files"
[[ -d "${files}" ]] || die "the kind module in ${kind_src} has no images/base/files."

# --- component images --------------------------------------------------------------------------
tag="vw-kind-build-$$"
debian_image="validator-webhook/kind-debian:${tag}"
timed "importing the Debian root file system as ${debian_image}" docker import - "${debian_image}" <"${rootfs_tarball}"
built_images+=("${debian_image}")

# scratch_image NAME BINARY PATH_IN_IMAGE: an image holding one static binary as its entrypoint.
scratch_image() {
    local name="$1" binary="$2" path="$3" dir="${work}/image-$RANDOM"
    mkdir -p "${dir}$(dirname "${path}")"
    install -m 0755 "${bin}/${binary}" "${dir}${path}"
    tar -C "${dir}" --numeric-owner --owner=0 --group=0 -c . |
        docker import --change "ENTRYPOINT [\"${path}\"]" --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "${name}" >/dev/null ||
        die "docker import of ${name} failed."
    rm -rf "${dir}"
    built_images+=("${name}")
}
component_images=()
for image in "${wanted[@]}"; do
    name="${image##*/}"
    name="${name%%:*}"
    case "${name}" in
        kube-apiserver | kube-controller-manager | kube-scheduler | etcd)
            scratch_image "${image}" "${name}" "/usr/local/bin/${name}" ;;
        coredns) scratch_image "${image}" coredns /coredns ;;
        pause) scratch_image "${image}" pause /pause ;;
        kube-proxy)
            # kube-proxy programs iptables/nftables: it needs those tools, so Debian underneath.
            mkdir -p "${work}/kube-proxy"
            install -m 0755 "${bin}/kube-proxy" "${work}/kube-proxy/kube-proxy"
            printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\n' "${debian_image}" >"${work}/kube-proxy/Dockerfile"
            timed "building ${image} on Debian" docker build -t "${image}" "${work}/kube-proxy"
            built_images+=("${image}")
            ;;
        *) die "kubeadm lists ${image}, which this script does not know how to build." ;;
    esac
    component_images+=("${image}")
done
step "component images: ${component_images[*]}"
timed "saving the component images" docker save -o "${work}/images.tar" "${component_images[@]}"

# --- the node's root file system ------------------------------------------------------------
root="${work}/root"
mkdir -p "${root}"
tar -C "${root}" --numeric-owner -xf "${rootfs_tarball}"
# kind's base files, with the modes kind's own base image gives them.
install -d -m 0755 "${root}/kind" "${root}/kind/bin" "${root}/LICENSES" "${root}/etc/kubernetes/manifests" \
    "${root}/etc/systemd/system/kubelet.service.d" "${root}/opt/cni/bin" "${root}/etc/cni/net.d"
install -m 0755 "${files}/usr/local/bin/"* "${root}/usr/local/bin/"
install -m 0644 "${files}/kind/README.txt" "${root}/kind/"
install -m 0755 "${files}/kind/bin/"* "${root}/kind/bin/"
install -m 0644 "${files}/LICENSES/"* "${root}/LICENSES/"
install -m 0644 "${files}/etc/crictl.yaml" "${root}/etc/"
install -m 0644 "${files}/etc/default/"* "${root}/etc/default/"
install -m 0644 "${files}/etc/sysctl.d/"* "${root}/etc/sysctl.d/"
find "${files}/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 -t "${root}/etc/systemd/system/" {} +
install -m 0644 "${files}/etc/systemd/system/kubelet.service.d/"* "${root}/etc/systemd/system/kubelet.service.d/"
install -d -m 0755 "${root}/etc/containerd"
# This machine withholds CAP_SYS_RESOURCE: lowering a sandbox's oom_score_adj needs it, so
# containerd must not try; and the sandbox image is the pause image built here.
sed -e 's/^\( *restrict_oom_score_adj = \).*/\1true/' \
    -e "s|^\( *sandbox_image = \).*|\1\"${pause_image}\"|" \
    "${files}/etc/containerd/config.toml" >"${root}/etc/containerd/config.toml"
if ! grep -q '^ *restrict_oom_score_adj = true' "${root}/etc/containerd/config.toml" ||
    ! grep -q "^ *sandbox_image = \"${pause_image}\"" "${root}/etc/containerd/config.toml"; then
    die "kind ${kind_version}'s containerd config.toml no longer has restrict_oom_score_adj and sandbox_image lines to set."
fi
install -m 0755 "${bin}/containerd" "${bin}/containerd-shim-runc-v2" "${bin}/ctr" "${bin}/crictl" "${root}/usr/local/bin/"
install -m 0755 "${bin}/kubeadm" "${bin}/kubelet" "${bin}/kubectl" "${root}/usr/bin/"
for plugin in host-local loopback ptp portmap; do
    [[ -x "${root}/usr/lib/cni/${plugin}" ]] || die "Debian's containernetworking-plugins has no ${plugin} in /usr/lib/cni."
    ln -sf "/usr/lib/cni/${plugin}" "${root}/opt/cni/bin/${plugin}"
done
# One node, one pod range (the first /24 of the cluster's podSubnet); no CNI image needed.
cat >"${root}/etc/cni/net.d/10-validator-webhook.conflist" <<'CNI'
{
  "cniVersion": "1.0.0",
  "name": "validator-webhook",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "198.19.128.0/24" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      },
      "mtu": 1500
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
CNI
"${bin}/ctr" oci spec |
    jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"} | del(.process.rlimits)' \
        >"${root}/etc/containerd/cri-base.json"
printf '%s' "${k8s_version}" >"${root}/kind/version"
# The unit clean-up of kind's base image, so systemd in a container starts only what a node needs.
find "${root}/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "${root}/lib/systemd/system/multi-user.target.wants/"* "${root}/etc/systemd/system/"*.wants/* \
    "${root}/lib/systemd/system/local-fs.target.wants/"* "${root}/lib/systemd/system/sockets.target.wants/"*udev* \
    "${root}/lib/systemd/system/sockets.target.wants/"*initctl* "${root}/lib/systemd/system/basic.target.wants/"*
grep -q '^ReadKMsg=no' "${root}/etc/systemd/journald.conf" || echo "ReadKMsg=no" >>"${root}/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "${root}/sbin/init"
timed "enabling kubelet, containerd, undo-mount-hacks; masking systemd-binfmt" bash -c '
    chroot "$1" systemctl enable kubelet.service containerd.service undo-mount-hacks.service &&
    chroot "$1" systemctl mask systemd-binfmt.service' _ "${root}"
rm -rf "${root}/var/cache/apt/archives/"*.deb "${root}/var/lib/apt/lists/"*

base_image="validator-webhook/kind-base:${tag}"
timed "importing the node's root file system as ${base_image}" bash -c '
    tar -C "$1" --numeric-owner -c . | docker import \
        --change "ENV container=docker" \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENTRYPOINT [\"/usr/local/bin/entrypoint\", \"/sbin/init\"]" - "$2"' _ "${root}" "${base_image}"
built_images+=("${base_image}")
rm -rf "${root}"

# --- the component images into the node's containerd (as kind's node image builder does) -----
container="vw-kind-node-build-$$"
docker run -d --name "${container}" --privileged --security-opt seccomp=unconfined \
    --entrypoint sleep "${base_image}" infinity >/dev/null ||
    die "the build container ${container} did not start (docker run --privileged ${base_image})."
docker cp "${work}/images.tar" "${container}:/kind/images.tar" >/dev/null
docker exec "${container}" bash -c 'nohup containerd >/dev/null 2>&1 &'
timed "waiting for containerd in the build container" docker exec "${container}" bash -c '
    for _ in $(seq 1 120); do [ -S /run/containerd/containerd.sock ] && ctr info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1'
timed "importing the component images into the node's containerd (pinned)" docker exec "${container}" \
    ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests /kind/images.tar
imported="$(docker exec "${container}" ctr --namespace=k8s.io images list -q 2>/dev/null)"
for image in "${component_images[@]}"; do
    grep -qxF "${image}" <<<"${imported}" || die "${image} is not in the node's containerd after the import."
done
# The container's PID 1 (sleep) reaps nothing, so a stopped containerd stays a zombie: wait for that.
docker exec "${container}" bash -c 'pkill -x containerd
    while ps -C containerd -o stat= | grep -qv Z; do sleep 0.2; done
    rm -f /kind/images.tar'
committed="validator-webhook/kind-committed:${tag}"
timed "committing the build container" docker commit \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "${container}" "${committed}"
built_images+=("${committed}")
docker rm -f -v "${container}" >/dev/null
container=""
# systemd stops on SIGRTMIN+3 (SIGTERM makes it re-execute); import and commit cannot set that.
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\nLABEL %s=%s\n' "${committed}" "${key_label}" "${key}" >"${work}/Dockerfile.node"
mkdir -p "${work}/empty"
timed "tagging ${node_image}" docker build -t "${node_image}" -f "${work}/Dockerfile.node" "${work}/empty"
timed "saving ${node_image} to ${cache_tarball}" bash -c '
    docker save "$1" | zstd -q -T0 -3 -o "$2.tmp" && mv -f "$2.tmp" "$2"' _ "${node_image}" "${cache_tarball}"
# Older tarballs of this image are stale now.
find "${cache_dir}" -maxdepth 1 -name 'node-*.tar.zst' ! -name "$(basename "${cache_tarball}")" -delete
step "built ${node_image} in $((SECONDS - build_start))s: $(docker image inspect "${node_image}" --format '{{.Size}}') bytes, cache $(stat -c %s "${cache_tarball}") bytes"
printf '%s\n' "${node_image}"
