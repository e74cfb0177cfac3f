"""Many concurrent readers rating images over HTTP against the running app.

Prints ratings/s and p50/p99 answer latency for synthbench (uvicorn, SQLite by default) beside
a bare uvicorn endpoint measured in the same run, then checks the database: every answer
stored exactly once and attributed to the right reader.

    .venv/bin/python bench/reading_load.py --readers 50 --images 40
    .venv/bin/python bench/reading_load.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
ENTRY_RE = re.compile(r'data-entry="([^"]+)"')
CSRF_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(home: Path, database_url: str, readers: int, images: int) -> tuple[int, list[str]]:
    """A study with ``images`` scored images and ``readers`` readers; returns signed cookies."""
    os.environ.update(
        SYNTHBENCH_HOME=str(home),
        SYNTHBENCH_DATABASE_URL=database_url,
        SYNTHBENCH_SECRET_KEY=SECRET,
    )
    sys.path.insert(0, str(ROOT))
    from app.auth.service import create_user, start_session
    from app.auth.tokens import sign
    from app.db import session_scope
    from app.domain.blinding import canonical_png
    from app.domain.reader_study import StudyDesign
    from app.imagesets.storage import blinded_path
    from app.migrate import upgrade
    from app.models import Image, ImageSet, Origin, Role
    from app.studies.design import ReadingOptions
    from app.studies.service import assign_reader, create_study

    upgrade()
    rng = np.random.default_rng(0)
    cookies = []
    with session_scope() as db:
        owner = create_user(db, username="bench-owner", password=None, role=Role.researcher)
        image_set = ImageSet(name="bench", owner_id=owner.id)
        db.add(image_set)
        db.flush()
        for i in range(images * 2):
            key = f"bench{i:06d}"
            path = blinded_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(canonical_png(rng.random((64, 64), dtype=np.float32), size=128))
            db.add(
                Image(
                    image_set_id=image_set.id,
                    key=key,
                    origin=Origin.real if i % 2 else Origin.synthetic,
                    label=None,
                    source=None,
                    original_name=f"{key}.png",
                    sha256=f"{i:064d}",
                    source_format="png",
                    width=64,
                    height=64,
                )
            )
        db.flush()
        study = create_study(
            db,
            owner=owner,
            name="bench",
            instructions="",
            image_set_ids=[image_set.id],
            design=StudyDesign(n_images=images, synthetic_share=0.5, seed=1),
            reading=ReadingOptions(reason_required=False),
        )
        for r in range(readers):
            user = create_user(db, username=f"bench-reader-{r}", password=None, role=Role.reader)
            assign_reader(db, study, user.id)
            token, _ = start_session(db, user, hours=2)
            cookies.append(sign(SECRET, "session", token))
        return study.id, cookies


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    sent: list[tuple[int, str, str]] = field(default_factory=list)  # reader, entry, answer
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def reader_loop(
    client: httpx.AsyncClient, reader: int, study_id: int, images: int, run: Run, bare: bool
) -> None:
    page = await client.get(f"/read/{study_id}")
    entry = ENTRY_RE.search(page.text)
    token = CSRF_RE.search(page.text)
    if not entry or (not token and not bare):
        run.errors.append(f"reader {reader}: no entry on the reading page ({page.status_code})")
        return
    headers = {"HX-Request": "true", "X-CSRF-Token": token.group(1) if token else ""}
    current = entry.group(1)
    for _ in range(images):
        answer = random.choice(("real", "fake", "uncertain"))
        started = time.perf_counter()
        response = await client.post(
            f"/read/{study_id}/answer",
            data={"entry": current, "answer": answer, "duration_ms": "900"},
            headers=headers,
        )
        run.latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            run.errors.append(f"reader {reader}: {response.status_code} {response.text[:120]}")
            return
        run.sent.append((reader, current, answer))
        following = ENTRY_RE.search(response.text)
        if following is None:
            break
        current = following.group(1)


async def drive(url: str, study_id: int, cookies: list[str], images: int, bare: bool) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=len(cookies) + 5)
    clients = [
        httpx.AsyncClient(
            base_url=url,
            cookies={"sb_session": c, "sb_csrf": f"bench-nonce-{i:012d}"},
            limits=limits,
            timeout=60,
        )
        for i, c in enumerate(cookies)
    ]
    started = time.perf_counter()
    await asyncio.gather(
        *(reader_loop(c, i, study_id, images, run, bare) for i, c in enumerate(clients))
    )
    run.seconds = time.perf_counter() - started
    for c in clients:
        await c.aclose()
    return run


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def summary(name: str, run: Run) -> str:
    lat = sorted(run.latencies) or [float("nan")]
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000
    rate = len(run.latencies) / run.seconds if run.seconds else 0
    return f"{name:<24} {rate:9.0f} ratings/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"


def verify(run: Run, readers: int, images: int) -> list[str]:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import Answer, ScheduleEntry, StudyReader, User

    problems = []
    with session_scope() as db:
        stored = db.execute(
            select(User.username, ScheduleEntry.opaque_id, Answer.answer)
            .join(ScheduleEntry, ScheduleEntry.id == Answer.schedule_entry_id)
            .join(StudyReader, StudyReader.id == Answer.study_reader_id)
            .join(User, User.id == StudyReader.user_id)
        ).all()
        total = db.scalar(select(func.count()).select_from(Answer))
    expected = {(f"bench-reader-{r}", e, a) for r, e, a in run.sent}
    got = {tuple(row) for row in stored}
    if total != len(run.sent):
        problems.append(f"{total} answers stored for {len(run.sent)} sent")
    if got != expected:
        problems.append(f"{len(expected - got)} lost, {len(got - expected)} unexpected")
    if len(run.sent) != readers * images:
        problems.append(f"{len(run.sent)} of {readers * images} ratings were sent")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="synthbench-bench-"))
    database_url = args.database_url or f"sqlite:///{home / 'bench.sqlite'}"
    study_id, cookies = prepare(home, database_url, args.readers, args.images)

    env = {**os.environ, "SYNTHBENCH_BROKER_URL": f"sqla+sqlite:///{home / 'broker.sqlite'}"}
    app_port, bare_port = free_port(), free_port()
    app_cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--port",
        str(app_port),
        "--no-embedded-worker",
        "--web-workers",
        str(args.web_workers),
    ]
    bare_cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--port",
        str(bare_port),
        "--workers",
        str(args.web_workers),
        "--log-level",
        "warning",
    ]
    servers = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for cmd in (app_cmd, bare_cmd)
    ]
    try:
        wait_ready(f"http://127.0.0.1:{app_port}/healthz", servers[0])
        wait_ready(f"http://127.0.0.1:{bare_port}/", servers[1])
        bare = asyncio.run(
            drive(f"http://127.0.0.1:{bare_port}", study_id, cookies, args.images, True)
        )
        ours = asyncio.run(
            drive(f"http://127.0.0.1:{app_port}", study_id, cookies, args.images, False)
        )
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    dialect = database_url.split(":", 1)[0]
    print(
        f"{args.readers} readers x {args.images} images, {args.web_workers} web worker(s), "
        f"{dialect}, {os.cpu_count()} CPUs (client on the same machine)"
    )
    print(summary("bare uvicorn endpoint", bare))
    print(summary("synthbench answer POST", ours))
    if bare.latencies and ours.latencies:
        ratio = (len(ours.latencies) / ours.seconds) / (len(bare.latencies) / bare.seconds)
        print(f"throughput ratio synthbench / bare: {ratio:.2f}")
    problems = ours.errors[:5] + verify(ours, args.readers, args.images)
    print("integrity: OK (0 lost, 0 duplicated, all attributed)" if not problems else "PROBLEMS:")
    for p in problems:
        print("  -", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
