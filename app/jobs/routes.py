"""Job list, launch form, job page with live progress, cancel, retry and clone."""

from __future__ import annotations

import mimetypes
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from app.auth.service import Principal
from app.deps import DbDep, Researcher
from app.jobs import clone, clone_checks, files, listing, service
from app.jobs.image_stats import image_stats_spec
from app.jobs.naming import copy_name
from app.jobs.params_table import params_table
from app.jobs.registry import JobPage, job_types, kind_of, resolve, title_of
from app.jobs.specs import QUEUES, SpecError
from app.models import Job, JobStatus
from app.models.types import utcnow
from app.web.templating import redirect, render
from ml.data.collections import available_collections

router = APIRouter(prefix="/jobs")


def _visible_owner(principal: Principal) -> int | None:
    return principal.visible_owner


def _job_for(db: DbDep, job_id: int, principal: Principal) -> Job:
    job = service.get_job(db, job_id)
    if not principal.can_see(job):
        # Same answer as a missing job: ids of other people's jobs are not confirmed.
        raise service.JobNotFound(job_id)
    return job


def _form_context(errors: dict[str, str] | None = None, values: dict[str, str] | None = None):
    return {
        "collections": available_collections(),
        "queues": QUEUES,
        "job_types": job_types(),
        "errors": errors or {},
        "values": values or {},
    }


def _list_context(
    db: DbDep, principal: Principal, page: int = 1, filters: listing.JobFilters | None = None
) -> dict[str, Any]:
    filters = filters or listing.JobFilters()
    owner = _visible_owner(principal)
    found = listing.job_page(db, visible_owner=owner, filters=filters, page=page)
    now = utcnow()
    return {
        "jobs": found.jobs,
        "listing": found,
        "filters": filters,
        "timings": {job.id: listing.row_timing(job, now) for job in found.jobs},
        "dataset_choices": listing.dataset_choices(db, owner),
        "owner_choices": listing.owner_choices(db) if principal.is_admin else [],
        "statuses": [s.value for s in JobStatus],
        "live": any(not j.status.finished for j in found.jobs),
    }


@router.get("")
def job_list(
    request: Request,
    db: DbDep,
    principal: Researcher,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    job_type: Annotated[str, Query(alias="type", max_length=50)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    dataset: Annotated[str, Query(max_length=20)] = "",
    owner: Annotated[str, Query(max_length=20)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    filters = listing.parse_filters(
        job_type=job_type,
        status=status,
        dataset=dataset,
        owner=owner,
        q=q,
        known_types=set(job_types()),
        may_filter_owner=principal.is_admin,
    )
    context = {**_list_context(db, principal, page, filters), **_form_context()}
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
    job_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        spec = image_stats_spec(collection, queue)
    except SpecError as exc:
        values = {"collection": collection, "queue": queue, "job_name": job_name}
        context = {
            **_list_context(db, principal),
            **_form_context({exc.field: exc.message}, values),
            "live": False,
        }
        return render(request, "jobs/list.html", context, status_code=422)
    job = service.submit(db, replace(spec, name=job_name), owner_id=principal.user.id)
    return redirect(request, f"/jobs/{job.id}", flash=f"Job {job.id} queued.")


def _page_context(job: Job) -> dict[str, Any]:
    kind = kind_of(job.type)
    # A type no longer declared still shows what every job page shows.
    page = kind.page if kind is not None else JobPage()
    rerunnable = not clone.rerun_refusal(job.type)
    context: dict[str, Any] = {
        "job": job,
        "page": page,
        "artefacts": files.list_artefacts(job.artefact_dir),
        "log_tail": files.log_tail(job.artefact_dir),
        "rerunnable": rerunnable,
        "retryable": job.status in clone.RETRYABLE and rerunnable,
        "params_table": params_table(job.type, job.params),
        "type_title": title_of(job.type),
        "timing": listing.row_timing(job, utcnow()),
    }
    for view in page.views:
        context.update(resolve(view)(job))
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
    target = files.artefact_file(job.artefact_dir, path)
    if target is None:
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


@router.post("/{job_id}/retry")
def retry(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    job = _job_for(db, job_id, principal)
    try:
        spec = clone.retry_spec(job)
    except SpecError as exc:
        return redirect(request, f"/jobs/{job.id}", flash=exc.message, kind="error")
    new = service.resubmit(db, job, spec)
    return redirect(request, f"/jobs/{new.id}", flash=f"Job {new.id} queued: a retry of {job.id}.")


def _clone_context(
    job: Job, values: dict[str, str], error: SpecError | None = None
) -> dict[str, Any]:
    return {
        "job": job,
        "queues": QUEUES,
        "job_types": job_types(),
        "values": values,
        "errors": {error.field: error.message} if error else {},
        "max_kb": clone.MAX_PARAMS_BYTES // 1024,
    }


@router.get("/{job_id}/clone")
def clone_form(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    job = _job_for(db, job_id, principal)
    refusal = clone.rerun_refusal(job.type)
    if refusal:
        message = f"A {job.type} job cannot be cloned. {refusal}"
        return redirect(request, f"/jobs/{job.id}", flash=message, kind="error")
    values = {
        "type": job.type,
        "queue": job.queue,
        "params": clone.editable_json(job),
        "job_name": copy_name(job.name, f"Job {job.id}"),
    }
    return render(request, "jobs/clone.html", _clone_context(job, values))


@router.post("/{job_id}/clone")
def clone_job(
    request: Request,
    job_id: int,
    db: DbDep,
    principal: Researcher,
    params: Annotated[str, Form()] = "",
    job_type: Annotated[str, Form(alias="type", max_length=50)] = "",
    queue: Annotated[str, Form(max_length=10)] = "",
    job_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    job = _job_for(db, job_id, principal)
    try:
        spec = clone_checks.checked_clone(db, clone.clone_spec(job, job_type, queue, params))
    except SpecError as exc:
        values = {"type": job_type, "queue": queue, "params": params, "job_name": job_name}
        return render(request, "jobs/clone.html", _clone_context(job, values, exc), status_code=422)
    name = job_name if job_name.strip() else copy_name(job.name, f"Job {job.id}")
    new = service.resubmit(db, job, replace(spec, name=name))
    return redirect(request, f"/jobs/{new.id}", flash=f"Job {new.id} queued: a clone of {job.id}.")
