# validator-webhook recipes. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Serve the webhook locally with a self-signed certificate; prints a curl line to try it.
run *args:
    cargo run -- {{ args }}

# Everything CI runs: lint, the unit and snapshot suites, then the e2e suite on the local control plane.
test: lint unit e2e-local

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Unit, snapshot, server and command-line tests.
unit:
    cargo test --workspace --exclude e2e --locked

# Build the pinned etcd, kube-apiserver and kubectl once (cached by version); KUBEBUILDER_ASSETS skips it.
control-plane:
    @if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then echo "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"; else e2e/control-plane/build.sh >/dev/null; fi

# The e2e suite against a local kube-apiserver (needs root: the webhook runs in a network namespace).
e2e-local: control-plane
    cargo build -p validator-webhook --locked
    E2E_BACKEND=local cargo test -p e2e --locked --test e2e

# A local control plane with the webhook installed from deploy/, until Ctrl-C; prints the KUBECONFIG to use.
cluster-up: control-plane
    cargo build -p validator-webhook -p e2e --bin validator-webhook --bin cluster-up --locked
    target/debug/cluster-up

# Re-run the snapshot suite and review what changed (accept with `cargo insta review`).
snapshots:
    INSTA_UPDATE=new cargo test --test reviews --test http || true
    @ls snapshots/*.snap.new 2>/dev/null && echo "review them with: cargo insta review (cargo install cargo-insta)" || echo "no snapshot changed"

# Check manifests offline with the webhook's policy, e.g. `just check deploy.yaml`.
check *files:
    cargo run --quiet -- check {{ files }}
