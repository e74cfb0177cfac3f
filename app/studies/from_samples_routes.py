"""One click from a sampling job to a reader study with matched real images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.deps import DbDep, Researcher
from app.studies import from_samples as service
from app.web.templating import redirect

router = APIRouter()


# A plain def: writing the real set encodes every image, which must not block the event loop.
@router.post("/jobs/{job_id}/study")
def study_from_samples(
    request: Request,
    job_id: int,
    db: DbDep,
    principal: Researcher,
    name: Annotated[str, Form(max_length=1000)] = "",
    n_images: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    job = service.sample_job_for(db, job_id, principal)
    try:
        options = service.parse_study_options(name, n_images)
        made = service.create_study_from_samples(db, job=job, principal=principal, options=options)
    except service.FromSamplesError as exc:
        db.rollback()
        return redirect(request, f"/jobs/{job_id}", flash=str(exc), kind="error")
    db.commit()
    return redirect(request, f"/studies/{made.study.id}", flash=made.message)
