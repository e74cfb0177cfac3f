"""Sweeps: one form launches a grid of jobs; a sweep page tracks them all."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.auth.service import Principal
from app.datasets import service as datasets
from app.datasets.choice import main_dataset_id
from app.deps import DbDep, Researcher
from app.evaluation.options import CLASSIFIER_PRESETS
from app.gans.options import PRESETS as GAN_PRESETS
from app.jobs.specs import QUEUES, SpecError
from app.sweeps import grid, service
from app.web.templating import redirect, render

router = APIRouter(prefix="/sweeps")
FORM_FIELDS = (
    "dataset",
    "name",
    "kind",
    "resolutions",
    "classes",
    "per_class",
    "param",
    "values",
    "gan_preset",
    *grid.GAN_OVERRIDES,
    "draw",
    "classifier_preset",
    "epochs",
    "queue",
)
DEFAULTS = {
    "kind": "grid",
    "per_class": "0",
    "gan_preset": "tiny-cpu",
    "classifier_preset": "tiny-cpu",
    "draw": "50",
    "queue": "gpu",
}


def _form(
    db: DbDep, principal: Principal, values: dict[str, str], errors: dict[str, str]
) -> dict[str, Any]:
    return {
        "sweeps": service.list_sweeps(db, principal),
        "datasets": datasets.ready_datasets(db, principal),
        "gan_presets": list(GAN_PRESETS),
        "classifier_presets": list(CLASSIFIER_PRESETS),
        "sweepable": grid.SWEEPABLE,
        "queues": QUEUES,
        "max_points": grid.MAX_POINTS,
        "values": values,
        "errors": errors,
    }


@router.get("")
def sweep_list(request: Request, db: DbDep, principal: Researcher) -> Response:
    context = _form(db, principal, dict(DEFAULTS), {})
    chosen = main_dataset_id(context["datasets"])
    context["values"]["dataset"] = "" if chosen is None else str(chosen)
    return render(request, "sweeps/list.html", context)


@router.post("")
async def launch_sweep(request: Request, db: DbDep, principal: Researcher) -> Response:
    form = await request.form()
    values = {key: str(form.get(key, "")).strip() for key in FORM_FIELDS}
    try:
        sweep = service.start_sweep(db, principal, values)
    except SpecError as exc:
        db.rollback()
        context = _form(db, principal, values, {exc.field: exc.message})
        return render(request, "sweeps/list.html", context, status_code=422)
    return redirect(request, f"/sweeps/{sweep.id}", flash=f"Sweep {sweep.id} started.")


@router.get("/{sweep_id}")
def sweep_page(request: Request, sweep_id: int, db: DbDep, principal: Researcher) -> Response:
    sweep = service.get_sweep(db, sweep_id, principal)
    context = service.sweep_view(db, sweep)
    if request.headers.get("hx-request"):
        return render(request, "sweeps/detail.html", context, block="sweep_points")
    return render(request, "sweeps/detail.html", context)
