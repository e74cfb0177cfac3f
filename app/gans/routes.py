"""GAN training form, the snapshot slider fragment, and sampling a checkpoint (researchers)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.datastructures import FormData

from app.auth.service import Principal
from app.datasets import service as datasets
from app.datasets.choice import main_dataset_id
from app.deps import DbDep, Researcher
from app.gans import byo, estimates, service
from app.gans.options import (
    FIELDS,
    PRESET_LABELS,
    PRESETS,
    TRANSLATE_FIELDS,
    gan_config,
    translate_config,
)
from app.jobs import service as jobs
from app.jobs.specs import QUEUES, SpecError
from app.models import Dataset, Job
from app.web.body_limit import size_text, upload_limit
from app.web.templating import redirect, render
from ml.networks.gan_families import FAMILIES as ARCHS
from ml.training.gan_config import AUGMENTS, GanConfig

router = APIRouter(prefix="/gans")
FORM_FIELDS = (
    "arch",
    "resolution",
    "batch_size",
    "kimg",
    "tick_kimg",
    "snapshot_ticks",
    "augment",
    "ema_kimg",
    "fid_features",
    "fid_images",
    "fid_patience",
    "seed",
    "dp_noise_multiplier",
    "dp_max_grad_norm",
    "per_class",
)


def _form(
    db: DbDep, principal: Principal, values: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    return {
        "datasets": datasets.ready_datasets(db, principal),
        "presets": PRESETS,
        "preset_labels": PRESET_LABELS,
        "archs": list(ARCHS),
        "augments": AUGMENTS,
        "queues": QUEUES,
        "values": values,
        "errors": errors,
    }


@router.get("/new")
def new_training(
    request: Request,
    db: DbDep,
    principal: Researcher,
    dataset: Annotated[int | None, Query()] = None,
    preset: Annotated[str, Query(max_length=50)] = "tiny-cpu",
) -> Response:
    if dataset is None:
        dataset = main_dataset_id(datasets.ready_datasets(db, principal))
    values: dict[str, Any] = {"dataset": dataset, "preset": preset, "queue": "gpu"}
    values.update(PRESETS.get(preset, {}))
    return render(request, "gans/new.html", _form(db, principal, values, {}))


def _checked(db: DbDep, principal: Principal, values: dict[str, str]) -> tuple[Dataset, GanConfig]:
    """The form's dataset and settings, checked: shared by the launch and the estimate, so
    the estimate describes exactly the run that "Start training" would queue."""
    dataset = datasets.chosen_dataset(db, principal, values["dataset"])
    given = {k: values[k] for k in FORM_FIELDS if k in FIELDS}
    config = gan_config(
        given,
        preset=values["preset"] or None,
        resolutions=tuple(dataset.info.get("resolutions", [])),
    )
    return dataset, config


@router.get("/estimate")
def estimate_fragment(request: Request, db: DbDep, principal: Researcher) -> Response:
    """Memory and run-time estimate for the form's current values (htmx fragment)."""
    query = request.query_params
    values = {key: str(query.get(key, "")).strip() for key in (*FORM_FIELDS, "preset", "dataset")}
    context: dict[str, Any] = {"estimate": None, "error": None}
    try:
        dataset, config = _checked(db, principal, values)
        context["estimate"] = estimates.estimate(db, dataset, config)
    except SpecError as exc:
        # 200, not 422: htmx swaps only successful responses, and the message is the answer.
        context["error"] = exc.message
    return render(request, "gans/estimate.html", context)


@router.post("")
async def launch_training(request: Request, db: DbDep, principal: Researcher) -> Response:
    form: FormData = await request.form()
    keys = (*FORM_FIELDS, "preset", "queue", "job_name")
    values = {key: str(form.get(key, "")).strip() for key in keys}
    values["dataset"] = str(form.get("dataset", ""))
    try:
        dataset, config = _checked(db, principal, values)
        job = service.start_training(
            db,
            owner_id=principal.user.id,
            dataset=dataset,
            config=config,
            queue=values["queue"],
            preset=values["preset"] or None,
            name=values["job_name"][:200],
        )
    except SpecError as exc:
        db.rollback()
        context = _form(db, principal, values, {exc.field: exc.message})
        return render(request, "gans/new.html", context, status_code=422)
    jobs.commit_and_enqueue(db, job)
    return redirect(request, f"/jobs/{job.id}", flash=f"Training job {job.id} queued.")


def _training_job(db: DbDep, job_id: int, principal: Principal) -> Job:
    return jobs.visible_job(db, job_id, principal, "train_gan", "training job")


