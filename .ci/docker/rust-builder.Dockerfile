# CI's stand-in for rust:1.95-slim-bookworm, which no registry here can serve: the local
# Debian base (see .ci/docker-step) with a C toolchain for linking and for the crates that
# compile C (bundled SQLite, ring), plus the machine's own Rust toolchain copied in from the
# build context (rust/: its bin, lib and libexec), and the certificate authorities this
# machine adds to Debian's (ca-certificates/, possibly empty), so that cargo reaches
# crates.io from inside the build as it does outside. Same CARGO_HOME as the official image,
# so the Dockerfiles' cache mount on /usr/local/cargo/registry means the same thing.
ARG BASE_IMAGE=scriptmesh-ci/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rust /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN install -d /usr/local/cargo/bin && cargo --version && rustc --version
