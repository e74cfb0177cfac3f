"""Readers' pages: the only pages a reader can reach."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from app.auth.service import Principal
from app.deps import CurrentUser, DbDep, Forbidden
from app.models import Study, StudyReader
from app.web.templating import render

router = APIRouter(prefix="/read")


def reader_studies(db: DbDep, principal: Principal) -> list[Study]:
    query = (
        select(Study)
        .join(StudyReader, StudyReader.study_id == Study.id)
        .where(StudyReader.user_id == principal.user.id)
        .order_by(Study.id)
    )
    if principal.study_scope is not None:
        query = query.where(Study.id == principal.study_scope)
    return list(db.scalars(query))


@router.get("")
def my_studies(request: Request, db: DbDep, principal: CurrentUser) -> Response:
    return render(request, "read/index.html", {"studies": reader_studies(db, principal)})


@router.get("/{study_id}")
def reading_page(request: Request, study_id: int, db: DbDep, principal: CurrentUser) -> Response:
    allowed = {s.id: s for s in reader_studies(db, principal)}
    if study_id not in allowed:
        raise Forbidden("You are not a reader of this study.")
    return render(request, "read/study.html", {"study": allowed[study_id]})
