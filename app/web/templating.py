"""Jinja2 rendering with flash messages carried in a signed cookie across one redirect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.auth.tokens import sign, unsign
from app.config import get_settings

ROOT = Path(__file__).resolve().parents[2]
FLASH_COOKIE = "sb_flash"

templates = Jinja2Templates(directory=str(ROOT / "templates"))


def _flashes(request: Request) -> list[dict[str, str]]:
    raw = unsign(request.app.state.secret_key, "flash", request.cookies.get(FLASH_COOKIE))
    if not raw:
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    block: str | None = None,
) -> HTMLResponse:
    """Render a page, or only one of its ``{% block %}``s for an htmx fragment."""
    ctx: dict[str, Any] = {
        "principal": getattr(request.state, "principal", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "flashes": _flashes(request),
    }
    ctx.update(context or {})
    if block:
        template = templates.get_template(name)
        ctx["request"] = request
        ctx.setdefault("url_for", request.url_for)
        body = "".join(template.blocks[block](template.new_context(ctx)))
        response: HTMLResponse = HTMLResponse(body, status_code=status_code)
    else:
        response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if ctx["flashes"]:
        response.delete_cookie(FLASH_COOKIE, path="/", secure=get_settings().secure_cookies)
    return response


def redirect(request: Request, url: str, *, flash: str | None = None, kind: str = "info"):
    """303 after a POST; htmx requests get HX-Redirect so the whole page navigates."""
    if request.headers.get("hx-request"):
        response: Any = HTMLResponse("", headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=303)
    if flash:
        items = [*_flashes(request), {"kind": kind, "text": flash}]
        response.set_cookie(
            FLASH_COOKIE,
            sign(request.app.state.secret_key, "flash", json.dumps(items)),
            httponly=True,
            samesite="lax",
            # As the session cookie: behind TLS a flash must not travel over plain http either.
            secure=get_settings().secure_cookies,
            path="/",
        )
    return response
