# validator-webhook recipes. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

kind_cluster := "validator-webhook-e2e"
image := "validator-webhook:e2e"
musl_target := "x86_64-unknown-linux-musl"

# List the recipes.
default:
    @just --list --unsorted

# Serve the webhook locally with a self-signed certificate; prints a curl line to try it.
run *args:
    cargo run -- {{ args }}

# Everything CI runs: lint, unit and snapshot tests, the static binary, the e2e suite on a local control plane.
test: lint unit e2e-static e2e-local

# Formatting, clippy, and the lint of the Dockerfile, the workflow and the shell in recipes.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    hadolint Dockerfile
    actionlint
    shellcheck .ci/run e2e/control-plane/build.sh
    .ci/shellcheck-recipes
    just --dry-run e2e 2>/dev/null

# Unit, snapshot, server and command-line tests.
unit:
    cargo test --workspace --exclude e2e --locked

# Snapshot suites again, listing what changed (accept with `cargo insta review`).
snapshots:
    INSTA_UPDATE=new cargo test --test reviews --test http || true
    @ls snapshots/*.snap.new 2>/dev/null && echo "review them with: cargo insta review (cargo install cargo-insta)" || echo "no snapshot changed"

# Check manifests offline with the webhook's policy, e.g. `just check deploy.yaml`.
check *files:
    cargo run --quiet -- check {{ files }}

# Build the pinned etcd, kube-apiserver and kubectl once (cached by version); KUBEBUILDER_ASSETS skips it.
control-plane:
    @if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then echo "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"; else e2e/control-plane/build.sh >/dev/null; fi

# The e2e suite against a local kube-apiserver (root or passwordless sudo: the webhook runs in a network namespace).
e2e-local: control-plane
    cargo build -p validator-webhook --locked
    E2E_BACKEND=local cargo test -p e2e --locked --lib --test e2e --test pins

# A local control plane with the webhook installed from deploy/, until Ctrl-C; prints the KUBECONFIG to use.
cluster-up: control-plane
    cargo build -p validator-webhook -p e2e --bin validator-webhook --bin cluster-up --locked
    target/debug/cluster-up

# The image's runtime half without Docker: the static binary alone in an empty, read-only root.
e2e-static: (_require "musl-gcc")
    rustup target add {{ musl_target }}
    cargo build --release --locked -p validator-webhook --target {{ musl_target }}
    VALIDATOR_WEBHOOK_STATIC_BIN="{{ justfile_directory() }}/target/{{ musl_target }}/release/validator-webhook" cargo test -p e2e --locked --test static_binary

# Build the container image.
image: (_require "docker")
    docker build --tag {{ image }} --build-arg VERSION="$(cargo pkgid -p validator-webhook | sed 's/.*[@#]//')" .
    @docker image inspect {{ image }} --format 'built {{{{.RepoTags}}: {{{{.Size}} bytes'

# Smoke-test the built image with testcontainers: good and bad reviews over TLS.
e2e-image: _docker image
    cargo build -p validator-webhook --locked
    E2E_IMAGE={{ image }} cargo test -p e2e --locked --test image

# The e2e suite on kind: cluster, image, load, deploy/overlays/kind, rollout, cases, cleanup (KEEP_CLUSTER=1 keeps it).
e2e: (_require "docker" "kind" "kubectl") e2e-image
    #!/usr/bin/env bash
    set -euo pipefail
    step() { printf '\n==> %s\n' "$*"; }
    kubeconfig="{{ justfile_directory() }}/target/kind/kubeconfig"
    mkdir -p "$(dirname "$kubeconfig")"
    export KUBECONFIG="$kubeconfig"
    cleanup() {
        if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
            step "keeping kind cluster {{ kind_cluster }}; KUBECONFIG=$kubeconfig"
        else
            step "deleting kind cluster {{ kind_cluster }}"
            kind delete cluster --name {{ kind_cluster }}
        fi
    }
    trap cleanup EXIT
    step "creating kind cluster {{ kind_cluster }} from kind-config.yaml"
    kind create cluster --name {{ kind_cluster }} --config kind-config.yaml --kubeconfig "$kubeconfig" --wait 120s
    step "loading {{ image }} into the cluster"
    kind load docker-image {{ image }} --name {{ kind_cluster }}
    step "generating the serving certificate into deploy/overlays/certs/generated"
    cargo run --quiet --locked -p validator-webhook -- certs --out-dir deploy/overlays/certs/generated
    step "applying deploy/overlays/kind"
    kubectl apply -k deploy/overlays/kind
    step "waiting for the webhook to roll out"
    kubectl -n validator-webhook rollout status deployment/validator-webhook --timeout=180s
    step "running the e2e cases against kind"
    E2E_BACKEND=kind cargo test -p e2e --locked --test e2e

# Benchmark validator-webhook against its cost floor and its peers (~15 min); results in target/bench/.
bench *args: (_require "taskset" "oha" "go")
    cargo build --release --locked -p validator-webhook
    cargo build --release --locked -p validator-webhook-bench --no-default-features --bin bench --bin ceiling
    target/release/bench {{ args }}

# The benchmark's headline cell on validator-webhook, ceiling, controller-runtime and Flask, in under a minute.
bench-quick *args:
    just bench --quick {{ args }}

# What the webhook adds to dry-run creates through a local kube-apiserver, and what the API server measures of it.
bench-apiserver *args: control-plane
    cargo build --release --locked -p validator-webhook
    cargo build --release --locked -p validator-webhook-bench --bin bench-apiserver
    VALIDATOR_WEBHOOK_BIN=target/release/validator-webhook target/release/bench-apiserver {{ args }}

# Fails, saying how to install it, when a tool is missing.
[positional-arguments]
_require +tools:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=0
    for tool in "$@"; do
        command -v "$tool" >/dev/null && continue
        missing=1
        case "$tool" in
            docker) hint="install Docker: https://docs.docker.com/engine/install/" ;;
            kind) hint="go install sigs.k8s.io/kind@v0.32.0" ;;
            kubectl) hint="https://kubernetes.io/docs/tasks/tools/ (or use the one \`just control-plane\` builds)" ;;
            musl-gcc) hint="apt-get install musl-tools" ;;
            oha) hint="cargo install oha --locked --version 1.16.0" ;;
            taskset) hint="apt-get install util-linux" ;;
            go) hint="install Go 1.26: https://go.dev/doc/install" ;;
            *) hint="install it" ;;
        esac
        echo "missing $tool: $hint" >&2
    done
    exit "$missing"

# Fails in one line when no Docker engine answers.
_docker: (_require "docker")
    @docker info >/dev/null 2>&1 || { echo "no Docker engine answers (docker info failed): the image cannot be built or run here" >&2; exit 1; }
