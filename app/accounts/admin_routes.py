"""Administrator pages: accounts and invitations. Thin: the rules live in app.auth.admin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response

from app.auth import admin
from app.auth.service import AuthError
from app.config import get_settings
from app.deps import Admin, DbDep
from app.domain.accounts import ROLES
from app.web.templating import redirect, render

router = APIRouter(prefix="/admin")

USERS = "/admin/users"
INVITATIONS = "/admin/invitations"


def _users_page(
    request: Request,
    db: DbDep,
    principal: Admin,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "users": admin.list_users(db),
        "roles": ROLES,
        "me": principal.user.id,
        "error": error,
        "form": form or {},
    }
    return render(request, "admin/users.html", context, status_code=status_code)


def _found(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except admin.NotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/users")
def users_page(request: Request, db: DbDep, principal: Admin) -> Response:
    return _users_page(request, db, principal)


@router.post("/users")
def create_user(
    request: Request,
    db: DbDep,
    principal: Admin,
    username: Annotated[str, Form(max_length=120)],
    password: Annotated[str, Form(max_length=1000)],
    role: Annotated[str, Form(max_length=20)],
    display_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        user = admin.create_user(
            db, username=username, password=password, role=role, display_name=display_name
        )
    except AuthError as exc:
        db.rollback()
        # The form comes back filled in (but never the password) with the reason on top.
        form = {"username": username, "display_name": display_name, "role": role}
        return _users_page(
            request, db, principal, error=exc.message, form=form, status_code=exc.status_code
        )
    db.commit()
    return redirect(request, USERS, flash=f"User {user.username} created ({user.role.value}).")


def _changed(request: Request, db: DbDep, change: Any, *args: Any) -> tuple[Any, Response | None]:
    """Run a change; on a refusal, roll back and answer with the reason as an error flash."""
    try:
        return _found(change, db, *args), None
    except AuthError as exc:
        db.rollback()
        return None, redirect(request, USERS, flash=exc.message, kind="error")


@router.post("/users/{user_id}/active")
def set_active(
    request: Request,
    user_id: int,
    db: DbDep,
    principal: Admin,
    active: Annotated[bool, Form()],
) -> Response:
    result, refused = _changed(request, db, admin.set_active, user_id, active)
    if refused:
        return refused
    user, changed = result
    db.commit()
    state = "enabled" if active else "disabled (signed out everywhere)"
    note = "" if changed else " already"
    return redirect(request, USERS, flash=f"{user.username} is{note} {state}.")


@router.post("/users/{user_id}/role")
def set_role(
    request: Request,
    user_id: int,
    db: DbDep,
    principal: Admin,
    role: Annotated[str, Form(max_length=20)],
) -> Response:
    result, refused = _changed(request, db, admin.set_role, user_id, role)
    if refused:
        return refused
    user, _changed_role = result
    db.commit()
    return redirect(request, USERS, flash=f"{user.username} is now {user.role.value}.")


@router.post("/users/{user_id}/password")
def set_password(
    request: Request,
    user_id: int,
    db: DbDep,
    principal: Admin,
    password: Annotated[str, Form(max_length=1000)],
) -> Response:
    user, refused = _changed(request, db, admin.set_password, user_id, password)
    if refused:
        return refused
    db.commit()
    return redirect(
        request,
        USERS,
        flash=f"New password set for {user.username}; their sessions have ended. "
        "Tell them the password by another channel.",
    )


def _invitations_page(
    request: Request, db: DbDep, *, new_link: str | None = None, status_code: int = 200
) -> Response:
    context = {
        "invites": admin.list_invites(db),
        "studies": admin.list_studies(db),
        "new_link": new_link,
        "hours": get_settings().invite_hours,
    }
    return render(request, "admin/invitations.html", context, status_code=status_code)


@router.get("/invitations")
def invitations_page(request: Request, db: DbDep, principal: Admin) -> Response:
    return _invitations_page(request, db)


@router.post("/invitations")
def create_invitation(
    request: Request,
    db: DbDep,
    principal: Admin,
    study_id: Annotated[int, Form()],
    label: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    token = _found(
        lambda: admin.create_invite(
            db,
            study_id=study_id,
            created_by=principal.user,
            hours=get_settings().invite_hours,
            label=label,
        )
    )
    db.commit()
    # Shown once, in this answer only: the database keeps the token's hash, not the token.
    link = str(request.url_for("invite_page", token=token))
    return _invitations_page(request, db, new_link=link)


@router.post("/invitations/{invite_id}/revoke")
def revoke_invitation(request: Request, invite_id: int, db: DbDep, principal: Admin) -> Response:
    revoked = _found(admin.revoke_invite, db, invite_id)
    db.commit()
    if not revoked:
        return redirect(request, INVITATIONS, flash=f"Invitation #{invite_id} was not open.")
    return redirect(request, INVITATIONS, flash=f"Invitation #{invite_id} revoked.")
