"""Fixtures for checking rendered configs with the real tools.

Every test here renders the templates through ``infra.render.render_all`` (the function every
target uses) for a spec built with ``load_spec(overrides=...)``: state under ``tmp_path`` and,
for servers that really start, free loopback ports, so nothing collides with a running local
stack. A missing tool fails the test with the package to install (CI installs them all);
nothing is skipped silently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.layout import ContainerLayout, Layout, LocalLayout
from infra.render import RenderContext, render_all, write_all
from infra.spec import StackSpec, load_spec
from testing.servers import PG_BIN, free_port

TOOLS = {
    # name: Debian package that provides it
    "nginx": "nginx",
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
}


def tool(name: str) -> str:
    """Absolute path of ``name``; fails (never skips) when it is not installed."""
    if name in ("initdb", "postgres", "pg_ctl"):
        path = PG_BIN / name
        if not path.exists():
            pytest.fail(f"{path} not found: install the Debian package postgresql-15")
        return str(path)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        pytest.fail(f"{name} not found on PATH: install the Debian package {TOOLS.get(name, name)}")
    return found


def run(cmd: list[str], *, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure the assertion shows the command and its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns a truthy value (and return it) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - the last error is reported below
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last result: {last!r}")


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key for ``localhost`` (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    cert_path, key_path = d / "server.crt", d / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class Rendered:
    """The configs of one spec rendered and written as the local target does."""

    def __init__(self, spec: StackSpec, layout: Layout, ctx: RenderContext, conf_dir: Path):
        self.spec, self.layout, self.ctx, self.conf_dir = spec, layout, ctx, conf_dir
        self.files = render_all(spec, layout, ctx)
        write_all(self.files, conf_dir)

    def path(self, rel: str) -> Path:
        assert rel in self.files, f"render_all produced no {rel}; it produced {sorted(self.files)}"
        return self.conf_dir / rel

    def text(self, rel: str) -> str:
        return self.files[rel].content


def render_local_into(state: Path, tls_pair: tuple[Path, Path],
                      overrides: dict[str, Any] | None = None, **ctx_kw: Any) -> Rendered:
    """The local layout's configs for a spec with ``overrides`` and its state in ``state``.

    ``state`` gets the run/, log/ and data/<proc> directories the local target creates before
    starting anything.
    """
    spec = load_spec(overrides={**(overrides or {}), "state_dir": str(state)})
    layout = LocalLayout(spec)
    ctx_kw.setdefault("tls_cert", str(tls_pair[0]))
    ctx_kw.setdefault("tls_key", str(tls_pair[1]))
    for d in ("run", "log"):
        (state / d).mkdir(parents=True, exist_ok=True)
    for proc in spec.local_ports():
        Path(layout.data(proc)).mkdir(parents=True, exist_ok=True)
    return Rendered(spec, layout, RenderContext(**ctx_kw), state / "conf")


@pytest.fixture
def render_local(tmp_path: Path, tls_pair: tuple[Path, Path]) -> Callable[..., Rendered]:
    """``render_local(overrides=None, state_dir=None, **ctx)``: the local layout's configs,
    state under ``tmp_path/state`` unless ``state_dir`` is given."""

    def _render(overrides: dict[str, Any] | None = None, state_dir: Path | None = None,
                **ctx_kw: Any) -> Rendered:
        return render_local_into(state_dir or tmp_path / "state", tls_pair, overrides, **ctx_kw)

    return _render


@pytest.fixture
def render_stack(tmp_path: Path) -> Callable[..., Rendered]:
    """``render_stack(stack, layout_cls=ContainerLayout)``: a committed stack's configs
    (Pulumi.<stack>.yaml) for its container target, written under ``tmp_path``."""

    def _render(stack: str, layout_cls: type[ContainerLayout] = ContainerLayout,
                **ctx_kw: Any) -> Rendered:
        spec = load_spec(stack, overrides={"state_dir": str(tmp_path / stack)})
        layout = layout_cls(spec, spec.target)
        return Rendered(spec, layout, RenderContext(**ctx_kw), tmp_path / stack / "conf")

    return _render


@contextlib.contextmanager
def reachable_dir() -> Iterator[Path]:
    """A scratch directory a service user can reach, for servers that refuse root.

    pytest's tmp_path sits under a 0700 directory of the current user; PostgreSQL started as
    the ``postgres`` user (when the tests run as root) could not traverse it.
    """
    d = Path(tempfile.mkdtemp(prefix="recon-tpl-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def service_dir() -> Iterator[Path]:
    with reachable_dir() as d:
        yield d


def service_user() -> dict[str, Any]:
    """``subprocess`` arguments that run a command as the ``postgres`` user when we are root
    (PostgreSQL refuses root); empty otherwise. Signals then reach the server directly."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def chown_service_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    pw = pwd.getpwnam("postgres")
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


class Processes:
    """Servers started by a test; all stopped (TERM, then KILL) at teardown."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str], log_dir: Path, **kw: Any) -> subprocess.Popen[bytes]:
        log = log_dir / f"{name}.out"
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, **kw)
        self.procs.append((name, p, log))
        return p

    def assert_running(self) -> None:
        for name, p, log in self.procs:
            if p.poll() is not None:
                # pytest.fail, not assert: wait_for retries on Exception, not on this
                pytest.fail(f"{name} exited {p.returncode}:\n{log.read_text()[-3000:]}")

    def stop_all(self) -> None:
        for _, p, _ in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p, _ in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


# -- helpers as fixtures: test modules never import conftest (its module name is not unique) --
@pytest.fixture(scope="session")
def find_tool() -> Callable[[str], str]:
    return tool


@pytest.fixture(scope="session")
def run_cmd() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run


@pytest.fixture(scope="session")
def free_ports() -> Callable[[int], int]:
    """``free_ports(n)``: the first of n consecutive ports free on 127.0.0.1."""
    return free_port


@pytest.fixture(scope="session")
def poll() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(scope="session")
def service_user_kw() -> dict[str, Any]:
    return service_user()


@pytest.fixture(scope="session")
def chown_to_service_user() -> Callable[[Path], None]:
    return chown_service_user


@pytest.fixture(scope="session")
def pg_helpers() -> tuple:
    """(render_local_into, reachable_dir, Processes) for module-scoped server fixtures."""
    return render_local_into, reachable_dir, Processes
