"""The real server (``python -m app.cli serve``, several uvicorn workers) as a process that a
load run can stop with a signal and start again on the same port."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORKER_PID_RE = re.compile(r"Started server process \[(\d+)\]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Generation:
    """One start of the server: its main process, its workers (from uvicorn's own log lines)
    and how it ended."""

    pid: int
    log: Path
    worker_pids: frozenset[int] = frozenset()
    ready_after_s: float = 0.0
    stopped_by: str | None = None
    exit_code: int | None = None


@dataclass
class ServerControl:
    env: dict[str, str]
    logs: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    ready_timeout_s: float = 180.0
    generations: list[Generation] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Generation:
        log = self.logs / f"server-{len(self.generations)}.log"
        argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        argv += ["--no-embedded-worker", "--web-workers", str(self.workers)]
        started = time.monotonic()
        with log.open("wb") as out:
            # Own session: a SIGKILL must reach the workers too, as a crash of the whole
            # service would, rather than leave orphans holding the port.
            self._process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        generation = Generation(self._process.pid, log)
        self.generations.append(generation)
        self._wait_ready(self._process)
        generation.ready_after_s = time.monotonic() - started
        generation.worker_pids = self._worker_pids(log)
        return generation

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {self.ready_timeout_s} s: {self.tail()}")

    def _worker_pids(self, log: Path, wait_s: float = 30.0) -> frozenset[int]:
        # Healthy means one worker answered; the others may still be importing the app.
        deadline = time.monotonic() + wait_s
        while True:
            pids = frozenset(int(p) for p in WORKER_PID_RE.findall(log.read_text(errors="replace")))
            if len(pids) >= self.workers or time.monotonic() > deadline:
                return pids
            time.sleep(0.2)

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace_s: float = 60.0) -> float:
        """SIGTERM goes to the main process, as ``kill PID`` or ``docker stop`` would send it,
        and uvicorn drains its workers; SIGKILL goes to the whole group, as a crash would.
        Returns the monotonic time at which it was down."""
        process = self._process
        if process is None:
            return time.monotonic()
        generation = self.generations[-1]
        if process.poll() is None:
            generation.stopped_by = sig.name
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.killpg(process.pid, sig)
                else:
                    os.kill(process.pid, sig)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                generation.stopped_by = f"{sig.name}, then SIGKILL after {grace_s:.0f} s"
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Workers outlive their parent only by a moment; none may keep serving the old code.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        generation.exit_code = process.returncode
        self._process = None
        return time.monotonic()

    def tail(self, chars: int = 3000) -> str:
        if not self.generations:
            return ""
        return self.generations[-1].log.read_text(errors="replace")[-chars:]

    def __enter__(self) -> ServerControl:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def bare_uvicorn(app: str, workers: int, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A baseline: bare uvicorn serving `app` (a module:attribute under bench/) on a free port,
    with the same worker count as the server measured beside it; yields its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--port", str(port)]
    argv += ["--workers", str(workers), "--log-level", "warning"]
    process = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=1)
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bare uvicorn did not come up")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
