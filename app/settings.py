"""Service settings: one object, loaded once from ``RECON_*`` environment variables.

Code never reads the environment in the middle of logic: :func:`get_settings` builds a
:class:`Settings` once per process and passes it down.

Traps:

* Secrets (``REDIS_PASSWORD``, ``REDIS_SENTINEL_PASSWORD``, ``REDIS_URL`` and the database
  DSNs) are ``SecretStr`` and never appear in ``repr()`` or logs; use
  :meth:`Settings.redacted` to show settings (URLs keep all but their password).
* ``REDIS_SENTINELS`` and ``REDIS_URL`` are alternatives. When both are set, Sentinel wins
  (it follows a failover; a plain URL does not).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_DSN_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]+)(@)|(password=)(\S+)")


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (URL or key=value form)."""

    def _sub(m: re.Match[str]) -> str:
        if m.group(1):
            return f"{m.group(1)}***{m.group(3)}"
        return f"{m.group(4)}***"

    return _DSN_PASSWORD.sub(_sub, dsn)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable and what is allowed."""


class Settings(BaseSettings):
    """Every knob of the service. Environment prefix ``RECON_`` (``RECON_DATABASE_URL``, ...)."""

    model_config = SettingsConfigDict(env_prefix="RECON_", extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(
        default=None, description="Primary PostgreSQL DSN (libpq URL or key=value). Required for DB work."
    )
    database_replica_url: SecretStr | None = Field(
        default=None, description="Optional read-only replica DSN for list/export queries."
    )
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    db_connect_timeout: float = Field(default=3.0, gt=0)

    redis_sentinels: str | None = Field(default=None, description='"host:port,host:port,..."')
    redis_master_name: str = "mymaster"
    redis_username: str | None = Field(default=None, description="Redis ACL user (none: the default user)")
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = Field(default=None, description="file holding the Redis password (0600)")
    redis_sentinel_password: SecretStr | None = None
    redis_sentinel_password_file: Path | None = Field(default=None, description="file holding the Sentinels' password")
    redis_url: SecretStr | None = Field(default=None, description="Alternative to Sentinel: redis://...")
    redis_socket_timeout: float = Field(default=1.0, gt=0)

    slot: str = "default"
    version: str = "dev"
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP traces endpoint; off when unset.")
    service_name: str = "recon"

    max_upload_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_json_bytes: int = Field(default=1024 * 1024, gt=0, description="Largest request body that is not a "
                                "multipart upload (JSON: reconciliations, rules, reviews); larger ones get 413 "
                                "before they are parsed.")
    log_level: str = "INFO"
    log_json: bool = True

    rate_limit_per_minute: int = Field(default=1200, ge=0, description="Per token; 0 disables.")
    auth_failures_per_minute: int = Field(default=60, ge=0, description="Per client address: unknown "
                                          "tokens beyond this get 429 instead of a database look-up; 0 disables.")

    job_lease_seconds: float = Field(default=30.0, gt=0, description="A running job whose worker "
                                     "missed heartbeats this long is taken over by another worker.")
    job_poll_seconds: float = Field(default=1.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    job_retention_days: int = Field(default=30, ge=1, description="finished job rows older than this are "
                                    "deleted by the workers (runs and results are kept)")
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    worker_metrics_host: str = Field(default="127.0.0.1", description="bind address of the worker's "
                                     "/metrics; 0.0.0.0 where Prometheus scrapes pod IPs (Kubernetes)")
    fault_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Release drills only: share of API "
                              "requests answered 500 (see app/web/faults.py); 0 in production.")

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in LOG_LEVELS:
            raise ValueError(f"RECON_LOG_LEVEL={value!r} is not one of {', '.join(LOG_LEVELS)}")
        return upper

    @field_validator("redis_sentinels")
    @classmethod
    def _check_sentinels(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for item in value.split(","):
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"RECON_REDIS_SENTINELS item {item.strip()!r} is not host:port "
                    f"(expected e.g. '127.0.0.1:26379,127.0.0.1:26380')"
                )
        return value

    @model_validator(mode="after")
    def _read_password_files(self) -> "Settings":
        """``*_PASSWORD_FILE`` settings: the secret stays out of the process environment."""
        for name in ("redis_password", "redis_sentinel_password"):
            path = getattr(self, f"{name}_file")
            if path is not None and getattr(self, name) is None:
                try:
                    value = Path(path).read_text().strip()
                except OSError as exc:
                    raise ValueError(f"RECON_{name.upper()}_FILE={path}: cannot read it ({exc.strerror})") from None
                object.__setattr__(self, name, SecretStr(value))
        return self

    @model_validator(mode="after")
    def _check_pool(self) -> "Settings":
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(
                f"RECON_DB_POOL_MIN={self.db_pool_min} exceeds RECON_DB_POOL_MAX={self.db_pool_max}"
            )
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """Parsed ``REDIS_SENTINELS`` as ``[(host, port), ...]`` (empty when unset)."""
        if not self.redis_sentinels:
            return []
        out = []
        for item in self.redis_sentinels.split(","):
            host, _, port = item.strip().rpartition(":")
            out.append((host.strip("[]"), int(port)))
        return out

    def require_database_url(self) -> str:
        """The primary DSN, or :class:`SettingsError` naming the variable to set."""
        if self.database_url is None or not self.database_url.get_secret_value().strip():
            raise SettingsError(
                "RECON_DATABASE_URL is not set; expected a PostgreSQL DSN such as "
                "'postgresql://recon@127.0.0.1:5432/recon'"
            )
        return self.database_url.get_secret_value()

    def redacted(self) -> dict[str, object]:
        """Settings as a dict safe to print or log: secrets masked, DSN passwords removed."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                value = redact_dsn(raw) if name.endswith("_url") and "password" not in name else "***"
            out[name] = value
        return out


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    try:
        return Settings()
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise SettingsError(f"invalid RECON_* settings: {exc}") from exc