@router.get("/{job_id}/grid")
def grid_fragment(
    request: Request,
    job_id: int,
    db: DbDep,
    principal: Researcher,
    snapshot: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    job = _training_job(db, job_id, principal)
    snapshots = service.run_logs(job)["snapshots"]
    chosen = next((s for s in snapshots if s["snapshot"] == snapshot), None)
    if chosen is None:
        raise HTTPException(404, f"Job {job_id} has no snapshot {snapshot}.")
    return render(request, "gans/grid.html", {"job": job, "shot": chosen})


def _sampleable_job(db: DbDep, job_id: int, principal: Principal) -> Job:
    """A training run, or an imported generator: both are sampled alike."""
    imported = byo.visible_generator(db, job_id, principal)
    return imported if imported is not None else _training_job(db, job_id, principal)


@router.post("/{job_id}/sample")
async def sample(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    job = _sampleable_job(db, job_id, principal)
    form = await request.form()
    values = {k: str(form.get(k, "")) for k in ("name", "per_class", "truncation_psi", "seed")}
    try:
        options = service.parse_sample_options(
            values["name"],
            values["per_class"],
            values["truncation_psi"] or 1.0,
            values["seed"] or 0,
            form.get("dicom", ""),
            str(form.get("checkpoint", "")) or "best",
        )
        sampling = service.start_sampling(
            db, owner_id=principal.user.id, train_job=job, options=options, queue=None
        )
        jobs.rename(sampling, str(form.get("job_name", ""))[:200])
    except SpecError as exc:
        db.rollback()
        return redirect(request, f"/jobs/{job_id}", flash=exc.message, kind="error")
    jobs.commit_and_enqueue(db, sampling)
    return redirect(request, f"/jobs/{sampling.id}", flash=f"Sampling job {sampling.id} queued.")


TRANSLATE_DEFAULTS = {
    "resolution": "64",
    "kimg": "10",
    "batch_size": "1",
    "tick_kimg": "1",
    "snapshot_ticks": "5",
    "seed": "0",
    "split": "test",
}


def _translate_form(
    db: DbDep, principal: Principal, values: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    return {"datasets": datasets.ready_datasets(db, principal), "values": values, "errors": errors}


@router.get("/translate")
def new_translation(request: Request, db: DbDep, principal: Researcher) -> Response:
    context = _translate_form(db, principal, dict(TRANSLATE_DEFAULTS), {})
    return render(request, "gans/translate.html", context)


@router.post("/translate")
async def launch_translation(request: Request, db: DbDep, principal: Researcher) -> Response:
    form = await request.form()
    keys = (*TRANSLATE_FIELDS, "dataset_a", "dataset_b", "name", "split", "job_name")
    values = {key: str(form.get(key, "")).strip() for key in keys}
    try:
        config = translate_config(values)
        chosen = [
            datasets.chosen_dataset(db, principal, values[key], key)
            for key in ("dataset_a", "dataset_b")
        ]
        job = service.start_translation(
            db,
            owner_id=principal.user.id,
            dataset_a=chosen[0],
            dataset_b=chosen[1],
            config=config,
            name=values["name"] or f"{chosen[0].name} in the style of {chosen[1].name}",
            split=values["split"] or None,
        )
        jobs.rename(job, values["job_name"][:200])
    except SpecError as exc:
        db.rollback()
        context = _translate_form(db, principal, values, {exc.field: exc.message})
        return render(request, "gans/translate.html", context, status_code=422)
    jobs.commit_and_enqueue(db, job)
    return redirect(request, f"/jobs/{job.id}", flash=f"Translation job {job.id} queued.")


def _import_form(values: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "values": values,
        "errors": errors,
        "max_upload": size_text(byo.max_generator_bytes()),
        "example": EXAMPLE_MANIFEST,
    }


EXAMPLE_MANIFEST = """{
  "name": "StyleGAN2 trained at site B",
  "latent_size": 512,
  "classes": ["normal", "pneumonia"],
  "resolution": 256,
  "channels": 1,
  "output_range": [-1, 1]
}"""


@router.get("/import")
def new_import(request: Request, principal: Researcher) -> Response:
    return render(request, "gans/import.html", _import_form({}, {}))


@router.post("/import")
@upload_limit(lambda: byo.max_generator_bytes() + byo.MAX_MANIFEST_BYTES)
def import_generator(
    request: Request,
    db: DbDep,
    principal: Researcher,
    name: Annotated[str, Form(max_length=200)] = "",
    manifest_text: Annotated[str, Form(max_length=byo.MAX_MANIFEST_BYTES)] = "",
    generator: Annotated[UploadFile | None, File()] = None,
    manifest: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Upload a TorchScript generator and its manifest (a file, or JSON pasted in the form)."""
    values = {"name": name, "manifest_text": manifest_text}
    try:
        given: str | bytes = manifest_text
        if manifest is not None and manifest.filename:
            given = manifest.file.read(byo.MAX_MANIFEST_BYTES + 1)
        if generator is None or not generator.filename:
            byo.parse_manifest(given)  # say what is wrong with both at once where we can
            raise SpecError("generator", "Choose the generator's TorchScript file (.pt).")
        job = byo.start_import(
            db,
            owner_id=principal.user.id,
            upload=generator.file,
            manifest_text=given,
            name=name,
        )
    except SpecError as exc:
        db.rollback()
        context = _import_form(values, {exc.field: exc.message})
        return render(request, "gans/import.html", context, status_code=422)
    jobs.commit_and_enqueue(db, job)
    return redirect(
        request, f"/gans/generators/{job.id}", flash=f"Generator check {job.id} queued."
    )


@router.get("/generators/{job_id}")
def generator_page(request: Request, job_id: int, db: DbDep, principal: Researcher) -> Response:
    """An imported generator: its manifest, its check's outcome, its preview, a sample form."""
    job = jobs.visible_job(db, job_id, principal, byo.IMPORT_GENERATOR, "imported generator")
    return render(request, "gans/generator.html", {"job": job})
