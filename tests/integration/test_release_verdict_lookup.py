"""An image set's release verdict is its newest finished privacy job's, found among many jobs
(the lookup is a query, not a scan of every job's JSON), and only among the viewer's jobs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from support import make_user

from app.auth.service import Principal
from app.db import session_scope
from app.imagesets.release import latest_release_verdict
from app.models import ImageSet, Job, JobStatus, User


def _job(owner: int, set_id: int, status: JobStatus, passes: bool) -> Job:
    result: dict[str, Any] | None = None
    if status is JobStatus.succeeded:
        reason = f"set {set_id}: {'passes' if passes else 'fails'}"
        result = {
            "image_set_id": set_id,
            "alpha": 0.05,
            "release": {"passes": passes, "reasons": [reason]},
        }
    job = Job(type="nearest_neighbours", queue="cpu", params={"image_set_id": set_id})
    job.owner_id, job.status, job.result = owner, status, result
    return job


def _principal(db: Any, username: str) -> Principal:
    user = db.scalars(select(User).where(User.username == username)).one()
    return Principal(user=user, session=SimpleNamespace(study_id=None))


def test_the_newest_finished_check_of_the_set_among_the_viewers_jobs(sqlite_env) -> None:  # type: ignore[no-untyped-def]
    alice = make_user("alice", "alice-password", "researcher")
    bob = make_user("bob", "bob-password", "researcher")
    with session_scope() as db:
        sets = [ImageSet(name=f"Set {i}", owner_id=alice) for i in range(3)]
        db.add_all(sets)
        db.flush()
        a, b, c = (s.id for s in sets)
        db.add_all(
            [
                _job(alice, a, JobStatus.succeeded, passes=False),
                _job(alice, b, JobStatus.succeeded, passes=True),
                _job(alice, a, JobStatus.succeeded, passes=True),  # newest finished of set a
                _job(alice, a, JobStatus.failed, passes=False),
                _job(alice, a, JobStatus.running, passes=False),
                _job(bob, a, JobStatus.succeeded, passes=False),  # bob's, newer still
                *(_job(alice, b, JobStatus.succeeded, passes=False) for _ in range(50)),
            ]
        )
        db.flush()
        newest_a = max(
            j.id
            for j in db.scalars(select(Job).where(Job.owner_id == alice))
            if j.result and j.result["image_set_id"] == a
        )
        seen = latest_release_verdict(db, _principal(db, "alice"), a)
        assert seen is not None
        assert seen["job_id"] == newest_a and seen["passes"] is True and seen["alpha"] == 0.05
        assert seen["reasons"] == [f"set {a}: passes"] and seen["max_share"] is None
        assert latest_release_verdict(db, _principal(db, "alice"), b)["passes"] is False
        assert latest_release_verdict(db, _principal(db, "alice"), c) is None
        by_bob = latest_release_verdict(db, _principal(db, "bob"), a)
        assert by_bob is not None and by_bob["passes"] is False
        # No viewer (a worker, the CLI): every owner's jobs count.
        assert latest_release_verdict(db, None, a)["job_id"] > newest_a
