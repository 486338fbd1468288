# syntax=docker/dockerfile:1
# The gateway on a slim Python base, as a non-root user, with its SQLite database on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_ROUTES=/app/routes.yaml \
    GATEWAY_DB=/data/gateway.db \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000

RUN groupadd --system --gid 10001 gateway && useradd --system --uid 10001 --gid gateway --home-dir /app --shell /usr/sbin/nologin gateway

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# With the otel extra: traces go out as soon as OTEL_EXPORTER_OTLP_ENDPOINT is set; with the postgres extra,
# GATEWAY_DB may name a PostgreSQL database (docs/scaling.md). (".[otel,postgres]" is this
# project, whose dependencies pyproject.toml bounds; DL3013 takes it for an unpinned PyPI package.)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[otel,postgres]"
COPY routes.yaml ./
COPY tasks ./tasks

# Fail the build when routes.yaml or a task module is wrong.
RUN gateway check

RUN mkdir -p /data && chown 10001:10001 /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['GATEWAY_PORT']}/healthz\", timeout=2)"]

CMD ["gateway", "serve", "--host", "0.0.0.0"]
