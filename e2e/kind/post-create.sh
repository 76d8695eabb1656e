#!/usr/bin/env bash
# After `kind create cluster`: waits until kube-proxy has programmed the node's Service rules, then
# installs the cluster's DNS (e2e/kind/coredns.yaml: cluster.local only, no upstream) and waits
# for it. Before those rules exist a pod's packet to a ClusterIP is routed out of the node like
# any other, so nothing may start in a pod until then (the egress guard counted exactly that).
#
# Usage: post-create.sh CLUSTER_NAME   (KUBECONFIG must point at the cluster)
# stdout: one line per step. Exit status 0 when CoreDNS is rolled out; 1 with one sentence.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
step() { printf '==> %s\n' "$*"; }
die() { printf 'post-create.sh: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "expected one argument, the kind cluster's name."
[[ -n "${KUBECONFIG:-}" ]] || die "KUBECONFIG is not set: point it at the kind cluster."
node="$1-control-plane"
docker inspect "${node}" >/dev/null 2>&1 || die "there is no node container ${node}: is $1 a kind cluster?"

start="${SECONDS}"
until docker exec "${node}" iptables-save -t nat 2>/dev/null | grep -q 'default/kubernetes:https'; do
    ((SECONDS - start < 300)) || die "kube-proxy wrote no rule for the kubernetes Service in ${node} within 300 s."
    sleep 1
done
step "kube-proxy programs the Service rules in ${node} ($((SECONDS - start))s)"

# A packet for a pod that is gone (the API server still dialling a webhook pod just deleted, a
# reply to a pod torn down) would follow the node's default route out of the machine. The pod
# range is unreachable but through the per-pod routes the CNI plugin adds, so such a packet
# ends in the node with "no route to host".
pod_subnet="$(awk '$1 == "podSubnet:" { print $2; exit }' "${script_dir}/cluster.yaml")"
[[ -n "${pod_subnet}" ]] || die "${script_dir}/cluster.yaml names no podSubnet."
docker exec "${node}" ip route replace unreachable "${pod_subnet}" ||
    die "cannot make ${pod_subnet} unreachable in ${node} outside its pods' own routes."
step "pod range ${pod_subnet} reachable only through its pods' routes in ${node}"

# A packet for a Service address that kube-proxy did not translate (the API server closing its
# connection to the webhook while the cluster is torn down) would also take the default route
# out. Translated packets carry a pod address by the time the filter table sees them, so this
# drops only the untranslated ones, in the node. The rule is appended after kube-proxy's own
# jumps: a new connection to a Service without endpoints must still meet kube-proxy's REJECT
# (a caller fails at once) rather than this silent drop (a caller would wait for its timeout).
service_subnet="$(awk '$1 == "serviceSubnet:" { print $2; exit }' "${script_dir}/cluster.yaml")"
[[ -n "${service_subnet}" ]] || die "${script_dir}/cluster.yaml names no serviceSubnet."
for chain in OUTPUT FORWARD; do
    docker exec "${node}" iptables -w -C "${chain}" -d "${service_subnet}" -o eth0 -j DROP 2>/dev/null ||
        docker exec "${node}" iptables -w -A "${chain}" -d "${service_subnet}" -o eth0 -j DROP ||
        die "cannot keep untranslated packets for ${service_subnet} inside ${node}."
done
step "untranslated packets for the service range ${service_subnet} stay in ${node}"

kubectl apply -f "${script_dir}/coredns.yaml" >/dev/null || die "kubectl apply -f ${script_dir}/coredns.yaml failed."
kubectl -n kube-system rollout status deployment/coredns --timeout=300s >/dev/null ||
    die "CoreDNS did not roll out within 300 s (kubectl -n kube-system get pods shows why)."
step "CoreDNS (cluster.local only, no upstream) rolled out ($((SECONDS - start))s)"
