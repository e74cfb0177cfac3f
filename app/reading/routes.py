"""Readers' pages: the only pages a reader can reach.

Nothing a reader receives (HTML, URLs, alt text, headers, file names) may tell which image is
real, which is a repeat, or where it came from: images travel under per-presentation opaque ids
and are always the blinded re-encoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.db import DatabaseBusy, retry_transient
from app.deps import CurrentUser, DbDep, Forbidden, LateUser, Sessions, in_one_unit
from app.domain.answers import ANSWER_LABELS, AnswerInput, Feedback, ReadingError
from app.models import Study, StudyReader
from app.reading import service
from app.studies import display
from app.web.templating import redirect, render

router = APIRouter(prefix="/read")

PAGE = "read/study.html"
# Long enough for the prefetched next image to be reused, private so no shared cache keeps it.
IMAGE_CACHE = "private, max-age=600"
ANSWER_KEYS = {"real": "R", "fake": "F", "uncertain": "U"}


def _reader(db: DbDep, principal: Principal, study_id: int) -> tuple[Study, StudyReader]:
    try:
        return service.reader_for(
            db, study_id=study_id, user_id=principal.user.id, study_scope=principal.study_scope
        )
    except ReadingError as exc:
        raise Forbidden(exc.message) from exc


def _is_htmx(request: Request) -> bool:
    return bool(request.headers.get("hx-request"))


def _page_context(
    study: Study, view: service.ReadingView, feedback: Feedback | None = None
) -> dict[str, Any]:
    return {
        "study": study,
        "view": view,
        "reading": view.reading,
        "feedback": feedback,
        "labels": ANSWER_LABELS,
        "keys": ANSWER_KEYS,
    }


@router.get("")
def my_studies(request: Request, db: DbDep, principal: CurrentUser) -> Response:
    rows = [
        (study, *service.progress(db, study_reader))
        for study, study_reader in service.reader_studies(db, principal)
    ]
    return render(request, "read/index.html", {"rows": rows})


@router.get("/{study_id}")
async def reading_page(
    request: Request, study_id: int, caller: LateUser, sessions: Sessions
) -> Response:
    def show(db: Session) -> Response:
        study, study_reader = _reader(db, caller.principal(db), study_id)
        try:
            service.ensure_schedule(db, study, study_reader)
        except ReadingError as exc:
            raise HTTPException(exc.status_code, exc.message) from exc
        view = service.reading_view(db, study, study_reader)
        db.commit()
        return render(request, PAGE, _page_context(study, view))

    # The first visit writes (the reader's sequence, when the image was first shown); both
    # steps are idempotent, so a locked database is waited out here, not shown as a 500.
    return await _retried(request, sessions, show)


@router.get("/{study_id}/image/{opaque_id}")
async def reading_image(
    study_id: int, opaque_id: str, caller: LateUser, sessions: Sessions
) -> Response:
    def served(db: Session) -> bytes:
        principal = caller.principal(db)
        # One answer for every refusal, so the response never says whether an id exists.
        try:
            study, study_reader = service.reader_for(
                db, study_id=study_id, user_id=principal.user.id, study_scope=principal.study_scope
            )
            key = service.image_key_for(db, study_reader, opaque_id)
            pixels = display.display_pixels(db, study, key)
        except (ReadingError, OSError, ValueError):
            raise HTTPException(404, "This image is not available.") from None
        db.close()  # the connection goes back before the encoding, which needs none
        # The study's rendering, dithered for this presentation: every image of the study has
        # one byte length and one header set.
        return display.served_png(pixels, opaque_id)

    # Deliberately no ETag, Last-Modified or Content-Disposition: each would identify the file.
    return Response(
        await in_one_unit(sessions, served),
        media_type=display.SERVED_MEDIA_TYPE,
        headers=dict(display.SERVED_HEADERS),
    )


@router.post("/{study_id}/answer")
async def submit_answer(
    request: Request,
    study_id: int,
    caller: LateUser,
    sessions: Sessions,
    entry: Annotated[str, Form(max_length=64)] = "",
    answer: Annotated[str, Form(max_length=40)] = "",
    confidence: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=20_000)] = "",
    second_answer: Annotated[str, Form(max_length=200)] = "",
    duration_ms: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    form = AnswerInput(answer, confidence, reason, second_answer, duration_ms)

    def store(db: Session) -> Response:
        study, study_reader = _reader(db, caller.principal(db), study_id)
        try:
            stored, advance = service.answer_and_advance(db, study_reader, entry, form)
        except ReadingError as exc:
            db.rollback()
            return _answer_error(request, study, exc)
        feedback = service.practice_feedback(db, study_reader, stored)
        if not _is_htmx(request):
            db.commit()
            flash = feedback.message if feedback else None
            return redirect(request, f"/read/{study_id}", flash=flash)
        view = service.view_after(db, study, study_reader, advance)
        db.commit()
        return render(request, PAGE, _page_context(study, view, feedback), block="panel")

    # Safe to run again: record_answer returns the stored answer for an identical resubmit,
    # so a retry after a commit whose reply was lost stores nothing twice.
    return await _retried(request, sessions, store)


async def _retried(
    request: Request, sessions: Callable[[], Session], work: Callable[[Session], Response]
) -> Response:
    """`work` in one unit (caller, reads and writes in one transaction), run again on a
    transient database error; a database still busy after the retries answers 503."""
    try:
        return await in_one_unit(sessions, lambda db: retry_transient(db, lambda: work(db)))
    except DatabaseBusy as exc:
        return _answer_busy(request, exc)


def _answer_busy(request: Request, exc: DatabaseBusy) -> Response:
    # 503 + Retry-After, never 500: the reading page sends the same answer again by itself.
    message = "The server is busy and your answer is not saved yet. Please submit it again."
    if request.method == "GET":
        message = "The server is busy. Please reload this page in a few seconds."
    response = render(request, "errors/error.html", {"message": message}, status_code=503)
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


@router.get("/{study_id}/answer")
def answer_get(request: Request, study_id: int) -> Response:
    # A reader whose session ran out mid-study logs in again with next= this URL.
    return redirect(request, f"/read/{study_id}")


def _answer_error(request: Request, study: Study, exc: ReadingError) -> Response:
    if not _is_htmx(request):
        return render(
            request, "errors/error.html", {"message": exc.message}, status_code=exc.status_code
        )
    # The message replaces only the error slot: the reader's choices and reason stay as typed.
    response = render(
        request,
        PAGE,
        {"study": study, "error": exc.message, "stale": exc.status_code == 409},
        block="answer_error",
        status_code=exc.status_code,
    )
    response.headers["HX-Retarget"] = "#answer-error"
    response.headers["HX-Reswap"] = "outerHTML"
    return response


@router.get("/{study_id}/done")
def done_page(request: Request, study_id: int, db: DbDep, principal: CurrentUser) -> Response:
    study, study_reader = _reader(db, principal, study_id)
    view = service.done_view(db, study, study_reader)
    if view is None:
        return redirect(request, f"/read/{study_id}")
    return render(request, "read/done.html", _page_context(study, view))
