# syntax=docker/dockerfile:1
#
# registry-auth container image.
#
#   docker build -t registry-auth .
#   docker run -d -p 5001:5001 -v registry-auth-data:/data registry-auth
#
# The image runs `registry-auth serve --config /config/config.yaml` as the unprivileged user
# 65532. The default config (deploy/config.yaml) listens on 0.0.0.0:5001 and creates its signing
# key and certificate in the /data volume on first start (`token.generate: true`); mount your own
# config over /config/config.yaml (and keys wherever it says). Several replicas must share one
# signing key: give it to them as files (a Kubernetes Secret, see charts/registry-auth), do not
# let each one generate its own.
#
# Multi-platform (what .github/workflows/release.yml does):
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry-auth .

# The toolchain the project is tested with (Cargo.toml's rust-version is the minimum). Debian
# bookworm, so the binary's glibc matches the runtime image's.
ARG RUST_VERSION=1.95
# The two base images, replaceable by copies from a mirror (`--build-arg RUNTIME_IMAGE=…`).
# tests/it/image.rs builds with local equivalents (scripts/tools/install-base-images.sh).
ARG BUILDER_IMAGE=rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# Where the binary comes from: `build` compiles it (the default); `prebuilt` takes one compiled
# outside for Debian bookworm's glibc, from the build context named `prebuilt-binary` (a folder
# with `registry-auth` and an empty `data/`):
#   podman build --build-arg BINARY_STAGE=prebuilt --build-context prebuilt-binary=DIR .
ARG BINARY_STAGE=build

# ---------------------------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
# Only what the build needs (.dockerignore keeps the rest out of the context).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The sql_auth/acl_sql schema, embedded in the binary (src/sql.rs).
COPY migrations ./migrations
COPY benches ./benches
# --locked: exactly the dependency versions of Cargo.lock. The cache mounts keep the crate
# downloads and the target directory between builds (BuildKit); the binary is copied out of the
# cached target directory because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/registry-auth /out/registry-auth \
    && mkdir -p /out/data

# The binary compiled elsewhere (BINARY_STAGE=prebuilt; unused otherwise, so never pulled).
FROM ${BUILDER_IMAGE} AS prebuilt
# `prebuilt-binary` is a build context (--build-context), not a stage.
# hadolint ignore=DL3022
COPY --from=prebuilt-binary registry-auth /out/registry-auth
# hadolint ignore=DL3022
COPY --from=prebuilt-binary data /out/data

FROM ${BINARY_STAGE} AS binary

# ---------------------------------------------------------------------------------------------
# Runtime: distroless cc (glibc, libgcc, CA certificates; no shell, no package manager) rather
# than debian:bookworm-slim: the binary needs nothing else (aws-lc is linked in statically), the
# image is about a third of the size, and there is next to nothing in it to exploit or patch. Its
# `nonroot` variant already has the user 65532. Debug with
# `docker run --entrypoint registry-auth IMAGE check-config /config/config.yaml`, or use the
# `:debug-nonroot` tag, which adds a busybox shell.
FROM ${RUNTIME_IMAGE}

COPY --from=binary /out/registry-auth /usr/local/bin/registry-auth
COPY deploy/config.yaml /config/config.yaml
# The volume's mount point must belong to the user: a new named volume copies this directory
# (and its owner) from the image.
COPY --from=binary --chown=65532:65532 /out/data /data

# Numeric, so Kubernetes' `runAsNonRoot: true` can check it without a passwd lookup.
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 5001

# `registry-auth healthcheck [URL]` GETs http://127.0.0.1:5001/healthz and exits 0 when the
# server answers (exec form: the image has no shell). Pass a URL if you change the port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["registry-auth", "healthcheck"]

ENTRYPOINT ["registry-auth"]
CMD ["serve", "--config", "/config/config.yaml"]
