#!/bin/sh
# Install the Debian packages the local stack runs (idempotent; apt only when something is missing).
# Run as root, or as a user with sudo. Used by `make up`, `make test` and .ci/run.
set -eu
cd "$(dirname "$0")/.."
# The services' packages come from the service catalogue (infra/services.py: stdlib only, so
# Debian's python runs it before any virtualenv exists); the tools the tasks and tests use follow.
PYTHON=/usr/bin/python3
if [ ! -x "$PYTHON" ]; then
    PYTHON=$(command -v python3 || true)
fi
if [ -z "$PYTHON" ]; then
    echo "system packages: python3 is missing; install it first: apt-get install python3" >&2
    exit 1
fi
SERVICES=$("$PYTHON" -m infra.services)
TOOLS="postgresql-client-15 pgbackrest openssh-server openssh-client python3-venv python3-dev
iproute2 curl ca-certificates debootstrap chromium chromium-driver fonts-dejavu-core"
PACKAGES="$SERVICES $TOOLS"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "system packages: all present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts some of these as system services where systemd runs; the stack runs its own
# instances under its supervisor, on other ports, so the system ones are left as they are.
echo "system packages: done"
