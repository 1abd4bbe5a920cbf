# CI's stand-in for prom/prometheus (docker-compose.yml), which no registry here can serve:
# Debian bookworm's Prometheus on the local Debian base, laid out like the official image
# (config in /etc/prometheus, data in /prometheus, the binary as the entry point).
ARG BASE_IMAGE=scriptmesh-ci/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o nobody -g nogroup -m 0755 /prometheus
# nobody, as in the official image.
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
