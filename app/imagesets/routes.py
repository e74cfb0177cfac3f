"""Image set upload and browsing (researchers)."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute

from app.auth.service import Principal
from app.config import get_settings
from app.deps import DbDep, Researcher
from app.imagesets import service
from app.imagesets.release import latest_release_verdict
from app.imagesets.storage import blinded_path
from app.models import Origin
from app.web.body_limit import upload_limit
from app.web.templating import redirect, render

PAGE_SIZE = 120
MAX_ERRORS_SHOWN = 200
# Room for the multipart framing and the small text fields around the zip itself.
FORM_OVERHEAD_BYTES = 64 * 1024


class _UploadLimitRoute(APIRoute):
    """Refuses an oversized POST from its Content-Length before the body is read.

    A dependency would be too late: FastAPI parses form bodies, and the app-wide CSRF check
    reads the form, before a route's own dependencies run, spooling the whole body to disk.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if "POST" not in self.methods:
            return handler

        async def limited(request: Request) -> Response:
            _check_content_length(request)
            return await handler(request)

        return limited


def _check_content_length(request: Request) -> None:
    limit = get_settings().max_upload_bytes
    raw = request.headers.get("content-length")
    if raw is None:
        # Without a length the body could only be cut off after reading it; browsers send one.
        raise HTTPException(411, "Uploads need a Content-Length header.")
    try:
        length = int(raw)
    except ValueError:
        raise HTTPException(400, "The Content-Length header is not a number.") from None
    if length > limit + FORM_OVERHEAD_BYTES:
        raise HTTPException(
            413, f"The upload is {_mb(length)}, over the {_mb(limit)} limit for one image set."
        )


router = APIRouter(prefix="/imagesets", route_class=_UploadLimitRoute)


def _list_context(db: DbDep, principal: Principal, **extra: Any) -> dict[str, Any]:
    sets = service.list_image_sets(db, principal.visible_owner)
    return {
        "image_sets": sets,
        "counts": service.origin_counts(db, [s.id for s in sets]),
        "max_upload": _mb(get_settings().max_upload_bytes),
        "max_errors_shown": MAX_ERRORS_SHOWN,
        "errors": [],
        "values": {},
        **extra,
    }


@router.get("")
def image_set_list(request: Request, db: DbDep, principal: Researcher) -> Response:
    return render(request, "imagesets/list.html", _list_context(db, principal))


@router.post("")
@upload_limit(lambda: get_settings().max_upload_bytes)
def upload_image_set(
    request: Request,
    db: DbDep,
    principal: Researcher,
    name: Annotated[str, Form()] = "",
    origin: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    values = {"name": name, "origin": origin, "description": description}
    errors: list[str] = []
    default_origin = None
    if origin:
        try:
            default_origin = Origin(origin)
        except ValueError:
            errors.append("The origin must be real or synthetic.")
    if file is None or (not file.filename and not file.size):
        errors.append("Choose a zip file to upload.")
    if not errors and file is not None:
        try:
            image_set = service.create_image_set(
                db,
                owner_id=principal.user.id,
                name=name,
                default_origin=default_origin,
                upload_path_or_file=file.file,
                description=description,
            )
        except service.IngestError as exc:
            errors = exc.errors
        else:
            total = sum(service.origin_counts(db, [image_set.id])[image_set.id].values())
            return redirect(
                request,
                f"/imagesets/{image_set.id}",
                flash=f"Image set “{image_set.name}” created with {total} images.",
            )
    context = _list_context(db, principal, errors=errors, values=values)
    return render(request, "imagesets/list.html", context, status_code=422)


@router.get("/{image_set_id}")
def image_set_page(
    request: Request,
    image_set_id: int,
    db: DbDep,
    principal: Researcher,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    image_set = service.get_image_set(db, image_set_id, principal)
    summary = service.set_summary(db, image_set)
    images = service.list_images(db, image_set, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    context = {
        "image_set": image_set,
        "summary": summary,
        "images": images,
        "page": page,
        "pages": max(1, math.ceil(summary.total / PAGE_SIZE)),
        "verdict": latest_release_verdict(db, principal, image_set.id),
    }
    return render(request, "imagesets/detail.html", context)


@router.get("/{image_set_id}/images/{image_id}")
def blinded_image(image_set_id: int, image_id: int, db: DbDep, principal: Researcher) -> Response:
    image_set = service.get_image_set(db, image_set_id, principal)
    image = service.get_image(db, image_set, image_id)
    path = blinded_path(image.key)
    if not path.is_file():
        raise HTTPException(404, f"The file of image {image_id} is missing from storage.")
    # No filename in the response: the key and the original name stay on the server.
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"
