"""Studies and reader invitations (the study design grows with the reader-study work)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from app.auth import service as auth_service
from app.auth.service import Principal
from app.config import get_settings
from app.deps import DbDep, Researcher
from app.models import Invite, Study
from app.web.templating import redirect, render

router = APIRouter(prefix="/studies")


class StudyNotFound(LookupError):
    pass


def study_for(db: DbDep, study_id: int, principal: Principal) -> Study:
    study = db.get(Study, study_id)
    if study is None or (not principal.is_admin and study.owner_id != principal.user.id):
        raise StudyNotFound(study_id)
    return study


@router.get("")
def study_list(request: Request, db: DbDep, principal: Researcher) -> Response:
    query = select(Study).order_by(Study.id.desc())
    if not principal.is_admin:
        query = query.where(Study.owner_id == principal.user.id)
    return render(request, "studies/list.html", {"studies": list(db.scalars(query))})


@router.post("")
def create_study(
    request: Request,
    db: DbDep,
    principal: Researcher,
    name: Annotated[str, Form(max_length=200)] = "",
    instructions: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    if not name.strip():
        studies = list(db.scalars(select(Study).where(Study.owner_id == principal.user.id)))
        return render(
            request,
            "studies/list.html",
            {"studies": studies, "errors": {"name": "A study needs a name."}},
            status_code=422,
        )
    study = Study(name=name.strip(), instructions=instructions.strip(), owner_id=principal.user.id)
    db.add(study)
    db.commit()
    return redirect(request, f"/studies/{study.id}", flash="Study created.")


@router.get("/{study_id}")
def study_page(request: Request, study_id: int, db: DbDep, principal: Researcher) -> Response:
    study = study_for(db, study_id, principal)
    invites = list(
        db.scalars(select(Invite).where(Invite.study_id == study.id).order_by(Invite.id.desc()))
    )
    return render(request, "studies/detail.html", {"study": study, "invites": invites})


@router.post("/{study_id}/invites")
def create_invite(
    request: Request,
    study_id: int,
    db: DbDep,
    principal: Researcher,
    label: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    study = study_for(db, study_id, principal)
    token, _ = auth_service.create_invite(
        db, study=study, created_by=principal.user, hours=get_settings().invite_hours, label=label
    )
    db.commit()
    link = str(request.url_for("invite_page", token=token))
    invites = list(
        db.scalars(select(Invite).where(Invite.study_id == study.id).order_by(Invite.id.desc()))
    )
    # The link is shown once: only its hash is stored, so it cannot be shown again later.
    return render(
        request, "studies/detail.html", {"study": study, "invites": invites, "new_link": link}
    )
