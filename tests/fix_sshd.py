"""A real OpenSSH server on a free loopback port, for tests that drive ops over SSH.

``sshd`` session fixture: starts ``/usr/sbin/sshd -D`` with a generated host key and a generated
client key authorised for the current user, listening on 127.0.0.1 only; yields its port, key
file, login and pid; stops it (by its pid) at the end. ``ssh_env(sshd)`` gives the
``RECON_OPS__SSH__*`` variables that make the inventory use it.

Skipped with a reason when ``sshd`` is not installed (apt-get install openssh-server).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from testing.servers import free_port

SSHD = "/usr/sbin/sshd"


def ssh_env(sshd: dict) -> dict[str, str]:
    return {"RECON_OPS__SSH__HOST": "127.0.0.1", "RECON_OPS__SSH__PORT": str(sshd["port"]),
            "RECON_OPS__SSH__LOGIN": sshd["login"], "RECON_OPS__SSH__KEY_FILENAME": sshd["key_filename"]}


@pytest.fixture(scope="session")
def sshd():
    if not Path(SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    d = Path(tempfile.mkdtemp(prefix="recon-sshd-"))
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    port = free_port()
    (d / "sshd_config").write_text(f"""ListenAddress 127.0.0.1
Port {port}
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel ERROR
ClientAliveInterval 5
""")
    log = (d / "sshd.log").open("w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited {proc.returncode}: {(d / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.1)
    yield {"port": port, "key_filename": str(d / "client_key"), "login": getpass.getuser(), "pid": proc.pid,
           "dir": str(d)}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    shutil.rmtree(d, ignore_errors=True)


def session_pids(master_pid: int) -> list[int]:
    """Per-connection sshd processes (children of the listener): killing one drops a connection."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master_pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]
