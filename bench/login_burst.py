"""N readers sign in within one second against the real server (``synthbench serve``).

Each reader first opens the sign-in page (its CSRF cookie and token, not timed); then all N
sign-ins are sent, spread evenly over --spread-s seconds, no ramp. Prints sign-ins/s (N over
the time from the first send to the last reply), p50/p99 latency, 5xx count and uvicorn worker
restarts, beside two baselines measured in the same run on the same cores: argon2 alone (one
thread per core verifying the same hash) and a bare uvicorn endpoint doing the same check with
no database (bench/bare_login_app.py). The ratio says how much synthbench adds. Exits non-zero
if any sign-in failed or a worker restarted.

    .venv/bin/python bench/login_burst.py                      # 200 readers, 2 web workers
    .venv/bin/python bench/login_burst.py --readers 200 --workers 1
    .venv/bin/python bench/login_burst.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1/synthbench_burst  # created, dropped
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from load_server import (
    WORKER_PID_RE,
    Generation,
    ServerControl,
    bare_uvicorn,
)
from load_study import fresh_postgres
from sqlalchemy import make_url

PASSWORD = "burst-password-0123"
USER_PREFIX = "burst-reader-"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class BurstLog:
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def signed_in(self, status: int = 303) -> int:
        return sum(1 for s in self.statuses if s == status)

    def server_errors(self) -> int:
        return sum(1 for s in self.statuses if s >= 500)

    def rate(self) -> float:
        return self.signed_in() / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        lat = sorted(self.latencies)
        if not lat:
            return float("nan")
        if q == 0.5:
            return statistics.median(lat) * 1000
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000


def create_readers(count: int, password: str = PASSWORD) -> list[str]:
    """``count`` reader accounts with one password, in the database the settings point at."""
    from app.auth.passwords import hash_password
    from app.db import session_scope
    from app.models import Role, User

    # One hash shared by all: hashing 200 passwords here would take as long as the burst.
    shared = hash_password(password)
    names = [f"{USER_PREFIX}{i}" for i in range(count)]
    with session_scope() as db:
        db.add_all(
            User(username=name, display_name=name, password_hash=shared, role=Role.reader)
            for name in names
        )
    return names


async def _open_sign_in_page(client: httpx.AsyncClient, path: str, log: BurstLog) -> str | None:
    try:
        page = await client.get(path)
    except httpx.HTTPError as exc:
        log.errors.append(f"GET {path}: {exc!r}")
        return None
    token = CSRF_RE.search(page.text)
    return token.group(1) if token else ""


async def burst(
    url: str,
    usernames: list[str],
    password: str = PASSWORD,
    spread_s: float = 1.0,
    page_path: str = "/login",
) -> BurstLog:
    """Every user signs in once, the sends spread evenly over ``spread_s`` seconds."""
    log = BurstLog()
    clients = [
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(180, connect=60)) for _ in usernames
    ]
    try:
        tokens = await asyncio.gather(*(_open_sign_in_page(c, page_path, log) for c in clients))
        done: list[float] = []
        start = time.perf_counter() + 0.2  # every send scheduled before the first leaves
        count = len(usernames)

        async def sign_in(i: int, client: httpx.AsyncClient, token: str | None) -> None:
            if token is None:
                return
            await asyncio.sleep(max(0.0, start + spread_s * i / count - time.perf_counter()))
            sent = time.perf_counter()
            data = {"username": usernames[i], "password": password, "next": "/read"}
            try:
                response = await client.post("/login", data={**data, "csrf_token": token})
            except httpx.HTTPError as exc:
                log.errors.append(f"POST /login for {usernames[i]}: {exc!r}")
            else:
                log.statuses.append(response.status_code)
                log.latencies.append(time.perf_counter() - sent)
                if response.status_code != 303:
                    log.errors.append(f"{usernames[i]}: {response.status_code}")
            done.append(time.perf_counter())

        await asyncio.gather(
            *(sign_in(i, c, t) for i, (c, t) in enumerate(zip(clients, tokens, strict=True)))
        )
        log.seconds = (max(done) - start) if done else 0.0
    finally:
        for client in clients:
            await client.aclose()
    return log


def worker_restarts(generation: Generation) -> int:
    """Workers uvicorn started after the server was ready (each replaces one that died or
    missed its health check), plus ready workers no longer alive."""
    now = {int(p) for p in WORKER_PID_RE.findall(generation.log.read_text(errors="replace"))}
    gone = 0
    for pid in generation.worker_pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            gone += 1
    return max(len(now - generation.worker_pids), gone)


def argon2_alone(seconds: float = 1.5) -> float:
    """Checks/s of the same hash with one thread per core and nothing else: the ceiling."""
    from app.auth.passwords import check_password, default_concurrency, hash_password

    stored = hash_password(PASSWORD)
    counts: list[int] = []
    deadline = time.perf_counter() + seconds

    def spin() -> None:
        n = 0
        while time.perf_counter() < deadline:
            check_password(PASSWORD, stored)
            n += 1
        counts.append(n)

    threads = [threading.Thread(target=spin) for _ in range(default_concurrency())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def bare_server(workers: int) -> contextlib.AbstractContextManager[str]:
    from app.auth.passwords import hash_password

    return bare_uvicorn(
        "bench.bare_login_app:app", workers, {"BARE_LOGIN_HASH": hash_password(PASSWORD)}
    )


def configure(home: Path, database_url: str) -> dict[str, str]:
    os.environ.update(
        SYNTHBENCH_HOME=str(home),
        SYNTHBENCH_DATABASE_URL=database_url,
        SYNTHBENCH_BROKER_URL=f"sqla+sqlite:///{home / 'broker.sqlite'}",
        SYNTHBENCH_SECRET_KEY="burst-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    )
    from app.migrate import upgrade

    upgrade()
    return dict(os.environ)


def figures(name: str, log: BurstLog) -> str:
    return (
        f"{name:<22} {log.rate():7.1f} sign-ins/s   p50 {log.percentile_ms(0.5):7.0f} ms   "
        f"p99 {log.percentile_ms(0.99):7.0f} ms   ({log.signed_in()} of {len(log.statuses)} "
        f"signed in in {log.seconds:.1f} s, 5xx: {log.server_errors()})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--workers", "--web-workers", dest="workers", type=int, default=2)
    parser.add_argument("--spread-s", type=float, default=1.0, help="send all within this")
    parser.add_argument("--database-url", default=None, help="default: a SQLite file")
    parser.add_argument("--no-baseline", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    home = Path(tempfile.mkdtemp(prefix="synthbench-burst-"))
    database_url = args.database_url or f"sqlite:///{home / 'burst.sqlite'}"
    with contextlib.ExitStack() as stack:
        if database_url.startswith("postgresql"):
            stack.enter_context(fresh_postgres(database_url))
        server_env = configure(home, database_url)
        from app.db import get_engine

        stack.callback(lambda: get_engine().dispose())  # before the database is dropped
        names = create_readers(args.readers)
        alone = bare = None
        if not args.no_baseline:
            alone = argon2_alone()
            with bare_server(args.workers) as url:
                bare = asyncio.run(burst(url, names, spread_s=args.spread_s, page_path="/"))
        server = stack.enter_context(ServerControl(server_env, home, workers=args.workers))
        generation = server.generations[-1]
        log = asyncio.run(burst(server.url, names, spread_s=args.spread_s))
        restarts = worker_restarts(generation)
        server.stop()
    dialect = make_url(database_url).get_backend_name()
    print(
        f"{args.readers} sign-ins sent within {args.spread_s:g} s, {args.workers} uvicorn "
        f"workers, {dialect}, {os.cpu_count()} CPUs shared with the clients"
    )
    if alone is not None:
        print(f"{'argon2 alone':<22} {alone:7.1f} checks/s (one thread per core, no server)")
    if bare is not None:
        print(figures("bare argon2 endpoint", bare))
    print(figures("synthbench sign-in", log) + f", worker restarts: {restarts}")
    if bare is not None and bare.rate():
        print(f"ratio synthbench / bare endpoint: {log.rate() / bare.rate():.2f}")
    if alone:
        print(f"ratio synthbench / argon2 alone: {log.rate() / alone:.2f}")
    found = log.errors + ([f"{restarts} worker restarts"] if restarts else [])
    print("OK" if not found else f"PROBLEMS ({len(found)}):")
    for problem in found[:20]:
        print("  -", problem)
    print(f"(server logs in {home})")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
