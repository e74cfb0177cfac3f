"""Settings: one object, read from ``SYNTHBENCH_*`` environment variables.

Nothing here runs at import time; ``get_settings()`` builds (and caches) the object so tests can
point a fresh process at another database or broker through the environment.
"""

from __future__ import annotations

import ipaddress
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.cwd() / ".synthbench"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTHBENCH_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None
    broker_url: str | None = None
    secret_key: str | None = None
    # Cookies marked Secure never reach a plain-http laptop demo; production behind TLS sets it.
    secure_cookies: bool = False
    session_hours: int = 12
    invite_hours: int = 72
    # Sign-in rate limit (OWASP ASVS 2.2.1): failures per username and per client address
    # within a sliding window; past either limit, even the right password waits.
    login_max_failures: int = 5
    login_max_failures_per_address: int = 30
    login_window_s: int = 900
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client for the
    # per-address limit. Empty: the header is ignored and the client is the socket peer.
    # Set as JSON: SYNTHBENCH_TRUSTED_PROXIES='["10.0.0.5"]'.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Password checks running at once in one web process; the rest wait without a thread or a
    # database connection. None: the CPUs this process may use (argon2 is CPU-bound, so more
    # at once only share the same cores and each takes longer).
    password_check_concurrency: int | None = None
    # Database connections per process. None: 20 + 20 overflow for SQLite (a file handle each;
    # together the size of the request thread pool, so no request waits for one) and 10 + 10
    # for PostgreSQL (per process: two web workers and a Celery worker stay well under its
    # default max_connections of 100).
    db_pool_size: int | None = None
    db_max_overflow: int | None = None
    db_pool_timeout_s: float = 30.0
    # How long a SQLite write waits for another one to finish before "database is locked";
    # the request then retries (db_retry_attempts in all) and finally answers 503, never 500.
    sqlite_busy_timeout_ms: int = 15000
    db_retry_attempts: int = 3
    # One attempt of a job may run this long; then it is stopped and failed. The reporter stops
    # it at its next progress check; Celery's own soft limit (a little later) and hard limit
    # (the pool process is killed) catch code that never checks.
    job_soft_time_limit_s: int = 6 * 3600
    job_time_limit_s: int = 6 * 3600 + 300
    # A running job whose heartbeat is older than this is requeued by a live worker of its
    # queue; one nobody took over is failed by the reaper, which runs in the web server every
    # `reaper_interval_s` (app/jobs/heartbeats.py: reap_after_s), never 'running' forever.
    heartbeat_timeout_s: int = 120
    reaper_interval_s: float = 30.0
    # A job still 'queued' after this long, on a queue where the broker holds no message, is
    # sent again: its message never reached the broker (down at submit time) or was lost.
    redispatch_after_s: int = 120
    max_upload_bytes: int = 512 * 1024 * 1024
    # Folders the web form may import datasets from (researchers must not read arbitrary server
    # paths); the CLI, run by whoever owns the machine, may import from anywhere.
    # Empty means ``home/imports``. Set as JSON: SYNTHBENCH_IMPORT_ROOTS='["/data/chexpert"]'.
    import_roots: list[Path] = Field(default_factory=list)
    # Energy and CO2 of every job attempt, estimated by codecarbon's offline tracker (no network);
    # the grid's carbon intensity comes from this country (ISO 3166-1 alpha-3).
    energy_tracking: bool = True
    co2_country: str = "USA"
    # Images (thousands) the demo's tiny GAN trains on: 12 gives recognisable chest films in
    # about a minute on an idle laptop CPU; a slow machine (or a test) may ask for fewer.
    demo_gan_kimg: float = Field(default=12.0, gt=0, le=100)
    # Epochs of the digits benchmark's three classifiers: 12 give a clear real/synthetic gap;
    # a test may ask for fewer (the classifiers are most of the digits demo's time).
    demo_classifier_epochs: int = Field(default=12, ge=1, le=200)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        # Refused at start-up rather than as a 500 at the first sign-in.
        for entry in value:
            ipaddress.ip_network(entry.strip(), strict=False)
        return value

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'synthbench.sqlite'}"

    def resolved_broker_url(self) -> str:
        # The embedded default is kombu's SQLAlchemy transport on its own SQLite file: no server
        # process, yet a separate worker process consumes it exactly as it would consume Redis.
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.sqlite'}"

    @property
    def artefacts_dir(self) -> Path:
        return self.home / "artefacts"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    def resolved_import_roots(self) -> list[Path]:
        return [p.resolve() for p in (self.import_roots or [self.home / "imports"])]

    def resolved_secret_key(self) -> str:
        """The configured key, or one generated on first run and kept under ``home``."""
        if self.secret_key:
            return self.secret_key
        path = self.home / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL so that two processes starting together agree on one key.
        try:
            with path.open("x") as fh:
                fh.write(key)
            path.chmod(0o600)
        except FileExistsError:
            return path.read_text().strip()
        return key


@lru_cache
def get_settings() -> Settings:
    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings
