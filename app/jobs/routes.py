"""Job list, launch form, job page with live progress, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth.service import Principal
from app.deps import DbDep, Researcher
from app.jobs import service
from app.jobs.specs import JOB_TYPES, QUEUES, SpecError, image_stats_spec
from app.models import Job
from app.web.templating import redirect, render
from ml.data.collections import available_collections

router = APIRouter(prefix="/jobs")


def _visible_owner(principal: Principal) -> int | None:
    return None if principal.is_admin else principal.user.id


def _job_for(db: DbDep, job_id: int, principal: Principal) -> Job:
    job = service.get_job(db, job_id)
    if not principal.is_admin and job.owner_id != principal.user.id:
        # Same answer as a missing job: ids of other people's jobs are not confirmed.
        raise service.JobNotFound(job_id)
    return job


def _form_context(errors: dict[str, str] | None = None, values: dict[str, str] | None = None):
    return {
        "collections": available_collections(),
        "queues": QUEUES,
        "job_types": JOB_TYPES,
        "errors": errors or {},
        "values": values or {},
    }


@router.get("")
def job_list(request: Request, db: DbDep, principal: Researcher) -> Response:
    jobs = service.list_jobs(db, owner_id=_visible_owner(principal))
    context = {"jobs": jobs, "live": any(not j.status.finished for j in jobs), **_form_context()}
    if request.headers.get("hx-request"):
        return render(request, "jobs/list.html", context, block="job_table")
    return render(request, "jobs/list.html", context)


@router.post("")
def launch(
    request: Request,
    db: DbDep,
    principal: Researcher,
    collection: Annotated[str, Form(max_length=100)] = "",
    queue: Annotated[str, Form(max_length=10)] = "cpu",
) -> Response:
    try:
        spec = image_stats_spec(collection, queue)
    except SpecError as exc:
        jobs = service.list_jobs(db, owner_id=_visible_owner(principal))
        values = {"collection": collection, "queue": queue}
        context = {"jobs": jobs, "live": False, **_form_context({exc.field: exc.message}, values)}
        return render(request, "jobs/list.html", context, status_code=422)
    job = service.submit(db, spec, owner_id=principal.user.id)
    return redirect(request, f"/jobs/{job.id}", flash=f"Job {job.id} queued.")


@router.get("/{job_id}")
def job_page(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    job = _job_for(db, job_id, principal)
    if request.headers.get("hx-request"):
        return render(request, "jobs/detail.html", {"job": job}, block="job_status")
    return render(request, "jobs/detail.html", {"job": job})


@router.post("/{job_id}/cancel")
def cancel(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    job = _job_for(db, job_id, principal)
    if job.status.finished:
        return redirect(request, f"/jobs/{job.id}", flash="The job had already ended.")
    service.request_cancel(db, job)
    return redirect(request, f"/jobs/{job.id}", flash="Cancellation requested.")
