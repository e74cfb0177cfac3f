"""One populated installation for the access-control tests: two researchers with their own
datasets, GAN runs, image sets, studies, sweeps and jobs, a reader invited to each study and an
administrator, all made through the app's own services.

Researcher R1 gets the expensive objects (an imported dataset, a GAN trained and sampled for a
few steps, a finished artefact folder) because the matrix fills path parameters with R1's ids;
R2 gets the cheap ones, enough to show up in list pages and to own study B.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from evaluation_fixtures import gan_samples, import_cxr
from PIL import Image as PILImage
from sqlalchemy import select
from support import Env

from app.auth.service import Principal, accept_invite, create_invite, create_user, start_session
from app.auth.tokens import sign
from app.config import get_settings
from app.datasets.service import get_dataset
from app.db import session_scope
from app.domain.reader_study import StudyDesign
from app.evaluation.requests import NeighboursRequest
from app.evaluation.service import start_neighbours
from app.gans.options import gan_config
from app.gans.service import start_training
from app.imagesets.service import create_image_set
from app.jobs.image_stats import image_stats_spec
from app.jobs.service import submit
from app.models import Dataset, Image, Job, Role, ScheduleEntry, Study, StudyReader, User
from app.reading.service import ensure_schedule
from app.studies.design import ReadingOptions
from app.studies.service import create_study
from app.sweeps.service import start_sweep
from ml.data.collections import available_collections

PASSWORD = "access-matrix-password"
# Markers that appear in the names of each researcher's objects, so a list page that shows
# someone else's object is caught even where the object is not a link (form <select>s).
R1_MARK, R2_MARK = "Alpha-R1", "Bravo-R2"
SWEEP_FORM = {
    "kind": "grid",
    "resolutions": "32",
    "classes": "2",
    "per_class": "2",
    "gan_preset": "tiny-cpu",
    "kimg": "0.064",
    "tick_kimg": "0.032",
    "snapshot_ticks": "1",
    "draw": "6",
    "classifier_preset": "tiny-cpu",
    "epochs": "1",
    "queue": "cpu",
}


@dataclass
class Holdings:
    """What one researcher owns (ids), for filling URLs and checking list pages."""

    user_id: int
    dataset: int
    train_job: int
    job: int  # a plain queued job
    image_set: int
    image: int  # an image of `image_set`
    study: int
    sweep: int


@dataclass
class World:
    env: Env
    r1: Holdings
    r2: Holdings
    admin_id: int
    reader_a: int  # invited to R1's study (study A)
    reader_b: int  # invited to R2's study (study B)
    sample_job: int  # R1's finished sampling job
    neighbours_job: int  # R1's queued privacy job
    artefact: str  # a file in the artefact folder of R1's training job
    opaque_id: str  # reader A's first image in study A

    def user_and_scope(self, who: str) -> tuple[int, int | None] | None:
        """The user behind a principal name and the study their session is limited to."""
        return {
            "anonymous": None,
            "reader_a": (self.reader_a, self.r1.study),
            "reader_b": (self.reader_b, self.r2.study),
            "r1": (self.r1.user_id, None),
            "r2": (self.r2.user_id, None),
            "admin": (self.admin_id, None),
        }[who]

    def session_cookie(self, who: str) -> str | None:
        """A fresh signed session cookie: one per request, so a request that ends its session
        (logout) or replaces it (accepting an invitation) cannot disturb the next one."""
        found = self.user_and_scope(who)
        if found is None:
            return None
        user_id, scope = found
        with session_scope() as db:
            user = db.get(User, user_id)
            assert user is not None
            token, _ = start_session(db, user, hours=1, study_id=scope)
        return sign(get_settings().resolved_secret_key(), "session", token)

    def fresh_invite_token(self) -> str:
        """An unused invitation to study A (accepting one consumes it)."""
        with session_scope() as db:
            study, owner = db.get(Study, self.r1.study), db.get(User, self.r1.user_id)
            assert study is not None and owner is not None
            token, _ = create_invite(db, study=study, created_by=owner, hours=1)
        return token


def _principal(db, user_id: int) -> Principal:  # type: ignore[no-untyped-def]
    user = db.get(User, user_id)
    _, web_session = start_session(db, user, hours=1)
    return Principal(user=user, session=web_session)


def _study_zip() -> bytes:
    """The 16 demo X-rays as small PNGs: the first half real, the second half "synthetic"
    (a manifest says so), enough for a study of eight images."""
    cxr = available_collections()["paediatric-cxr"]
    rows = ["file,source,label"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i, (path, label) in enumerate(zip(cxr.files, cxr.labels, strict=True)):
            with PILImage.open(path) as im:
                small = im.convert("L").resize((48, 48))
            png = io.BytesIO()
            small.save(png, format="PNG")
            archive.writestr(f"img{i:02d}.png", png.getvalue())
            rows.append(f"img{i:02d}.png,{'real' if i < 8 else 'synthetic'},{label}")
        archive.writestr("manifest.csv", "\n".join(rows) + "\n")
    return out.getvalue()


def _study(owner_id: int, mark: str) -> tuple[int, int]:
    """(image set id, study id): an uploaded set and a study of eight of its images."""
    with session_scope() as db:
        image_set = create_image_set(
            db,
            owner_id=owner_id,
            name=f"{mark} study images",
            default_origin=None,
            upload_path_or_file=io.BytesIO(_study_zip()),
        )
        set_id = image_set.id
        owner = db.get(User, owner_id)
        design = StudyDesign(n_images=8, synthetic_share=0.5, stratify_by_source=False)
        study = create_study(
            db,
            owner=owner,
            name=f"{mark} study",
            instructions="Real or synthetic?",
            image_set_ids=[set_id],
            design=design,
            reading=ReadingOptions(reason_required=False),
        )
        return set_id, study.id


def _invited_reader(study_id: int, owner_id: int) -> int:
    with session_scope() as db:
        study, owner = db.get(Study, study_id), db.get(User, owner_id)
        token, _ = create_invite(db, study=study, created_by=owner, hours=1, label="invited")
        reader, _ = accept_invite(db, token)
        return reader.id


def _first_opaque_id(study_id: int, reader_id: int) -> str:
    with session_scope() as db:
        study = db.get(Study, study_id)
        study_reader = db.scalar(
            select(StudyReader).where(
                StudyReader.study_id == study_id, StudyReader.user_id == reader_id
            )
        )
        ensure_schedule(db, study, study_reader)
        db.flush()
        opaque = db.scalar(
            select(ScheduleEntry.opaque_id)
            .where(ScheduleEntry.study_reader_id == study_reader.id)
            .order_by(ScheduleEntry.position)
            .limit(1)
        )
    assert opaque is not None
    return opaque


def _plain_job(owner_id: int) -> int:
    with session_scope() as db:
        return submit(db, image_stats_spec("paediatric-cxr", "cpu"), owner_id=owner_id).id


def _sweep(owner_id: int, dataset_id: int, mark: str) -> int:
    with session_scope() as db:
        values = {**SWEEP_FORM, "dataset": str(dataset_id), "name": f"{mark} sweep"}
        return start_sweep(db, _principal(db, owner_id), values).id


def _queued_training(owner_id: int, dataset_id: int) -> int:
    """A training job row that no worker runs: enough for lists and the compare page."""
    with session_scope() as db:
        dataset = db.get_one(Dataset, dataset_id)
        config = gan_config({}, preset="tiny-cpu", resolutions=(32,))
        return start_training(db, owner_id=owner_id, dataset=dataset, config=config, queue="cpu").id


def _first_image(image_set_id: int) -> int:
    with session_scope() as db:
        found = db.scalar(select(Image.id).where(Image.image_set_id == image_set_id).limit(1))
    assert found is not None
    return found


def _researcher(username: str) -> int:
    with session_scope() as db:
        return create_user(db, username=username, password=PASSWORD, role=Role.researcher).id


def _r1(env: Env) -> tuple[Holdings, int, int, str]:
    """R1's holdings, plus its sampling job, privacy job and one artefact file name."""
    user = _researcher("r1")
    dataset = import_cxr(env, user, name=f"{R1_MARK} CXR")
    train_job, synthetic_set = gan_samples(user, dataset)
    with session_scope() as db:
        sample_job = db.scalar(select(Job.id).where(Job.type == "sample", Job.owner_id == user))
        request = NeighboursRequest(synthetic_set)
        principal = _principal(db, user)
        neighbours = start_neighbours(db, principal, get_dataset(db, dataset, principal), request)
        neighbours_id = neighbours.id
        artefact_dir = Path(db.get_one(Job, train_job).artefact_dir or "")
    _, study = _study(user, R1_MARK)
    holdings = Holdings(
        user_id=user,
        dataset=dataset,
        train_job=train_job,
        job=_plain_job(user),
        image_set=synthetic_set,
        image=_first_image(synthetic_set),
        study=study,
        sweep=_sweep(user, dataset, R1_MARK),
    )
    assert sample_job is not None and (artefact_dir / "run.json").is_file()
    return holdings, sample_job, neighbours_id, "run.json"


def _r2(env: Env) -> Holdings:
    user = _researcher("r2")
    dataset = import_cxr(env, user, name=f"{R2_MARK} CXR")
    study_set, study = _study(user, R2_MARK)
    return Holdings(
        user_id=user,
        dataset=dataset,
        train_job=_queued_training(user, dataset),
        job=_plain_job(user),
        image_set=study_set,
        image=_first_image(study_set),
        study=study,
        sweep=_sweep(user, dataset, R2_MARK),
    )


def build_world(env: Env) -> World:
    r1, sample_job, neighbours_job, artefact = _r1(env)
    r2 = _r2(env)
    with session_scope() as db:
        admin = create_user(db, username="admin", password=PASSWORD, role=Role.admin).id
    reader_a = _invited_reader(r1.study, r1.user_id)
    reader_b = _invited_reader(r2.study, r2.user_id)
    return World(
        env=env,
        r1=r1,
        r2=r2,
        admin_id=admin,
        reader_a=reader_a,
        reader_b=reader_b,
        sample_job=sample_job,
        neighbours_job=neighbours_job,
        artefact=artefact,
        opaque_id=_first_opaque_id(r1.study, reader_a),
    )
