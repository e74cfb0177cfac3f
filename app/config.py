"""Settings: one object, read from ``SYNTHBENCH_*`` environment variables.

Nothing here runs at import time; ``get_settings()`` builds (and caches) the object so tests can
point a fresh process at another database or broker through the environment.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
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
    # One attempt of a job may run this long; then it is stopped and failed. The reporter stops
    # it at its next progress check; Celery's own soft limit (a little later) and hard limit
    # (the pool process is killed) catch code that never checks.
    job_soft_time_limit_s: int = 6 * 3600
    job_time_limit_s: int = 6 * 3600 + 300
    # A running job whose heartbeat is older than this is failed by the reaper, which runs in
    # the web server every `reaper_interval_s`: a job whose worker vanished ends within about
    # heartbeat_timeout_s + reaper_interval_s, never 'running' forever.
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
