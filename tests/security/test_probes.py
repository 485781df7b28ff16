"""Security probes against the running local stack (issue #13): each finding, tried from
outside the way an attacker on the host network would, must fail. docs/security.md lists every
control and the test that proves it.
"""

from __future__ import annotations

import os
import stat

import httpx
import pytest

pytestmark = pytest.mark.stack


def test_prometheus_lifecycle_api_is_off(running_stack, layout):
    """POST /-/reload and /-/quit would let anyone on the host reload or stop Prometheus."""
    base = f"http://{layout.endpoint('prometheus')}"
    for path in ("/-/reload", "/-/quit"):
        r = httpx.post(base + path, timeout=5)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])
    assert httpx.get(base + "/-/ready", timeout=5).status_code == 200  # still up


def test_no_state_file_is_readable_by_others(running_stack):
    """Data and secrets: nothing under the state directory is readable by other users, the
    Redis append-only files included (configs and logs under conf/ and log/ are not secret)."""
    root = running_stack.root
    loose = []
    for sub in ("secrets", "data", "tls"):
        for dirpath, dirnames, filenames in os.walk(root / sub):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    continue
                if mode & (stat.S_IROTH | stat.S_IWOTH):
                    loose.append(f"{path} {stat.filemode(mode)}")
    assert loose == []
