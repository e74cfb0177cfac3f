"""Demo content: accounts, a study with an invitation, and a pipeline of real jobs on real images.

`load_demo` does only what takes a moment (accounts, the two small image sets, the study and
its invitation, the simulated ratings) and queues the first jobs, so the server answers at
once. The rest runs through the ordinary job queue on the embedded worker while the user
watches: `advance_demo` looks at what is done and queues every step whose inputs now exist,
and runs again after each demo job succeeds (`continue_demo`, from the jobs' success hook).
It is idempotent: a restarted demo picks up where it stopped, and a failed step is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import create_invite, create_user
from app.config import get_settings
from app.datasets.options import parse_import_options, parse_subset_options
from app.datasets.service import find_by_name, start_import, start_subset
from app.db import session_scope
from app.demo.content import PCA_SIZE, PCA_SOURCE, real_zip, simulated_ratings_csv, synthetic_zip
from app.demo.datasets import write_folder_dataset
from app.demo.digits import demo_digits
from app.demo.evaluation import demo_evaluation
from app.demo.gan import demo_gan
from app.demo.marker import read_marker, write_marker
from app.demo.state import active_or_done
from app.demo.workspace import demo_workspace
from app.domain.reader_study import StudyDesign
from app.imagesets.service import create_image_set
from app.jobs.image_stats import image_stats_spec
from app.jobs.service import JobSpec, commit_and_enqueue, create_job
from app.migrate import upgrade
from app.models import Dataset, DatasetStatus, ImageSet, Job, Role, Study, User
from app.studies.design import DisplayOptions, ReadingOptions
from app.studies.imports import import_ratings
from app.studies.service import assign_reader, create_study
from ml.data.collections import Collection, available_collections
from ml.progress import ProgressFn, no_progress

# Known passwords are fine for a laptop demo and are printed at start-up; never use in production.
DEMO_USERS: dict[str, tuple[str, Role]] = {
    "admin": ("demo-admin-pw", Role.admin),
    "researcher": ("demo-researcher-pw", Role.researcher),
    "reader": ("demo-reader-pw", Role.reader),
}
DEMO_STUDY = "Demo: paediatric chest X-rays, real or synthetic?"
DEMO_REAL_SET = "Demo real: paediatric chest X-rays (16)"
DEMO_SYNTHETIC_SET = f"Demo synthetic: PCA baseline ({PCA_SOURCE})"
DEMO_SIMULATED = "Example statistics: SIMULATED readers (not real answers)"
DEMO_DATASET = "Demo: paediatric chest X-rays (16 real images)"
DEMO_SUBSET = "Demo: 2 training images per class"


def _queue_demo_job(spec: JobSpec, owner_id: int) -> None:
    with session_scope() as db:
        if active_or_done(db, owner_id, spec.type):
            return
        commit_and_enqueue(db, create_job(db, spec, owner_id=owner_id))


def _demo_datasets(researcher_id: int, collection: Collection) -> int:
    """The 16 X-rays as a folder-per-class dataset at 32 and 64 px, and (once it is ready) one
    benchmark subset, each imported by a real job on the queue. Returns the dataset id."""
    with session_scope() as db:
        dataset = find_by_name(db, DEMO_DATASET)
        if dataset is None or dataset.status is DatasetStatus.failed:
            # Written only when an import starts: this runs after every demo job, and a
            # rewritten patients.csv could be read half-written by an import in progress.
            source = write_folder_dataset(
                collection, get_settings().resolved_import_roots()[0] / "paediatric-cxr"
            )
            dataset, job = start_import(
                db,
                owner_id=researcher_id,
                name=DEMO_DATASET,
                source=source,
                options=parse_import_options("folder", resolutions="32,64"),
                description=collection.attribution,
            )
            commit_and_enqueue(db, job)
        dataset_id = dataset.id
    with session_scope() as db:
        parent = db.get(Dataset, dataset_id)
        subset = find_by_name(db, DEMO_SUBSET)
        if parent.status is DatasetStatus.ready and (
            subset is None or subset.status is DatasetStatus.failed
        ):
            start_subset(  # commits and enqueues
                db,
                owner_id=researcher_id,
                parent=parent,
                name=DEMO_SUBSET,
                options=parse_subset_options("samples_per_class", 2),
            )
    return dataset_id


def _image_set(
    db: Session, owner_id: int, name: str, make_zip: Callable[[], BinaryIO], description: str
) -> int:
    existing = db.scalar(select(ImageSet).where(ImageSet.name == name))
    if existing is not None:
        return existing.id
    return create_image_set(
        db,
        owner_id=owner_id,
        name=name,
        default_origin=None,
        upload_path_or_file=make_zip(),
        description=description,
    ).id


def _demo_study(db: Session, researcher: User, reader: User, set_ids: list[int]) -> Study:
    study = db.scalar(select(Study).where(Study.name == DEMO_STUDY))
    if study is not None:
        return study
    study = create_study(
        db,
        owner=researcher,
        name=DEMO_STUDY,
        instructions=(
            "Half of these images are real paediatric chest X-rays, half were generated. "
            "Press R (real), F (fake) or U (uncertain), 1-5 for confidence, Enter to submit."
        ),
        image_set_ids=set_ids,
        design=StudyDesign(
            n_images=12,
            synthetic_share=0.5,
            stratify_by_label=True,
            stratify_by_source=True,
            repeat_share=0.17,
            practice_images=2,
            seed=2026,
        ),
        reading=ReadingOptions(confidence="1-5", reason_required=True),
        # At the PCA baseline's native side (the real films are matched down to it), not
        # enlarged to the default 512 px.
        display_options=DisplayOptions(size=PCA_SIZE),
    )
    assign_reader(db, study, reader.id)
    return study


def load_demo(progress: ProgressFn = no_progress) -> dict[str, Any]:
    """The quick part of the demo, then its first jobs queued (see the module docstring)."""
    steps = 5
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
        researcher_id = researcher.id
    write_marker(researcher_id)
    collection = available_collections()["paediatric-cxr"]
    progress(2, steps, "importing the real X-rays and sampling the PCA baseline")
    with session_scope() as db:
        real_id = _image_set(
            db, researcher_id, DEMO_REAL_SET, lambda: real_zip(collection), collection.attribution
        )
        fake_id = _image_set(
            db,
            researcher_id,
            DEMO_SYNTHETIC_SET,
            lambda: synthetic_zip(collection, 8, seed=7),
            "Samples of a class-conditional PCA generator fitted on the 16 demo X-rays: a "
            "baseline that can only blend its training images, so expect near-copies.",
        )
    progress(3, steps, "creating the demo reader study")
    with session_scope() as db:
        researcher, reader = db.get(User, researcher_id), users["reader"]
        study = _demo_study(db, researcher, db.merge(reader), [real_id, fake_id])
        # A fresh link every start: only hashes are stored, so an old link cannot be re-printed.
        token, _ = create_invite(
            db, study=study, created_by=researcher, hours=24 * 30, label="Demo reader"
        )
        invite_path = f"/invite/{token}"
        study_id = study.id
    progress(4, steps, "importing simulated ratings for the statistics example")
    with session_scope() as db:
        if db.scalar(select(Study).where(Study.name == DEMO_SIMULATED)) is None:
            import_ratings(
                db, owner_id=researcher_id, name=DEMO_SIMULATED, csv_text=simulated_ratings_csv()
            )
    progress(5, steps, "demo accounts and study ready; queuing the demo's jobs")
    state = advance_demo(researcher_id)
    return {"invite_link_path": invite_path, "study_id": study_id, **state}


def advance_demo(researcher_id: int) -> dict[str, Any]:
    """Queue every demo step whose inputs exist and that has not run; returns the ids known."""
    collection = available_collections()["paediatric-cxr"]
    _queue_demo_job(image_stats_spec("paediatric-cxr"), researcher_id)
    dataset_id = _demo_datasets(researcher_id, collection)
    gan_job_id = demo_gan(researcher_id, dataset_id)
    demo_evaluation(researcher_id, gan_job_id)
    sweep_id = demo_workspace(researcher_id, dataset_id, gan_job_id)
    digits = demo_digits(researcher_id)
    return {"dataset_id": dataset_id, "gan_job_id": gan_job_id, "sweep_id": sweep_id, **digits}


def continue_demo(job_id: int) -> None:
    """After a job succeeded: if it was the demo's, queue the demo steps it unblocked."""
    researcher_id = read_marker()
    if researcher_id is None:
        return  # not a demo installation
    with session_scope() as db:
        job = db.get(Job, job_id)
        if job is None or job.owner_id != researcher_id:
            return
    advance_demo(researcher_id)
