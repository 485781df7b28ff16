# syntax=docker/dockerfile:1.7
# The reconciliation service image: built by the Docker target (infra/docker/platform.py)
# and by CI for the Kubernetes target's registry. Multi-stage: the builder compiles the
# virtualenv; the runtime stage is python slim with that virtualenv and the app only,
# running as an unprivileged user with nothing writable but /tmp (mounted by the targets).

FROM python:3.11.9-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The service's runtime dependencies, pinned (the repository's pyproject.toml also lists
# the operator tooling, which does not belong in this image).
RUN pip install \
        "fastapi==0.115.0" \
        "uvicorn==0.30.6" \
        "python-multipart==0.0.9" \
        "pydantic==2.9.2" \
        "pydantic-settings==2.5.2" \
        "psycopg[binary]==3.2.3" \
        "psycopg-pool==3.2.3" \
        "redis==5.1.1" \
        "prometheus-client==0.21.0" \
        "polars==1.9.0" \
        "rapidfuzz==3.10.0" \
        "openpyxl==3.1.5" \
        "ofxtools==0.9.5" \
        "mt-940==4.30.0" \
        "opentelemetry-sdk==1.27.0" \
        "opentelemetry-exporter-otlp-proto-http==1.27.0" \
        "opentelemetry-instrumentation-fastapi==0.48b0"
COPY app /src/app
RUN python -m compileall -q /src/app

FROM python:3.11.9-slim-bookworm AS runtime
ARG RECON_VERSION=dev
LABEL org.opencontainers.image.title="recon-app" \
      org.opencontainers.image.description="Reconciliation service: web API, job worker and migrations" \
      org.opencontainers.image.version="${RECON_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RECON_VERSION=${RECON_VERSION}
RUN groupadd --system --gid 10001 recon \
    && useradd --system --uid 10001 --gid recon --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin recon
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/app /srv/recon/app
WORKDIR /srv/recon
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
