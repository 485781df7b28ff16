"""Redis through Sentinel: cache, job progress and rate limits. Nothing here is the only copy.

Redis holds what can be rebuilt: if it is down or failing over, callers get
:class:`CacheUnavailable` (or a ``None``/fail-open answer from the helpers below) and carry
on from PostgreSQL. Durable state never lives only in Redis.

Sentinel: ``redis.sentinel.Sentinel.master_for`` returns a client whose pool asks the
sentinels for the current master on every new connection and drops connections on
``ReadOnlyError``/connection errors, so after a failover the next command reaches the new
master. Trap: a command in flight during the switch fails once; helpers retry once.

With tracing on, every command of the master client and of the Sentinel clients is a span
(:func:`app.tracing.instrument_redis`: the command name, its arguments as ``?``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from app import tracing
from app.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_TTL = 24 * 3600


class CacheUnavailable(RuntimeError):
    """Redis (or every sentinel) could not be reached."""


class Cache:
    """A Redis client resolved through Sentinel (or a plain URL), with small typed helpers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        timeout = settings.redis_socket_timeout
        # redis-py >= 6 retries 3 times with exponential backoff by default: seconds of stall per
        # call while Redis is down. We retry once ourselves (see _run) and otherwise fail fast.
        no_retry = {"retry": Retry(NoBackoff(), 0), "retry_on_error": []}
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        self._sentinel: Sentinel | None = None
        if settings.sentinel_addresses:
            sentinel_kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                               **no_retry}
            if settings.redis_sentinel_password:
                sentinel_kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
            self._sentinel = Sentinel(settings.sentinel_addresses, sentinel_kwargs=sentinel_kwargs,
                                      socket_timeout=timeout, socket_connect_timeout=timeout, password=password,
                                      username=settings.redis_username, **no_retry)
            self.client: redis.Redis | None = self._sentinel.master_for(
                settings.redis_master_name, socket_timeout=timeout, socket_connect_timeout=timeout,
                username=settings.redis_username, password=password, retry_on_timeout=False, **no_retry,
            )
            self.where = f"sentinel master {settings.redis_master_name!r} via {settings.redis_sentinels}"
        elif settings.redis_url is not None:
            self.client = redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=timeout,
                                               socket_connect_timeout=timeout, **no_retry)
            self.where = "RECON_REDIS_URL"
        else:
            self.client = None
            self.where = "(not configured)"
        if self.client is not None:
            tracing.instrument_redis(settings, self.client, *(self._sentinel.sentinels if self._sentinel else ()))

    def _run(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        if self.client is None:
            raise CacheUnavailable("Redis is not configured: set RECON_REDIS_SENTINELS or RECON_REDIS_URL")
        last: Exception | None = None
        for attempt in range(2):
            try:
                return getattr(self.client, fn)(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as exc:
                last = exc
                if attempt == 0:
                    time.sleep(0.05)
            except redis.RedisError as exc:  # MasterNotFoundError is a ConnectionError subclass
                last = exc
                break
        raise CacheUnavailable(f"Redis ({self.where}): {last}") from last

    def ping(self) -> None:
        """Raise :class:`CacheUnavailable` unless the current master answers PING."""
        self._run("ping")

    def master_address(self) -> tuple[str, int] | None:
        """The master the sentinels currently name (``None`` without Sentinel)."""
        if self._sentinel is None:
            return None
        try:
            return self._sentinel.discover_master(self.settings.redis_master_name)
        except redis.RedisError as exc:
            raise CacheUnavailable(f"Redis ({self.where}): {exc}") from exc

    # -- cache ---------------------------------------------------------------------------
    def get_json(self, key: str) -> Any | None:
        """Cached JSON value, or ``None`` when missing or Redis is unavailable."""
        try:
            raw = self._run("get", key)
        except CacheUnavailable as exc:
            log.warning("cache read skipped", extra={"key": key, "error": str(exc)})
            return None
        return None if raw is None else json.loads(raw)

    def set_json(self, key: str, value: Any, ttl: int) -> None:
        try:
            self._run("set", key, json.dumps(value, default=str), ex=max(1, ttl))
        except CacheUnavailable as exc:
            log.warning("cache write skipped", extra={"key": key, "error": str(exc)})

    def delete(self, *keys: str) -> None:
        try:
            self._run("delete", *keys)
        except CacheUnavailable as exc:
            log.warning("cache delete skipped", extra={"keys": keys, "error": str(exc)})

    # -- progress ------------------------------------------------------------------------
    def set_progress(self, job_id: int, *, stage: str, processed: int, total: int) -> None:
        """Best effort: the job row in PostgreSQL keeps coarse progress as the fallback."""
        self.set_json(f"recon:progress:{job_id}", {"stage": stage, "processed": processed, "total": total,
                                                  "at": time.time()}, PROGRESS_TTL)

    def get_progress(self, job_id: int) -> dict[str, Any] | None:
        return self.get_json(f"recon:progress:{job_id}")

    # -- rate limit ----------------------------------------------------------------------
    def hit_rate_limit(self, subject: str, limit: int, window: int = 60) -> tuple[bool, int]:
        """Count one hit for ``subject`` in the current fixed window.

        Returns ``(allowed, retry_after_seconds)``. Fails open (allowed) when Redis is
        unavailable: a rate limiter must not turn a cache outage into an API outage.
        """
        if limit <= 0:
            return True, 0
        now = int(time.time())
        bucket = now // window
        key = f"recon:rl:{subject}:{bucket}"
        try:
            pipe_result = self._run("eval", _INCR_EXPIRE, 1, key, window + 1)
        except CacheUnavailable as exc:
            log.warning("rate limit not enforced", extra={"error": str(exc)})
            return True, 0
        count = int(pipe_result)
        if count > limit:
            return False, window - (now % window)
        return True, 0

    def peek_rate_limit(self, subject: str, limit: int, window: int = 60) -> bool:
        """True when ``subject`` already used up ``limit`` in the current window (no hit counted).

        Fails open (False) when Redis is unavailable.
        """
        bucket = int(time.time()) // window
        try:
            raw = self._run("get", f"recon:rl:{subject}:{bucket}")
        except CacheUnavailable:
            return False
        return raw is not None and int(raw) >= limit

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


_INCR_EXPIRE = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
