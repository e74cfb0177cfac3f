"""Study results, exports and imported ratings (researchers: the owner or an admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response

from app.deps import DbDep, Researcher
from app.studies.export import answers_csv, imrmc_text, statistics_json
from app.studies.imports import ImportRatingsError, import_ratings, name_problems
from app.studies.ratings import answer_rows, study_ratings
from app.studies.sharing import study_for
from app.web.body_limit import upload_limit
from app.web.templating import redirect, render

if TYPE_CHECKING:
    from types import ModuleType

router = APIRouter(prefix="/studies")

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
PolicyQuery = Annotated[Literal["wrong", "excluded"] | None, Query()]
SearchQuery = Annotated[str, Query(max_length=200)]
PageQuery = Annotated[int, Query(ge=1, le=1_000_000)]


def _results() -> ModuleType:
    # The statistics (scipy, statsmodels, scikit-learn: about 1.5 s and 100 MB) load with the
    # first results page a web worker serves, not at its start-up.
    from app.studies import results

    return results


def _download(body: str, filename: str, media_type: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _read_upload(file: UploadFile | None) -> tuple[str, list[str]]:
    """The uploaded file as text, or why it cannot be read."""
    raw = file.file.read(MAX_UPLOAD_BYTES + 1) if file is not None and file.filename else b""
    if not raw:
        return "", ["Choose a CSV file with your ratings."]
    if len(raw) > MAX_UPLOAD_BYTES:
        return "", [f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB; split it up."]
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        return "", ["The file is not UTF-8 text. Save it from your spreadsheet as CSV UTF-8."]


@router.get("/import")
def import_form(request: Request, principal: Researcher) -> Response:
    return render(request, "studies/import.html", {"errors": [], "name": ""})


@router.post("/import")
@upload_limit(MAX_UPLOAD_BYTES)
def import_upload(
    request: Request,
    db: DbDep,
    principal: Researcher,
    file: Annotated[UploadFile | None, File()] = None,
    name: Annotated[str, Form()] = "",
) -> Response:
    text, errors = _read_upload(file)
    if errors:
        errors += name_problems(name)
    else:
        try:
            study = import_ratings(db, owner_id=principal.user.id, name=name, csv_text=text)
        except ImportRatingsError as exc:
            db.rollback()
            errors = exc.errors
        else:
            db.commit()
            return redirect(request, f"/studies/{study.id}/results", flash="Ratings imported.")
    context = {"errors": errors, "name": name}
    return render(request, "studies/import.html", context, status_code=422)


@router.get("/{study_id}/results")
def results_page(
    request: Request,
    study_id: int,
    db: DbDep,
    principal: Researcher,
    uncertain: PolicyQuery = None,
    q: SearchQuery = "",
    reasons_page: PageQuery = 1,
) -> Response:
    study = study_for(db, study_id, principal)
    results = _results()
    policy = results.resolve_policy(study, uncertain)
    context = results.results_context(db, study, policy, q, reasons_page)
    return render(request, "studies/results.html", context)


@router.get("/{study_id}/results/reasons")
def reasons_fragment(
    request: Request,
    study_id: int,
    db: DbDep,
    principal: Researcher,
    q: SearchQuery = "",
    reasons_page: PageQuery = 1,
) -> Response:
    study = study_for(db, study_id, principal)
    context = _results().reasons_context(db, study, q, reasons_page)
    return render(request, "studies/results.html", context, block="reasons")


@router.get("/{study_id}/export.csv")
def export_csv(study_id: int, db: DbDep, principal: Researcher) -> Response:
    study = study_for(db, study_id, principal)
    body = answers_csv(answer_rows(db, study))
    return _download(body, f"study-{study.id}-answers.csv", "text/csv; charset=utf-8")


@router.get("/{study_id}/export.imrmc")
@router.get("/{study_id}/export-imrmc.csv")
def export_imrmc(study_id: int, db: DbDep, principal: Researcher) -> Response:
    study = study_for(db, study_id, principal)
    ratings = study_ratings(db, study)
    try:
        body = imrmc_text(ratings, title=f"synthbench study {study.id} {study.name}")
    except ValueError as exc:
        raise HTTPException(422, f"Cannot write iMRMC input: {exc}.") from exc
    # RJafroc insists on the .imrmc extension; the iMRMC application accepts it too.
    return _download(body, f"study-{study.id}.imrmc", "text/plain; charset=utf-8")


@router.get("/{study_id}/stats.json")
def stats_json(
    study_id: int, db: DbDep, principal: Researcher, uncertain: PolicyQuery = None
) -> Response:
    study = study_for(db, study_id, principal)
    results = _results()
    _, stats = results.statistics_for(db, study, results.resolve_policy(study, uncertain))
    about: dict[str, object] = {"id": study.id, "name": study.name, "kind": study.kind.value}
    if study.blinding_override:
        # Opened although its blinding audit found a leak: the reason travels with the data.
        about["blinding_override"] = study.blinding_override
    return Response(statistics_json(stats, study=about), media_type="application/json")
