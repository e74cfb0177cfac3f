"""Simulated readers answering over HTTP while things go wrong: some answers are POSTed twice
(at once or one after the other), connection errors are retried by resending, and the server is
stopped and started again mid-run. Every answer a reader saw accepted (HTTP 200) goes in the
log, which load_check then compares with the database."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
import signal
import statistics
import time
from dataclasses import dataclass, field

import httpx
from load_server import ServerControl
from load_study import LoadStudy

ANSWERS = ("real", "fake", "uncertain")
ENTRY_RE = re.compile(r'data-entry="([^"]+)"')
POSITION_RE = re.compile(r'data-position="(\d+)"')
CSRF_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')
MAX_BACKOFF_S = 2.0


@dataclass(frozen=True)
class Shown:
    """The image a reading page shows: its opaque entry id and its 1-based position."""

    entry: str
    position: int | None  # the bare baseline endpoint has none


def shown_in(html: str) -> Shown | None:
    entry = ENTRY_RE.search(html)
    if entry is None:
        return None
    position = POSITION_RE.search(html)
    return Shown(entry.group(1), int(position.group(1)) if position else None)


@dataclass(frozen=True)
class Restart:
    at: float  # share of all answers accepted when the server is stopped
    signal: signal.Signals


@dataclass(frozen=True)
class LoadPlan:
    readers: int
    answers: int  # per reader
    double_share: float = 0.05
    restarts: tuple[Restart, ...] = ()
    image_check_share: float = 0.0  # answers whose image is fetched and hashed first
    seed: int = 0
    give_up_s: float = 300.0  # one request is retried this long at most
    baseline: bool = False  # the bare endpoint: no CSRF token, no positions
    # Mean pause before each answer (uniform, 0.5x to 1.5x), as a person; readers then also
    # arrive spread over one such pause.
    think_s: float = 0.0

    @property
    def total(self) -> int:
        return self.readers * self.answers


@dataclass(frozen=True)
class Accepted:
    reader: int
    entry: str
    position: int | None
    answer: str
    image_sha256: str | None  # of the image bytes this reader was served for the entry


@dataclass(frozen=True)
class RestartRecord:
    signal: str
    accepted_before: int  # answers accepted when the stop began
    down_s: float  # from the stop signal until the new server's health check answered
    old_pid: int
    new_pid: int
    old_workers: frozenset[int]
    new_workers: frozenset[int]


@dataclass
class LoadLog:
    accepted: list[Accepted] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # of POSTs answered 200
    # Per accepted answer: its image's GET (when fetched) plus its POST(s), no think time.
    steps: list[float] = field(default_factory=list)
    doubles: int = 0
    racing_doubles: int = 0
    resends: int = 0
    errors: list[str] = field(default_factory=list)
    restarts: list[RestartRecord] = field(default_factory=list)
    seconds: float = 0.0

    def rate(self) -> float:
        return len(self.accepted) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float, of: str = "latencies") -> float:
        lat = sorted(getattr(self, of))
        if not lat:
            return float("nan")
        if q == 0.5:
            return statistics.median(lat) * 1000
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000


class Reader:
    """One simulated reader: a browser with its own cookies, reading front to back."""

    def __init__(
        self, client: httpx.AsyncClient, index: int, study: LoadStudy, plan: LoadPlan, log: LoadLog
    ) -> None:
        self.client, self.index, self.plan, self.log = client, index, plan, log
        self.base = f"/read/{study.study_id}"
        # Per reader, so the answers and doubles of a run do not depend on scheduling.
        self.rng = random.Random(plan.seed * 1_000_003 + index)
        self.headers: dict[str, str] = {}

    def _error(self, message: str) -> None:
        self.log.errors.append(f"reader {self.index}: {message}")

    async def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response | None:
        """A 200, retrying connection errors with backoff; None (and an error) otherwise.

        A POST that failed in transit may or may not have been stored, so it is resent as is:
        that is exactly the case the server's idempotence must absorb.
        """
        delay, deadline = 0.05, time.monotonic() + self.plan.give_up_s
        while True:
            started = time.perf_counter()
            try:
                response = await self.client.request(method, url, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    self._error(f"gave up on {method} {url}: {exc!r}")
                    return None
                if method == "POST":
                    self.log.resends += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if response.status_code != 200:
                self._error(f"{method} {url} -> {response.status_code} {response.text[:200]!r}")
                return None
            if method == "POST":
                self.log.latencies.append(time.perf_counter() - started)
            return response

    async def _post_twice(self, data: dict[str, str]) -> httpx.Response | None:
        url = f"{self.base}/answer"
        self.log.doubles += 1
        if self.rng.random() < 0.5:  # a double click: both in flight at once
            self.log.racing_doubles += 1
            first, second = await asyncio.gather(
                self._send("POST", url, data=data, headers=self.headers),
                self._send("POST", url, data=data, headers=self.headers),
            )
        else:  # a late duplicate, after the first was answered
            first = await self._send("POST", url, data=data, headers=self.headers)
            second = None
            if first is not None:
                second = await self._send("POST", url, data=data, headers=self.headers)
        if first is None or second is None:
            # One 200 shows the reader the answer was taken; the other's failure is already
            # an error of the run.
            return first if first is not None else second
        if shown_in(first.text) != shown_in(second.text):
            self._error(f"the two submits of {data['entry']} were answered differently")
            return None
        return first

    async def _submit(self, shown: Shown, answer: str) -> httpx.Response | None:
        data = {"entry": shown.entry, "answer": answer, "duration_ms": "900"}
        if self.rng.random() < self.plan.double_share:
            return await self._post_twice(data)
        return await self._send("POST", f"{self.base}/answer", data=data, headers=self.headers)

    async def _image_sha256(self, shown: Shown) -> str | None:
        response = await self._send("GET", f"{self.base}/image/{shown.entry}")
        return hashlib.sha256(response.content).hexdigest() if response else None

    async def run(self) -> None:
        if self.plan.think_s:
            # Readers open the study over one think time, as people arriving do, not all in
            # the same millisecond: otherwise every reader's first image waits behind 200
            # first visits at once, and that start-up burst, not the steady load, is the p99.
            await asyncio.sleep(random.uniform(0.0, self.plan.think_s))
        page = await self._send("GET", self.base)
        if page is None:
            return
        token = CSRF_RE.search(page.text)
        if token is None and not self.plan.baseline:
            self._error(f"no CSRF token on the reading page: {page.text[:200]!r}")
            return
        self.headers = {"HX-Request": "true", "X-CSRF-Token": token.group(1) if token else ""}
        shown = shown_in(page.text)
        for _ in range(self.plan.answers):
            if shown is None:
                self._error("no image to answer on the page")
                return
            check = self.rng.random() < self.plan.image_check_share
            started = time.perf_counter()
            sha = await self._image_sha256(shown) if check else None
            step = time.perf_counter() - started
            answer = self.rng.choice(ANSWERS)
            if self.plan.think_s:
                # Its own generator: the answers and doubles stay those of a run without pauses.
                await asyncio.sleep(self.plan.think_s * random.uniform(0.5, 1.5))
            started = time.perf_counter()
            response = await self._submit(shown, answer)
            if response is None:
                return
            self.log.steps.append(step + time.perf_counter() - started)
            self.log.accepted.append(Accepted(self.index, shown.entry, shown.position, answer, sha))
            following = shown_in(response.text)
            if _skipped(shown, following):
                self._error(f"after {shown} the server showed {following}")
                return
            shown = following


def _skipped(shown: Shown, following: Shown | None) -> bool:
    """Whether the page after an accepted answer is not the next position."""
    if following is None or following.position is None or shown.position is None:
        return False
    return following.position != shown.position + 1


async def _restarter(
    server: ServerControl, plan: LoadPlan, log: LoadLog, finished: asyncio.Event
) -> None:
    for restart in plan.restarts:
        target = max(1, math.ceil(restart.at * plan.total))
        while len(log.accepted) < target:
            if finished.is_set():
                return
            await asyncio.sleep(0.01)
        old, before, started = server.generations[-1], len(log.accepted), time.monotonic()
        # In a thread: the readers keep running, see the connection errors and back off.
        stopped = await asyncio.to_thread(server.stop, restart.signal)
        new = await asyncio.to_thread(server.start)
        log.restarts.append(
            RestartRecord(
                signal=restart.signal.name,
                accepted_before=before,
                down_s=stopped - started + new.ready_after_s,
                old_pid=old.pid,
                new_pid=new.pid,
                old_workers=old.worker_pids,
                new_workers=new.worker_pids,
            )
        )


async def run_load(
    url: str, study: LoadStudy, plan: LoadPlan, server: ServerControl | None = None
) -> LoadLog:
    """All readers at once against ``url``; ``server`` is restarted as ``plan`` says."""
    log = LoadLog()
    clients = [
        httpx.AsyncClient(
            base_url=url,
            cookies={"sb_session": cookie, "sb_csrf": f"load-nonce-{i:012d}"},
            timeout=httpx.Timeout(60, connect=10),
        )
        for i, cookie in enumerate(study.cookies[: plan.readers])
    ]
    finished = asyncio.Event()
    restarts = asyncio.create_task(
        _restarter(server, plan, log, finished) if server and plan.restarts else asyncio.sleep(0)
    )
    started = time.perf_counter()
    try:
        await asyncio.gather(*(Reader(c, i, study, plan, log).run() for i, c in enumerate(clients)))
        log.seconds = time.perf_counter() - started
    finally:
        finished.set()
        await restarts
        for client in clients:
            await client.aclose()
    return log
