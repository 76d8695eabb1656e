# validator-webhook recipes. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

image := env("E2E_WEBHOOK_IMAGE", "validator-webhook:e2e")
musl_target := "x86_64-unknown-linux-musl"

# List the recipes.
default:
    @just --list --unsorted

# Serve the webhook locally with a self-signed certificate; prints a curl line to try it.
run *args:
    cargo run -- {{ args }}

# Everything CI runs: lint, unit and snapshot tests, 30 s of fuzzing per target, the static binary, the e2e suite on a local control plane, the VAP parity suite, the chart, then the image, its smoke test and the e2e suite on kind.
test: lint unit fuzz-quick e2e-static e2e-local e2e-parity chart image e2e-image e2e

# Formatting, clippy, and the lint of the Dockerfile, the workflow and the shell in recipes.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    hadolint Dockerfile Dockerfile.binary
    actionlint
    shellcheck .ci/run e2e/cached-build.sh e2e/control-plane/build.sh e2e/kind/engine.sh e2e/kind/node-image.sh e2e/kind/post-create.sh e2e/kind/runc-without-sys-resource e2e/helm/build.sh
    .ci/shellcheck-recipes
    just --dry-run e2e 2>/dev/null

# Unit, snapshot, server and command-line tests.
unit:
    cargo test --workspace --exclude e2e --locked
    cargo test -p e2e --locked --lib --test pins

