# syntax=docker/dockerfile:1
# The Touchstream worker image. From the repository root:
#   docker build -t touchstream .
#   docker run --env-file touchstream.env touchstream          # a worker
#   docker run --entrypoint touchstream touchstream simulate --broker HOST:PORT
# Configuration comes only from TOUCHSTREAM_* environment variables (README.md, Configuration)
# and an optional rules file: mount it and set TOUCHSTREAM_RULES=/path/rules.toml.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# a compiler for any dependency without a binary wheel for the target platform
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY touchstream ./touchstream
# the touchstream wheel and the wheels of all its dependencies, so the final stage installs
# offline and needs no compiler
RUN python -m pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 touchstream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/touchstream \
        --shell /usr/sbin/nologin touchstream \
 && mkdir -p /var/lib/touchstream \
 && chown 10001:10001 /var/lib/touchstream
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels touchstream

# image defaults, each overridable by the environment: serve the customer API (6066, bearer
# tokens) and the operations listener (6068: /metrics /healthz /readyz) on every interface of
# the container, keep local table state in the directory owned by the service user
ENV TOUCHSTREAM_WEB_HOST=0.0.0.0 \
    TOUCHSTREAM_WEB_PORT=6066 \
    TOUCHSTREAM_OPS_HOST=0.0.0.0 \
    TOUCHSTREAM_OPS_PORT=6068 \
    TOUCHSTREAM_DATA_DIR=/var/lib/touchstream
WORKDIR /var/lib/touchstream
# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
EXPOSE 6066 6068

# liveness only (/healthz, on the operations listener); /readyz is 503 during every rebalance and recovery, which is no
# reason to restart the container. The slim image has no curl: Python's urllib does it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TOUCHSTREAM_OPS_PORT', '6068'), timeout=4)"]

ENTRYPOINT ["touchstream", "worker"]
