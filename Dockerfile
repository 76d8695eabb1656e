# validator-webhook as a static binary on an empty image: no shell, no libc, nothing else to
# patch. This file builds it from source and needs BuildKit and a registry to pull `rust` from:
#   docker build -t validator-webhook:0.1.0 --build-arg VERSION=0.1.0 .
# Offline, or to reuse the host's cargo cache, `just image` builds the same image from the
# static binary cargo builds on the host (Dockerfile.binary), with nothing pulled.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG TARGETARCH
# ring compiles a little C: musl-gcc links it statically.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "${TARGETARCH:-amd64}" in \
        amd64) target=x86_64-unknown-linux-musl ;; \
        arm64) target=aarch64-unknown-linux-musl ;; \
        *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && rustup target add "${target}" \
    && cargo build --release --locked -p validator-webhook --target "${target}" \
    && cp "target/${target}/release/validator-webhook" /validator-webhook

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="validator-webhook" \
      org.opencontainers.image.description="Kubernetes validating admission webhook that admits only approved container image names" \
      org.opencontainers.image.source="https://github.com/msalinasc/validator-webhook" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /validator-webhook /validator-webhook
# The numeric user the Deployment's securityContext names; no /etc/passwd is needed.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/validator-webhook"]
CMD ["serve"]
