# The Biobank FHIR Gateway as one slim image: `docker build -t biobank-gateway .` from a clone.
# Runs as an unprivileged user; state (signing keys, export files, the SQLite file when no
# PostgreSQL is configured) lives under /data, a volume every replica of a deployment shares.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_DATABASE_URL=sqlite:////data/gateway.db \
    PROMETHEUS_MULTIPROC_DIR=/tmp/gateway-metrics \
    WORKERS=2

RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /app --shell /usr/sbin/nologin gateway \
 && mkdir -p /data /tmp/gateway-metrics && chown gateway:gateway /data /tmp/gateway-metrics

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
# The package reads profiles/, mappings/ and conformance/ beside itself: keep the tree, install editable.
COPY gateway ./gateway
COPY profiles ./profiles
COPY mappings ./mappings
COPY conformance ./conformance
RUN pip install --no-deps -e . && python -c "import gateway.app"

USER gateway
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# SIGTERM (docker stop): uvicorn stops accepting, finishes in-flight requests (up to 30 s), then exits.
CMD ["sh", "-c", "exec biobank-gateway serve --host 0.0.0.0 --port 8080 --workers \"$WORKERS\""]
