# The platform's image: one image for the code server, the webserver, the daemon and the run workers
# (docker-compose.yaml, the Helm chart's user deployment, Dagster+ hybrid agents).
# What it does at build time is deploy/build-image.sh, which tests/test_deploy.py runs too.
FROM python:3.11-slim-bookworm

# uv from its official image, pinned (the lock file decides every other version)
COPY --from=ghcr.io/astral-sh/uv:0.9.5 /uv /usr/local/bin/uv

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    ELT_DATA_DIR=/var/lib/elt \
    DAGSTER_HOME=/opt/dagster/home \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    RUNTIME__DLTHUB_TELEMETRY=false

# the non-root user every process runs as
RUN groupadd --system --gid 1000 elt \
    && useradd --system --uid 1000 --gid elt --home-dir /home/elt --create-home elt \
    && mkdir -p /app /var/lib/elt /opt/dagster/home \
    && chown -R elt:elt /app /var/lib/elt /opt/dagster/home

WORKDIR /app
USER 1000:1000

# dependencies first (cached while only the code changes), then the project
COPY --chown=elt:elt pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --no-progress

COPY --chown=elt:elt . .
# install from the lock, prepare the dbt manifest, install httpfs and check the Sling and DuckDB binaries
RUN deploy/build-image.sh /app

# the deployment instance (PostgreSQL storage, queue, pool, run monitoring); compose overrides it for Docker runs
COPY --chown=elt:elt deploy/dagster.yaml /opt/dagster/home/dagster.yaml

EXPOSE 3000 4000
# the code server by default; compose and Helm run the webserver and the daemon from the same image
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "orchestration.definitions", "--location-name", "elt_platform"]
