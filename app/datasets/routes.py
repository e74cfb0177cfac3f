"""Datasets (researchers): the list and import form, a dataset's page, its images, subsets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from app.auth.service import Principal
from app.config import get_settings
from app.datasets import pages, service
from app.datasets.options import (
    UNCERTAINTY_POLICIES,
    parse_import_options,
    parse_name,
    parse_subset_options,
)
from app.deps import DbDep, Researcher
from app.jobs.specs import SpecError
from app.models import Dataset, DatasetStatus
from app.web.templating import redirect, render
from ml.data.ct_windows import CT_WINDOW_PRESETS
from ml.data.formats import FORMATS

router = APIRouter(prefix="/datasets")


def _dataset(db: DbDep, dataset_id: int, principal: Principal) -> Dataset:
    return service.get_dataset(db, dataset_id, principal)


def _list_context(db: DbDep, principal: Principal, **extra: Any) -> dict[str, Any]:
    return {
        "datasets": service.list_datasets(db, principal),
        "formats": FORMATS,
        "policies": UNCERTAINTY_POLICIES,
        "windows": CT_WINDOW_PRESETS,
        "import_roots": get_settings().resolved_import_roots(),
        "values": {"resolutions": "32,64", "uncertain": "ignore", "seed": "0"},
        "errors": {},
        **extra,
    }


@router.get("")
def dataset_list(request: Request, db: DbDep, principal: Researcher) -> Response:
    return render(request, "datasets/list.html", _list_context(db, principal))


@router.post("")
def import_dataset(
    request: Request,
    db: DbDep,
    principal: Researcher,
    name: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    format: Annotated[str, Form()] = "",
    resolutions: Annotated[str, Form()] = "",
    uncertain: Annotated[str, Form()] = "ignore",
    window: Annotated[str, Form()] = "",
    seed: Annotated[str, Form()] = "0",
    rule: Annotated[str, Form()] = "pad",
    colour: Annotated[str, Form()] = "auto",
    description: Annotated[str, Form()] = "",
) -> Response:
    values = {
        "name": name,
        "source": source,
        "format": format,
        "resolutions": resolutions,
        "uncertain": uncertain,
        "window": window,
        "seed": seed,
        "rule": rule,
        "colour": colour,
        "description": description,
    }
    try:
        options = parse_import_options(
            format,
            resolutions=resolutions,
            uncertain=uncertain,
            window=window,
            seed=seed,
            rule=rule,
            colour=colour,
        )
        dataset, job = service.start_import(
            db,
            owner_id=principal.user.id,
            name=parse_name(name),
            source=service.check_import_root(source),
            options=options,
            description=description.strip()[:5000],
        )
    except SpecError as exc:
        db.rollback()
        context = _list_context(db, principal, values=values, errors={exc.field: exc.message})
        return render(request, "datasets/list.html", context, status_code=422)
    service.launch(db, job)
    return redirect(request, f"/datasets/{dataset.id}", flash=f"Importing “{dataset.name}”.")


@router.get("/{dataset_id}")
def dataset_page(request: Request, dataset_id: int, db: DbDep, principal: Researcher) -> Response:
    dataset = _dataset(db, dataset_id, principal)
    job = service.import_job_of(db, dataset)
    status = service.effective_status(dataset, job)
    context: dict[str, Any] = {"dataset": dataset, "job": job, "status": status}
    if request.headers.get("HX-Request") and status == "importing":
        return render(request, "datasets/detail.html", context, block="import_status")
    if status == "ready":
        context.update(pages.dataset_view(dataset))
        context["parent"] = service.parent_of(db, dataset)
        context["versions"] = service.versions_of(db, dataset, principal)
        context["subset_values"] = {"kind": "samples_per_class", "seed": "0"}
        context["subset_errors"] = {}
    if request.headers.get("HX-Request"):
        # The import just ended: reload the whole page so the summary appears.
        return redirect(request, f"/datasets/{dataset.id}")
    return render(request, "datasets/detail.html", context)


@router.get("/{dataset_id}/images/{row}.png")
def dataset_image(
    dataset_id: int,
    row: int,
    db: DbDep,
    principal: Researcher,
    res: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    dataset = _dataset(db, dataset_id, principal)
    if dataset.status is not DatasetStatus.ready:
        raise HTTPException(409, "The dataset is not ready yet.")
    try:
        png = pages.row_png(dataset, row, res)
    except (IndexError, KeyError) as exc:
        raise HTTPException(404, str(exc).strip("'\"")) from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{dataset_id}/report.txt")
def import_report(dataset_id: int, db: DbDep, principal: Researcher) -> Response:
    dataset = _dataset(db, dataset_id, principal)
    lines = [*(dataset.info or {}).get("notes", []), *(dataset.errors or [])]
    if dataset.status is DatasetStatus.failed:
        lines.insert(0, f"The import failed: {dataset.error or 'see the job'}")
    elif dataset.status is DatasetStatus.importing:
        lines.insert(0, "The import is still running.")
    body = "\n".join(lines) + "\n" if lines else "Every file was imported.\n"
    return PlainTextResponse(body, headers={"Content-Disposition": "attachment"})


@router.post("/{dataset_id}/subsets")
def create_subset(
    request: Request,
    dataset_id: int,
    db: DbDep,
    principal: Researcher,
    name: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
    resolutions: Annotated[str, Form()] = "",
    seed: Annotated[str, Form()] = "0",
) -> Response:
    parent = _dataset(db, dataset_id, principal)
    values = {"name": name, "kind": kind, "value": value, "resolutions": resolutions, "seed": seed}
    try:
        options = parse_subset_options(
            kind,
            value,
            seed=seed,
            resolutions=resolutions,
            available=tuple(parent.info.get("resolutions", [])),
        )
        dataset, job = service.start_subset(
            db, owner_id=principal.user.id, parent=parent, name=parse_name(name), options=options
        )
    except SpecError as exc:
        db.rollback()
        parent = _dataset(db, dataset_id, principal)
        job = service.import_job_of(db, parent)
        context = {
            "dataset": parent,
            "job": job,
            "status": service.effective_status(parent, job),
            "subset_values": values,
            "subset_errors": {exc.field: exc.message},
            "versions": service.versions_of(db, parent, principal),
            "parent": service.parent_of(db, parent),
        }
        if context["status"] == "ready":
            context.update(pages.dataset_view(parent))
        return render(request, "datasets/detail.html", context, status_code=422)
    service.launch(db, job)
    return redirect(request, f"/datasets/{dataset.id}", flash=f"Writing “{dataset.name}”.")
