#!/bin/sh
# A Docker engine for the staging target and its tests (idempotent).
#
#   DOCKER_HOST set and answering   use it (a remote or already running engine): nothing to do
#   the default socket answers      use it
#   otherwise                       install Debian's docker.io if dockerd is missing, start dockerd
#                                   with its own data and exec roots, wait until it answers
#
# dockerd runs with --iptables=false --ip-masq=false: nothing the stack does leaves the
# machine, so no NAT is needed (and these machines cannot change the host's firewall). Its
# image store lives outside the clone (RECON_DOCKER_ROOT, default /var/lib/recon-docker), so
# images built once are reused by every later run. Run as root, or as a user with sudo.
set -eu
ROOT=${RECON_DOCKER_ROOT:-/var/lib/recon-docker}
EXEC_ROOT=${RECON_DOCKER_EXEC_ROOT:-/run/recon-docker}
LOG=${RECON_DOCKER_LOG:-/var/log/recon-dockerd.log}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

answers() { docker info >/dev/null 2>&1; }

if [ -n "${DOCKER_HOST:-}" ]; then
    if answers; then echo "docker engine: using DOCKER_HOST=$DOCKER_HOST"; exit 0; fi
    echo "docker engine: DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST" >&2
    exit 1
fi
if command -v docker >/dev/null 2>&1 && answers; then
    echo "docker engine: running ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker engine: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if [ ! -e /sys/fs/cgroup/cpu ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
    echo "docker engine: no cgroup filesystem here; dockerd cannot run. Point DOCKER_HOST at an engine" >&2
    exit 1
fi
$SUDO mkdir -p "$ROOT" "$EXEC_ROOT"
echo "docker engine: starting dockerd (data $ROOT, log $LOG)"
# setsid: the daemon outlives this script and the make target that ran it
$SUDO setsid dockerd --iptables=false --ip-masq=false --data-root "$ROOT" --exec-root "$EXEC_ROOT" \
    --storage-driver overlay2 >>"$LOG" 2>&1 < /dev/null &
i=0
while ! answers; do
    i=$((i + 1))
    if [ "$i" -gt 60 ]; then
        echo "docker engine: dockerd did not answer within 30 s; its log: $LOG" >&2
        tail -5 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "docker engine: running ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
