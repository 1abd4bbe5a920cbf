# CI's stand-in for postgres:17-alpine (docker-compose.yml), which no registry here can
# serve: Debian bookworm's PostgreSQL 15 on the local Debian base, with an entry point that
# honours the official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on a fresh
# data directory. PGPORT picks the port (the CI override runs it on the host's network).
ARG BASE_IMAGE=scriptmesh-ci/debian:bookworm
FROM ${BASE_IMAGE}
# The user first, with the official image's ids, so that USER can be numeric.
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && pg_dropcluster 15 main \
    && install -d -o postgres -g postgres -m 0755 /var/lib/postgresql \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /run/postgresql
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
USER 999:999
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
