"""Job list, launch form, job page with live progress, cancel."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, Response

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


def _page_context(job: Job) -> dict[str, Any]:
    context: dict[str, Any] = {"job": job}
    if job.type == "train_gan":
        from app.gans.views import training_view

        context.update(training_view(job))
    return context


@router.get("/{job_id}")
def job_page(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    job = _job_for(db, job_id, principal)
    context = _page_context(job)
    if request.headers.get("hx-request"):
        return render(request, "jobs/detail.html", context, block="job_status")
    return render(request, "jobs/detail.html", context)


@router.get("/{job_id}/files/{path:path}")
def artefact(job_id: int, path: str, db: DbDep, principal: Researcher) -> Response:
    """A file from the job's artefact folder (grids, logs, checkpoints, reports)."""
    job = _job_for(db, job_id, principal)
    root = Path(job.artefact_dir or "").resolve()
    target = (root / path).resolve()
    # resolve() follows links, so neither '..' nor a symlink can leave the job's folder.
    if not job.artefact_dir or not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, f"Job {job_id} has no file {path!r}.")
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix in {".jsonl", ".json", ".txt", ".csv"}:
        media = "text/plain; charset=utf-8"
    return FileResponse(target, media_type=media, headers={"Cache-Control": "private, no-cache"})


@router.post("/{job_id}/cancel")
def cancel(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    job = _job_for(db, job_id, principal)
    if job.status.finished:
        return redirect(request, f"/jobs/{job.id}", flash="The job had already ended.")
    service.request_cancel(db, job)
    return redirect(request, f"/jobs/{job.id}", flash="Cancellation requested.")
