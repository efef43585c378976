# syntax=docker/dockerfile:1
# readiness-exporter container image.
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t readiness-exporter .
#   docker build --target restore-drill -t readiness-exporter:drill .   # + drill tools
#   docker run --rm -p 9847:9847 readiness-exporter
# Every stage runs the commands in docker/install.sh; tests/deploy/test_image_recipe.py
# runs the same script outside a container and starts the exporter it installed.
# Dependencies come from requirements/runtime.lock (pinned, hash-checked).

# The base image, by tag and digest (python:3.11-slim-bookworm, about 125 MB unpacked; the
# runtime venv is kept under 70 MB so the image stays within 200 MB, docs/deployment.md).
# The digest was NOT verified where it was written (no registry access): `make image-digest`
# (docker/check-digest --verify) checks it against the registry, `docker/check-digest
# --write` replaces it with the tag's current digest. A wrong digest fails the pull; it
# cannot silently give another image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG PYTHON_DIGEST=sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# ---------------------------------------------------------------- builder: wheels, venv
FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@}${PYTHON_DIGEST} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# binutils for `strip` (install.sh slim); the builder is never shipped.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY --chmod=0755 docker/install.sh /usr/local/bin/install-readiness-exporter
COPY pyproject.toml README.md /src/
COPY requirements/runtime.lock /src/requirements/
COPY exporter /src/exporter
RUN install-readiness-exporter wheels /src /wheels \
    && install-readiness-exporter venv /wheels /opt/readiness-exporter \
    && install-readiness-exporter slim /opt/readiness-exporter

# ---------------------------------------------------- runtime: the venv; no compilers, no pip
FROM ${PYTHON_IMAGE}${PYTHON_DIGEST:+@}${PYTHON_DIGEST} AS runtime
ARG REVISION=unknown
LABEL org.opencontainers.image.title="readiness-exporter" \
      org.opencontainers.image.description="A production deployment checklist as live Prometheus metrics" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    READINESS_EXPORTER_REVISION=${REVISION} \
    PATH=/opt/readiness-exporter/bin:$PATH
# The slimmed venv only: same base image, so its interpreter link resolves here.
COPY --from=builder /opt/readiness-exporter /opt/readiness-exporter
RUN groupadd --system --gid 10001 readiness \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/readiness-exporter --shell /usr/sbin/nologin readiness \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/readiness-exporter /etc/readiness
# The state directory (settings.state_dir, default "state") is relative to this one.
WORKDIR /var/lib/readiness-exporter
# Numeric, so Kubernetes can enforce runAsNonRoot without looking the name up.
USER 10001:10001
EXPOSE 9847
# No HEALTHCHECK: the listen address, TLS and basic auth are set at run time, so a baked-in
# probe would be wrong for some of them; Kubernetes uses /healthz and /readyz (helm/).
ENTRYPOINT ["readiness-exporter"]
CMD ["serve", "--web.listen-address", ":9847"]

# ---------------------------------------------------------------- restore-drill: + tools
# The runtime plus what restore drills run (docs/probes/backup.md): pg_restore and psql
# (postgresql-client), age and pgbackrest, from Debian bookworm. Build with
# `--target restore-drill`.
FROM runtime AS restore-drill
USER 0:0
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       postgresql-client age pgbackrest \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001

# ---------------------------------------------------------------- default target
FROM runtime
