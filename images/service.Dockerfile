# syntax=docker/dockerfile:1
# One service image from Debian packages (infra/images.py: recon-<name>). Built with
# `docker build --network host` so apt reaches the Debian mirror; tagged by content.
ARG BASE=recon-base:bookworm
FROM ${BASE}
ARG PACKAGES
ARG DATA_DIRS=""
ARG UID=10001
# the service user first, with a fixed uid, so volumes and uploaded files have one owner
RUN groupadd --system --gid "${UID}" recon \
    && useradd --system --uid "${UID}" --gid recon --home-dir /var/lib/recon --create-home \
       --shell /usr/sbin/nologin recon
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${PACKAGES} >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /etc/recon /var/run/postgresql ${DATA_DIRS} \
    && chown recon:recon /etc/recon /var/run/postgresql ${DATA_DIRS}
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER ${UID}:${UID}
