# validator-webhook recipes. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Serve the webhook locally with a self-signed certificate; prints a curl line to try it.
run *args:
    cargo run -- {{ args }}

# Everything CI runs: lint, then every test.
test: lint unit

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Unit, snapshot, server and command-line tests.
unit:
    cargo test --workspace --locked

# Re-run the snapshot suite and review what changed (accept with `cargo insta review`).
snapshots:
    INSTA_UPDATE=new cargo test --test reviews --test http || true
    @ls snapshots/*.snap.new 2>/dev/null && echo "review them with: cargo insta review (cargo install cargo-insta)" || echo "no snapshot changed"

# Check manifests offline with the webhook's policy, e.g. `just check deploy.yaml`.
check *files:
    cargo run --quiet -- check {{ files }}