# Snapshot suites again, listing what changed (accept with `cargo insta review`).
snapshots:
    INSTA_UPDATE=new cargo test --test reviews --test http || true
    @ls snapshots/*.snap.new 2>/dev/null && echo "review them with: cargo insta review (cargo install cargo-insta)" || echo "no snapshot changed"

# Fuzz the review decoder and the image reference parser for 30 s each; a crash fails and its input is kept in fuzz/artifacts/.
fuzz-quick: (fuzz "30")

# Fuzz each target for `seconds` (default 10 min), from the fixtures and the corpus of earlier runs in fuzz/corpus/.
fuzz seconds="600": _cargo-fuzz
    #!/usr/bin/env bash
    set -euo pipefail
    # libFuzzer's instrumentation without a sanitizer, on the stable toolchain.
    export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
    cd fuzz
    declare -A seeds=(
        [review]="../tests/fixtures/reviews ../examples ../snapshots"
        [image_reference]="seeds/image_reference"
    )
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    if ! cargo fuzz build --sanitizer none >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "the fuzz targets in fuzz/fuzz_targets/ do not build against the webhook's current API" >&2
        exit 1
    fi
    for target in review image_reference; do
        mkdir -p "corpus/$target" artifacts
        # shellcheck disable=SC2086 # the seed directories are separate words
        if ! cargo fuzz run --sanitizer none "$target" "corpus/$target" ${seeds[$target]} -- \
            -max_total_time={{ seconds }} -print_final_stats=1 -close_fd_mask=3 \
            -artifact_prefix="artifacts/$target-" >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            echo "fuzz target $target failed: the input is in fuzz/artifacts/; make it a regression test" >&2
            exit 1
        fi
        printf '%s: %s\n' "$target" "$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" | tr '\n' ' ')"
    done

# cargo-fuzz, installed from crates.io when missing.
_cargo-fuzz:
    @command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

# Check manifests offline with the webhook's policy, e.g. `just check deploy.yaml`.
check *files:
    cargo run --quiet -- check {{ files }}

# Build the pinned etcd, kube-apiserver and kubectl once (cached by version); KUBEBUILDER_ASSETS skips it.
control-plane:
    @if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then echo "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"; else e2e/control-plane/build.sh >/dev/null; fi

# Build the pinned Helm once (cached by version, like the control plane).
helm:
    @e2e/helm/build.sh >/dev/null

# The Helm chart: lint, renders with every feature off and on, server-side dry runs, the same objects as deploy/, upgrades, the values table.
chart: control-plane helm
    cargo build -p validator-webhook --locked
    cargo test -p e2e --locked --test chart

# The e2e suite against a local kube-apiserver (root or passwordless sudo: the webhook runs in a network namespace).
e2e-local: control-plane
    cargo build -p validator-webhook --locked
    E2E_BACKEND=local cargo test -p e2e --locked --test e2e

# The policy, the webhook and `validator-webhook vap` decide 2000 generated cases alike on a local kube-apiserver (PARITY_SEED reproduces a run, PARITY_CASES sets the count).
e2e-parity: control-plane
    cargo build -p validator-webhook --locked
    E2E_BACKEND=local cargo test -p e2e --locked --test parity

# A local control plane with the webhook installed from deploy/, until Ctrl-C; prints the KUBECONFIG to use.
cluster-up: control-plane
    cargo build -p validator-webhook -p e2e --bin validator-webhook --bin cluster-up --locked
    target/debug/cluster-up

# Load through the API server on the local control plane for SOAK_SECONDS (default 120) while the certificate is renewed, the CA rotated and the webhook restarted; fails on any lost request (root).
soak: control-plane
    cargo build -p validator-webhook -p e2e --bin validator-webhook --bin soak --locked
    target/debug/soak

# The image's runtime half without Docker: the static binary alone in an empty, read-only root.
e2e-static: (_require "musl-gcc")
    rustup target add {{ musl_target }}
    cargo build --release --locked -p validator-webhook --target {{ musl_target }}
    VALIDATOR_WEBHOOK_STATIC_BIN="{{ justfile_directory() }}/target/{{ musl_target }}/release/validator-webhook" cargo test -p e2e --locked --test static_binary

# A Docker engine with every address in 198.19.0.0/16, the egress guard and the kind network (root; idempotent).
engine:
    e2e/kind/engine.sh

# Build the container image from the static musl binary built here (nothing pulled); prints its size, under 15 MB.
image: (_require "docker" "musl-gcc") _docker
    #!/usr/bin/env bash
    set -euo pipefail
    rustup target add {{ musl_target }} >/dev/null 2>&1
    cargo build --release --locked -p validator-webhook --target {{ musl_target }}
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/context"
    cp target/{{ musl_target }}/release/validator-webhook "$work/context/"
    version="$(cargo pkgid -p validator-webhook | sed 's/.*[@#]//')"
    if ! DOCKER_BUILDKIT=0 docker build --tag {{ image }} --file Dockerfile.binary --build-arg VERSION="$version" "$work/context" >"$work/build.log" 2>&1; then
        cat "$work/build.log" >&2
        echo "docker build of {{ image }} from Dockerfile.binary failed" >&2
        exit 1
    fi
    size="$(docker image inspect {{ image }} --format '{{{{.Size}}')"
    echo "built {{ image }}: $size bytes ($((size / 1000)) kB)"
    [ "$size" -lt 15000000 ] || { echo "{{ image }} is $size bytes, over the 15 MB budget" >&2; exit 1; }

# Build the container image from source in Docker (BuildKit, and a registry to pull rust from).
image-from-source: _docker
    docker build --tag {{ image }} --build-arg VERSION="$(cargo pkgid -p validator-webhook | sed 's/.*[@#]//')" .
    @docker image inspect {{ image }} --format 'built {{{{.RepoTags}}: {{{{.Size}} bytes'

# The kind node image for the pinned Kubernetes, built with nothing pulled and cached (~15 min cold, seconds warm).
kind-node-image: _docker
    e2e/kind/node-image.sh --build

# Smoke-test the built image with testcontainers: good and bad reviews over TLS.
e2e-image: _docker image
    cargo build -p validator-webhook --locked
    E2E_IMAGE={{ image }} cargo test -p e2e --locked --test image

# The e2e suite on kind (the harness creates the cluster, loads the image, applies deploy/overlays/kind, runs the cases and deletes it; KEEP_CLUSTER=1 keeps it).
e2e: image control-plane
    E2E_BACKEND=kind VALIDATOR_WEBHOOK_BIN="{{ justfile_directory() }}/target/{{ musl_target }}/release/validator-webhook" cargo test -p e2e --locked --test e2e

# Benchmark validator-webhook against its cost floor and its peers (~15 min); results in target/bench/.
bench *args: (_require "taskset" "oha" "go")
    cargo build --release --locked -p validator-webhook
    cargo build --release --locked -p validator-webhook-bench --no-default-features --bin bench --bin ceiling
    target/release/bench {{ args }}

# The benchmark's headline cell on validator-webhook, ceiling, controller-runtime and Flask, in under a minute.
bench-quick *args:
    just bench --quick {{ args }}

# What this webhook, its ceiling, controller-runtime and its VAP twin add to dry-run creates through a local kube-apiserver, alternating in rounds.
bench-apiserver *args: control-plane (_require "go")
    cargo build --release --locked -p validator-webhook
    cargo build --release --locked -p validator-webhook-bench --bin bench-apiserver --bin ceiling
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
