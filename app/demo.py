"""Demo content: accounts, a study with an invitation, a finished job, all on real images."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.auth.service import create_invite, create_user
from app.db import session_scope
from app.jobs.service import JobSpec, create_job
from app.jobs.specs import image_stats_spec
from app.migrate import upgrade
from app.models import Job, JobStatus, Role, Study, StudyReader, User
from ml.progress import ProgressFn, no_progress

# Known passwords are fine for a laptop demo and are printed at start-up; never use in production.
DEMO_USERS: dict[str, tuple[str, Role]] = {
    "admin": ("demo-admin-pw", Role.admin),
    "researcher": ("demo-researcher-pw", Role.researcher),
    "reader": ("demo-reader-pw", Role.reader),
}
DEMO_STUDY = "Demo: paediatric chest X-rays, real or synthetic?"


def _run_demo_job(spec: JobSpec, owner_id: int) -> None:
    from workers.runner import execute

    with session_scope() as db:
        if db.scalar(select(Job).where(Job.type == spec.type, Job.status == JobStatus.succeeded)):
            return
        job_id = create_job(db, spec, owner_id=owner_id).id
    # In-process: the demo must show a finished job even before a worker starts.
    execute(job_id, worker="demo-loader")


def load_demo(progress: ProgressFn = no_progress) -> dict[str, Any]:
    steps = 4
    progress(0, steps, "migrating database")
    upgrade()
    progress(1, steps, "creating demo accounts")
    with session_scope() as db:
        users: dict[str, User] = {}
        for username, (password, role) in DEMO_USERS.items():
            user = db.scalar(select(User).where(User.username == username))
            users[username] = user or create_user(
                db, username=username, password=password, role=role
            )
        researcher = users["researcher"]
        progress(2, steps, "creating the demo reader study")
        study = db.scalar(select(Study).where(Study.name == DEMO_STUDY))
        if study is None:
            study = Study(
                name=DEMO_STUDY,
                instructions="Rate each image as real, fake (synthetic) or uncertain.",
                owner_id=researcher.id,
            )
            db.add(study)
            db.flush()
            db.add(StudyReader(study_id=study.id, user_id=users["reader"].id))
        # A fresh link every start: only hashes are stored, so an old link cannot be re-printed.
        token, _ = create_invite(
            db, study=study, created_by=researcher, hours=24 * 30, label="Demo reader"
        )
        invite_path = f"/invite/{token}"
        researcher_id = researcher.id
    progress(3, steps, "computing image statistics of the demo X-rays")
    _run_demo_job(image_stats_spec("paediatric-cxr"), researcher_id)
    progress(4, steps, "demo ready")
    return {"invite_link_path": invite_path}
