"""Studies: design form, study page, readers and invitations (researchers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from app.auth import service as auth_service
from app.auth.service import Principal
from app.config import get_settings
from app.deps import DbDep, Researcher
from app.models import Study
from app.studies import blinding_gate, display, service, sharing
from app.studies.design import load_design
from app.studies.design_form import parse_design_form
from app.web.templating import redirect, render

router = APIRouter(prefix="/studies")


study_for = sharing.study_for


async def form_data(request: Request) -> FormData:
    return await request.form()


FormDep = Annotated[FormData, Depends(form_data)]


def owned_study(study_id: int, db: DbDep, principal: Researcher) -> Study:
    # A dependency rather than a call in the route body: FastAPI validates the form after
    # dependencies but before the body runs, so a route with required form fields would answer
    # someone else's study id with 422 instead of 404.
    return study_for(db, study_id, principal, change=True)


OwnedStudy = Annotated[Study, Depends(owned_study)]


@router.get("")
def study_list(request: Request, db: DbDep, principal: Researcher) -> Response:
    studies, owners = sharing.listed_studies(db, principal)
    context = {
        "studies": studies,
        "owners": owners,
        "me": principal.user.id,
        "admin": principal.is_admin,
    }
    return render(request, "studies/list.html", context)


def _new_form(request: Request, db: DbDep, principal: Principal, **context: object) -> Response:
    status = 422 if context.get("errors") else 200
    sets = service.visible_image_sets(db, principal.user)
    resolutions = display.source_resolutions(db, [s.id for s in sets])
    by_set: dict[int, list[display.SourceResolution]] = {}
    for r in resolutions:
        by_set.setdefault(r.image_set_id, []).append(r)
    return render(
        request,
        "studies/new.html",
        {
            "image_sets": sets,
            "resolutions": by_set,
            # Shown as a warning: the form's default brings them to the lowest one.
            "resolutions_differ": len({r.min_side for r in resolutions}) > 1,
            "values": {},
            "errors": {},
            **context,
        },
        status_code=status,
    )


@router.get("/new")
def new_study(request: Request, db: DbDep, principal: Researcher) -> Response:
    return _new_form(request, db, principal)


@router.post("")
def create_study(request: Request, db: DbDep, principal: Researcher, form: FormDep) -> Response:
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    chosen = [v for v in form.getlist("image_set_ids") if isinstance(v, str)]
    parsed = parse_design_form(values, chosen)
    if not parsed.ok or parsed.design is None or parsed.reading is None:
        return _new_form(request, db, principal, errors=parsed.errors, values=values, chosen=chosen)
    try:
        study = service.create_study(
            db,
            owner=principal.user,
            name=parsed.name,
            instructions=parsed.instructions,
            image_set_ids=parsed.image_set_ids,
            design=parsed.design,
            reading=parsed.reading,
            display_options=parsed.display,
        )
    except service.StudyDesignError as exc:
        db.rollback()
        errors = {"design": " ".join(exc.problems)}
        return _new_form(request, db, principal, errors=errors, values=values, chosen=chosen)
    db.commit()
    return redirect(request, f"/studies/{study.id}", flash="Study created.")


def _study_page(
    request: Request, db: DbDep, study: Study, principal: Principal, **extra: object
) -> Response:
    invites = sharing.invites_of(db, study)
    context = {
        "study": study,
        "design": load_design(study.design) if study.design else None,
        "notes": (study.design or {}).get("notes", []),
        "counts": service.study_counts(db, study),
        "readers": service.reader_progress(db, study),
        "assignable": service.assignable_readers(db, study),
        "invites": invites,
        "invite_hours": get_settings().invite_hours,
        "can_change": sharing.can_change(study, principal),
        "collaborators": sharing.collaborators(db, study),
        "leakage": study.leakage_audit,
        "leakage_channels": blinding_gate.channel_rows(study),
        "gate_open": blinding_gate.is_open(study),
        **extra,
    }
    return render(request, "studies/detail.html", context)


@router.get("/{study_id}")
def study_page(request: Request, study_id: int, db: DbDep, principal: Researcher) -> Response:
    return _study_page(request, db, study_for(db, study_id, principal), principal)


@router.post("/{study_id}/blinding-override")
def blinding_override(
    request: Request,
    db: DbDep,
    study: OwnedStudy,
    reason: Annotated[str, Form(max_length=blinding_gate.MAX_REASON)] = "",
) -> Response:
    try:
        blinding_gate.record_override(db, study, reason)
    except ValueError as exc:
        db.rollback()
        return redirect(request, f"/studies/{study.id}", flash=str(exc), kind="error")
    db.commit()
    return redirect(
        request,
        f"/studies/{study.id}",
        flash="Reason recorded: the study is open to readers, and the reason is in its methods.",
    )


@router.post("/{study_id}/readers")
def assign_reader(
    request: Request,
    db: DbDep,
    study: OwnedStudy,
    user_id: Annotated[int, Form()],
) -> Response:
    try:
        service.assign_reader(db, study, user_id)
    except service.StudyDesignError as exc:
        db.rollback()
        return redirect(request, f"/studies/{study.id}", flash=exc.problems[0], kind="error")
    db.commit()
    return redirect(request, f"/studies/{study.id}", flash="Reader assigned.")


@router.post("/{study_id}/invites")
def create_invite(
    request: Request,
    study_id: int,
    db: DbDep,
    principal: Researcher,
    label: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    study = study_for(db, study_id, principal, change=True)
    token, _ = auth_service.create_invite(
        db, study=study, created_by=principal.user, hours=get_settings().invite_hours, label=label
    )
    db.commit()
    # The link is shown once: only its hash is stored, so it cannot be shown again later.
    return _study_page(
        request, db, study, principal, new_link=str(request.url_for("invite_page", token=token))
    )


@router.post("/{study_id}/shares")
def share_study(
    request: Request,
    db: DbDep,
    study: OwnedStudy,
    username: Annotated[str, Form(max_length=120)] = "",
) -> Response:
    try:
        user = sharing.share(db, study, username)
    except sharing.ShareError as exc:
        db.rollback()
        return redirect(request, f"/studies/{study.id}", flash=exc.message, kind="error")
    db.commit()
    return redirect(request, f"/studies/{study.id}", flash=f"Shared with {user.username} to read.")


@router.post("/{study_id}/shares/{user_id}/remove")
def unshare_study(request: Request, user_id: int, db: DbDep, study: OwnedStudy) -> Response:
    sharing.unshare(db, study, user_id)
    db.commit()
    return redirect(request, f"/studies/{study.id}", flash="No longer shared.")
