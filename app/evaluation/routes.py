"""The benchmark page of a GAN, the forms that launch evaluation jobs, the privacy gallery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from app.auth.service import Principal
from app.deps import DbDep, Researcher
from app.evaluation import service
from app.evaluation.compare import compare_context
from app.evaluation.requests import (
    AttributionRequest,
    ClassifierRequest,
    FidelityRequest,
    NeighboursRequest,
)
from app.evaluation.views import benchmark_context, dashboard_context
from app.jobs import service as jobs
from app.jobs.specs import SpecError
from app.models import Dataset, Job, JobStatus
from app.web.templating import redirect, render

router = APIRouter()

FORM_KEYS = (
    "image_set_id", "train_on", "preset", "arch", "resolution", "epochs", "batch_size", "lr",
    "augment", "balanced", "seed", "features", "classifier_job_id", "features_path",
    "max_images", "k", "alpha", "level", "real_job_id", "synthetic_job_id", "n_images",
    "n_steps", "queue", "job_name", "fid_resize", "fid_resamples", "external_dataset_id",
)  # fmt: skip


def _gan_job(db: DbDep, job_id: int, principal: Principal) -> tuple[Job, Dataset]:
    job = jobs.visible_job(db, job_id, principal, "train_gan", "training job")
    dataset = service.dataset_of(db, job)
    if dataset is None:
        raise HTTPException(404, f"The dataset of training job #{job_id} no longer exists.")
    return job, dataset


async def _values(request: Request) -> dict[str, Any]:
    form = await request.form()
    values: dict[str, Any] = {k: str(form.get(k, "")) for k in FORM_KEYS}
    values["methods"] = [str(m) for m in form.getlist("methods")]
    return values


@router.get("/gans/{job_id}/benchmark")
def benchmark_page(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    gan_job, dataset = _gan_job(db, job_id, principal)
    context = benchmark_context(db, principal, gan_job, dataset)
    if request.headers.get("hx-request"):
        return render(request, "evaluation/benchmark.html", context, block="results")
    return render(request, "evaluation/benchmark.html", context)


@router.post("/gans/{job_id}/benchmark/run")
async def run_suite(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    """One click: real-, synthetic- and mixed-trained classifiers, fidelity and privacy."""
    _, dataset = _gan_job(db, job_id, principal)
    values = await _values(request)
    page = f"/gans/{job_id}/benchmark"
    try:
        started = service.start_suite(db, principal, dataset, values, values["queue"] or None)
    except SpecError as exc:
        db.rollback()
        return redirect(request, page, flash=exc.message, kind="error")
    jobs.name_all(started, values["job_name"])
    for job in started:
        jobs.commit_and_enqueue(db, job)
    ids = ", ".join(f"#{j.id}" for j in started)
    return redirect(request, page, flash=f"Benchmark jobs {ids} queued.")


@router.post("/gans/{job_id}/benchmark/{kind}")
async def launch_one(
    request: Request, job_id: int, kind: str, db: DbDep, principal: Researcher
) -> Response:
    _, dataset = _gan_job(db, job_id, principal)
    values = await _values(request)
    page = f"/gans/{job_id}/benchmark"
    queue = values["queue"] or None
    starters = {
        "classifier": lambda: service.start_classifier(
            db, principal, dataset, ClassifierRequest.from_form(values), queue
        ),
        "fidelity": lambda: service.start_fidelity(
            db, principal, dataset, FidelityRequest.from_form(values), queue
        ),
        "neighbours": lambda: service.start_neighbours(
            db, principal, dataset, NeighboursRequest.from_form(values), queue
        ),
        "attribution": lambda: service.start_attribution(
            db, principal, AttributionRequest.from_form(values), queue
        ),
    }
    if kind not in starters:
        raise HTTPException(404, f"There is no evaluation called {kind!r}.")
    try:
        job = starters[kind]()
    except SpecError as exc:
        db.rollback()
        return redirect(request, page, flash=exc.message, kind="error")
    jobs.rename(job, values["job_name"])
    jobs.commit_and_enqueue(db, job)
    return redirect(request, page, flash=f"Job #{job.id} ({job.type}) queued.")


@router.get("/datasets/{dataset_id}/benchmark")
def dataset_dashboard(
    request: Request, dataset_id: int, db: DbDep, principal: Researcher
) -> Response:
    from app.datasets.service import get_dataset

    dataset = get_dataset(db, dataset_id, principal)
    return render(request, "evaluation/dashboard.html", dashboard_context(db, principal, dataset))


@router.get("/gans/compare")
def compare_runs(
    request: Request,
    db: DbDep,
    principal: Researcher,
    ids: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006 - FastAPI's idiom
    snapshot: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> Response:
    """Two or more GAN runs side by side: overlaid curves, sample grids at one snapshot,
    benchmark numbers, differing settings. `ids` comes as ?ids=3,7 or as ticked boxes."""
    # isdecimal, not isdigit: "²" is a digit that int() refuses, which was a 500.
    chosen = [int(i) for raw in ids for i in raw.split(",") if i.strip().isdecimal()][:6]
    runs = [_gan_job(db, i, principal)[0] for i in dict.fromkeys(chosen)]
    context = compare_context(db, principal, runs, snapshot)
    if not runs:
        context["choices"] = service.gan_runs(db, principal)
    return render(request, "evaluation/compare.html", context)


@router.get("/evaluation/neighbours/{job_id}")
def gallery(
    request: Request,
    job_id: int,
    db: DbDep,
    principal: Researcher,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    from app.evaluation.gallery import gallery_context  # numpy: only where a gallery is shown

    job = jobs.visible_job(db, job_id, principal, "nearest_neighbours", "privacy job")
    if job.status is not JobStatus.succeeded:
        return redirect(request, f"/jobs/{job_id}", flash="The gallery appears when the job ends.")
    context = {"job": job, **gallery_context(db, job, page)}
    return render(request, "evaluation/gallery.html", context)
