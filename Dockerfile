# syntax=docker/dockerfile:1
# The reconciliation service image (infra/images.py: recon-app), for the docker and kubernetes
# targets. Multi-stage on the Debian base: the builder makes the virtualenv from wheels of
# requirements.lock's runtime closure, built on the host into .build/ (`fab images.build`), so
# the build needs no network and no certificate, and installs exactly the locked versions
# (--require-hashes). The runtime stage is Debian's python3, that virtualenv and app/ only,
# running as an unprivileged user with nothing writable but /tmp (mounted by the targets).
ARG BASE=recon-base:bookworm
# checkov:skip=CKV_DOCKER_7: the base is a build argument whose value is a pinned tag (recon-base:bookworm, or images.base)

FROM ${BASE} AS builder
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY .build/wheels /wheels
COPY .build/runtime.lock /runtime.lock
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels --require-hashes -r /runtime.lock \
    && /opt/venv/bin/pip uninstall -y -q pip setuptools wheel || true
COPY app /srv/recon/app
RUN /opt/venv/bin/python -m compileall -q /srv/recon/app

FROM ${BASE} AS runtime
ARG RECON_VERSION=dev
ARG UID=10001
LABEL org.opencontainers.image.title="recon-app" \
      org.opencontainers.image.description="Reconciliation service: web API, job worker and migrations" \
      org.opencontainers.image.version="${RECON_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${UID}" recon \
    && useradd --system --uid "${UID}" --gid recon --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin recon
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /srv/recon/app /srv/recon/app
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RECON_VERSION=${RECON_VERSION}
WORKDIR /srv/recon
USER ${UID}:${UID}
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
