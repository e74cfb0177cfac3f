"""Server-side time of a study's results page with 20 readers x 500 images (10,000 answers).

Fills a fresh SQLite database with one study read to the end by every reader (bulk inserts of
the same rows the reading flow writes: images, study items, readers, schedule entries,
answers with confidence, reasons and times), then times the results page in process
(TestClient, no network): the first request after a new answer (cold: the statistics are
computed for the new state, the answers added since the last state read), repeated requests
with nothing new (warm: the statistics come from the cache keyed by the study's state), and,
for reference, the first page of a process (every cache cleared, every answer read), p50 / p95
beside /healthz measured in the same run.
The target: the results page under 300 ms of server time at p95, cold (during a live study
every new answer makes the next page load cold) and warm; the first page of a process is
printed beside them and not part of the target.

    .venv/bin/python bench/results_page.py
    .venv/bin/python bench/results_page.py --readers 5 --images 40 --repeat 3   # CI size
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
USER, PASSWORD = "bench-researcher", "bench-password-1"
TARGET_MS = 300.0
REASONS = ("blurred ribs", "odd heart border", "no text marker", "too smooth", "artefact")


def configure(home: Path) -> None:
    """Settings are read once per process: point them at the fresh home before any import."""
    os.environ.update(
        SYNTHBENCH_HOME=str(home),
        SYNTHBENCH_DATABASE_URL=f"sqlite:///{home / 'bench.sqlite'}",
        SYNTHBENCH_BROKER_URL=f"sqla+sqlite:///{home / 'broker.sqlite'}",
        SYNTHBENCH_SECRET_KEY=SECRET,
    )
    sys.path.insert(0, str(ROOT))


def fill(
    readers: int, images: int, seed: int = 0, owner_id: int | None = None
) -> tuple[int, list[int]]:
    """A finished study; returns its id and the schedule entry ids left unanswered (one per
    reader, so the cold timings can add a new answer before each request). The study belongs
    to `owner_id` when given (bench/pages_at_scale.py fills other pages for the same user)."""
    from sqlalchemy import insert

    from app.auth.service import create_user
    from app.db import session_scope
    from app.domain.reader_study import StudyDesign
    from app.migrate import upgrade
    from app.models import (
        Answer,
        Image,
        ImageSet,
        Origin,
        Role,
        ScheduleEntry,
        Study,
        StudyImageSet,
        StudyItem,
        StudyReader,
    )
    from app.models.types import utcnow
    from app.studies.design import ReadingOptions, StoredDesign

    upgrade()
    rng = random.Random(seed)
    now = utcnow()
    with session_scope() as db:
        if owner_id is None:
            owner_id = create_user(db, username=USER, password=PASSWORD, role=Role.researcher).id
        image_set = ImageSet(name="real and ca-baseline-128px samples", owner_id=owner_id)
        db.add(image_set)
        db.flush()
        synthetic = [i % 2 == 0 for i in range(images)]
        db.execute(
            insert(Image),
            [
                {
                    "image_set_id": image_set.id,
                    "key": f"bench{i:06d}",
                    "origin": Origin.synthetic if synthetic[i] else Origin.real,
                    "label": "pneumonia" if i % 3 else "normal",
                    "source": "ca-baseline-128px" if synthetic[i] else None,
                    "original_name": f"bench{i:06d}.png",
                    "sha256": f"{i:064d}",
                    "source_format": "png",
                    "width": 64,
                    "height": 64,
                    "created_at": now,
                }
                for i in range(images)
            ],
        )
        design = StoredDesign(
            selection=StudyDesign(n_images=images, synthetic_share=0.5, seed=1),
            reading=ReadingOptions(confidence="1-5"),
        )
        study = Study(name="bench results", owner_id=owner_id, design=design.to_json())
        db.add(study)
        db.flush()
        db.add(StudyImageSet(study_id=study.id, image_set_id=image_set.id))
        image_ids = list(
            db.scalars(
                Image.__table__.select()
                .with_only_columns(Image.id)
                .where(Image.image_set_id == image_set.id)
                .order_by(Image.id)
            )
        )
        db.execute(insert(StudyItem), [{"study_id": study.id, "image_id": i} for i in image_ids])
        item_ids = list(
            db.scalars(
                StudyItem.__table__.select()
                .with_only_columns(StudyItem.id)
                .where(StudyItem.study_id == study.id)
                .order_by(StudyItem.id)
            )
        )
        # Items were inserted in image order, so item i shows image i.
        is_fake = dict(zip(item_ids, synthetic, strict=True))
        left_open = []
        for r in range(readers):
            user = create_user(db, username=f"bench-reader-{r}", password=None, role=Role.reader)
            reader = StudyReader(
                study_id=study.id,
                user_id=user.id,
                pseudonym=f"R{r + 1:02d}",
                reader_seed=r,
                started_at=now,
            )
            db.add(reader)
            db.flush()
            order = rng.sample(range(images), images)
            db.execute(
                insert(ScheduleEntry),
                [
                    {
                        "study_reader_id": reader.id,
                        "position": p,
                        "study_item_id": item_ids[i],
                        "practice": False,
                        "repeat": False,
                        "opaque_id": f"bench-{r}-{p}",
                    }
                    for p, i in enumerate(order)
                ],
            )
            entries = list(
                db.execute(
                    ScheduleEntry.__table__.select()
                    .with_only_columns(ScheduleEntry.id, ScheduleEntry.study_item_id)
                    .where(ScheduleEntry.study_reader_id == reader.id)
                    .order_by(ScheduleEntry.position)
                )
            )
            left_open.append(entries[-1][0])
            answers: list[dict[str, Any]] = []
            for entry_id, item_id in entries[:-1]:
                truth_fake = is_fake[item_id]
                said_fake = truth_fake if rng.random() < 0.6 else not truth_fake
                answer = "fake" if said_fake else "real"
                if rng.random() < 0.05:
                    answer = "uncertain"
                answers.append(
                    {
                        "schedule_entry_id": entry_id,
                        "study_reader_id": reader.id,
                        "answer": answer,
                        "confidence": float(rng.randint(1, 5)),
                        "reason": rng.choice(REASONS) if answer != "real" else None,
                        "shown_at": now,
                        "answered_at": now + timedelta(seconds=len(answers) * 4),
                        "duration_ms": rng.randint(800, 15000),
                    }
                )
            db.execute(insert(Answer), answers)
        return study.id, left_open


def add_answer(entry_id: int) -> None:
    """What a reader's submit writes: one more answer, so the study's state changes."""
    from app.db import session_scope
    from app.models import Answer, ScheduleEntry
    from app.models.types import utcnow

    with session_scope() as db:
        entry = db.get(ScheduleEntry, entry_id)
        assert entry is not None
        db.add(
            Answer(
                schedule_entry_id=entry.id,
                study_reader_id=entry.study_reader_id,
                answer="fake",
                confidence=3.0,
                reason="added by the bench",
                shown_at=utcnow(),
                duration_ms=2000,
            )
        )


def login(client: Any) -> None:
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the login page has no CSRF token"
    data = {"username": USER, "password": PASSWORD, "csrf_token": match.group(1)}
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text


def timed(
    client: Any, url: str, repeat: int, before: Callable[[int], None] | None = None
) -> list[float]:
    """Milliseconds per request; ``before(i)`` runs untimed ahead of request i."""
    times = []
    for i in range(repeat):
        if before is not None:
            before(i)
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, f"{url}: {response.status_code}"
    return times


def forget_everything(_: int) -> None:
    """Empty every cache the results page fills, as in a freshly started web process."""
    from app.domain import power, statistics
    from app.studies import results, results_cache

    results_cache.CACHE.clear()
    statistics._reader_summary_memo.cache_clear()
    results._plan.cache_clear()
    power.tost_power.cache_clear()
    power.plan_sample_size.cache_clear()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    configure(Path(tempfile.mkdtemp(prefix="synthbench-bench-")))
    from fastapi.testclient import TestClient

    from app.main import create_app

    started = time.perf_counter()
    study_id, left_open = fill(args.readers, args.images)
    n_answers = args.readers * (args.images - 1)
    print(
        f"{args.readers} readers x {args.images} images ({n_answers} answers) filled in "
        f"{time.perf_counter() - started:.1f} s; SQLite, in-process, {os.cpu_count()} CPUs"
    )
    url = f"/studies/{study_id}/results"
    with TestClient(create_app(), base_url="http://testserver") as client:
        login(client)
        client.get(url)  # imports the statistics modules and compiles the template, untimed
        # The imports' objects are collected once now, not by the first timed request's full
        # garbage collection (a one-off at start-up, not a cost of the page).
        gc.collect()
        for _ in range(2):
            client.get("/healthz")
        base = timed(client, "/healthz", args.repeat)
        base_p50 = statistics.median(base)
        # Cold: a new answer before each request, as while readers are at work.
        cold_n = min(args.repeat, len(left_open))
        cold = timed(client, url, cold_n, before=lambda i: add_answer(left_open[i]))
        warm = timed(client, url, args.repeat)
        reasons = timed(client, f"{url}/reasons?reasons_page=2", args.repeat)
        first = timed(client, url, max(1, args.repeat // 2), before=forget_everything)
    print(f"{'page':<40} {'p50 ms':>8} {'p95 ms':>8} {'p50 / healthz':>14}")
    print(f"{'/healthz (baseline)':<40} {base_p50:8.1f} {p95(base):8.1f} {1:14.1f}")
    rows = (
        ("results, cold (a new answer each time)", cold, "cold"),
        ("results, warm (nothing new)", warm, "warm"),
        ("reasons fragment, page 2", reasons, "warm"),
        ("results, first of a process (no cache)", first, None),
    )
    slow: dict[str, list[str]] = {"warm": [], "cold": []}
    for name, times, target in rows:
        p50 = statistics.median(times)
        print(f"{name:<40} {p50:8.1f} {p95(times):8.1f} {p50 / base_p50:14.1f}")
        if target is not None and p95(times) > TARGET_MS:
            slow[target].append(name)
    for target, label in (("warm", "warm pages"), ("cold", "cold pages, a new answer before each")):
        over = slow[target]
        verdict = f"over {TARGET_MS:.0f} ms at p95: {', '.join(over)}" if over else "met"
        print(f"target {TARGET_MS:.0f} ms server time ({label}): {verdict}")
    slow_any = slow["warm"] + slow["cold"]
    sys.exit(1 if slow_any else 0)


if __name__ == "__main__":
    main()
