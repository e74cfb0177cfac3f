"""``synthbench run train-classifier | fidelity | neighbours | attribution`` and
``synthbench imageset import``: the evaluation jobs in this process, as a worker runs them.

A synthetic set is named by id or by name. Sets generated elsewhere come in through
``imageset import FOLDER``: class sub-folders (or a manifest.csv with file,label) give labels.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.gans import _execute, _fail, _own_folder, owner_id, run_cli

imageset_cli = typer.Typer(help="Image sets: import synthetic images generated elsewhere.")


def _dataset(db: Any, name: str) -> Any:
    from app.datasets.service import find_by_name

    found = find_by_name(db, name)
    if found is None:
        _fail(f"No dataset called {name!r} (see `synthbench dataset list`).")
    return found


def _dataset_id(db: Any, ref: str) -> int:
    """A dataset named by id or by name."""
    from app.models import Dataset

    if ref.isdecimal() and db.get(Dataset, int(ref)) is not None:
        return int(ref)
    return _dataset(db, ref).id


def _set_id(db: Any, ref: str) -> int:
    from sqlalchemy import select

    from app.models import ImageSet

    if ref.isdigit() and db.get(ImageSet, int(ref)) is not None:
        return int(ref)
    found = db.scalars(select(ImageSet).where(ImageSet.name == ref).order_by(ImageSet.id.desc()))
    image_set = found.first()
    if image_set is None:
        _fail(f"No image set with id or name {ref!r}.")
    return image_set.id


def _start(
    starter: Any,
    title: str,
    out: Path | None,
    as_json: bool,
    extra: Callable[[int], dict[str, Any]] | None = None,
) -> None:
    from app.db import session_scope
    from app.jobs.specs import SpecError

    try:
        with session_scope() as db:
            job_id = starter(db).id
    except SpecError as exc:
        _fail(f"--{exc.field.replace('_', '-')}: {exc.message}")
    _own_folder(job_id, out)
    _execute(job_id, title, as_json, extra)


def delong_comparison(job_id: int) -> dict[str, Any]:
    """The classifier's row of the utility matrix, as the benchmark pages show it: for a
    synthetic- or mixed-trained model, DeLong of AUC(real-trained reference) - AUC(this) per
    label, with its CI and p; a note where there is no comparison."""
    from app.db import session_scope
    from app.evaluation.service import evaluation_jobs
    from app.evaluation.utility import utility_matrix
    from app.models import Job, JobStatus

    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None
        classifiers = evaluation_jobs(db, None, job.params["dataset_id"])["train_classifier"]
        done = [j for j in classifiers if j.status is JobStatus.succeeded]
        row = next(r for r in utility_matrix(done) if r.job_id == job_id)
    note = row.note
    if row.train_on == "real":
        note = "Real-trained: the reference synthetic- and mixed-trained models are compared with."
    return {"reference_job_id": row.reference_job_id, "delong": row.delong, "delong_note": note}


def _train_on(db: Any, value: str) -> dict[str, str]:
    source, _, ref = value.partition(":")
    if source in ("synthetic", "mixed"):
        if not ref:
            _fail(f"--train-on {source}:SET names the synthetic image set (id or name).")
        return {"train_on": source, "image_set_id": str(_set_id(db, ref))}
    return {"train_on": source}


@run_cli.command("train-classifier")
def train_classifier_command(
    dataset: Annotated[
        str, typer.Option(help="Name of a ready dataset (tested on its test split).")
    ],
    train_on: Annotated[str, typer.Option(help="real, synthetic:SET or mixed:SET")] = "real",
    preset: Annotated[str, typer.Option(help="tiny-cpu, seed000-densenet121, …")] = "tiny-cpu",
    arch: Annotated[str | None, typer.Option(help="densenet121, efficientnet-b0…")] = None,
    resolution: Annotated[int | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment")] = None,
    balanced: Annotated[bool | None, typer.Option(help="Class-balanced sampler.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    test_on: Annotated[
        list[str] | None, typer.Option(help="Also score on this synthetic set (repeatable).")
    ] = None,
    external_dataset: Annotated[
        list[str] | None,
        typer.Option(
            help="External validation: also test on every image of this ready dataset (id or "
            "name; another site's data with the same label names; repeatable)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (resumes if it has one).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train a classifier on real, synthetic or mixed images; AUC on the real test split."""
    from app.evaluation.requests import ClassifierRequest
    from app.evaluation.service import start_classifier

    values = {
        "preset": preset,
        "arch": arch,
        "resolution": resolution,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "augment": augment,
        "balanced": balanced,
        "seed": seed,
    }
    clean = {k: ("" if v is None else v) for k, v in values.items()}

    def start(db: Any) -> Any:
        found = _dataset(db, dataset)
        sets = ",".join(str(_set_id(db, ref)) for ref in test_on or [])
        external = ",".join(str(_dataset_id(db, ref)) for ref in external_dataset or [])
        values = {
            **clean,
            **_train_on(db, train_on),
            "test_set_ids": sets,
            "external_dataset_id": external,
        }
        return start_classifier(db, None, found, ClassifierRequest.from_form(values))

    _start(start, f"classifier ({train_on})", out, as_json, delong_comparison)


def _set_values(db: Any, synthetic: str, resolution: int | None, max_images: int) -> dict:
    return {
        "image_set_id": str(_set_id(db, synthetic)),
        "resolution": "" if resolution is None else str(resolution),
        "max_images": str(max_images),
    }


@run_cli.command("fidelity")
def fidelity_command(
    real: Annotated[str, typer.Option(help="Name of the real dataset.")],
    synthetic: Annotated[str, typer.Option(help="Synthetic image set (id or name).")],
    features: Annotated[
        str, typer.Option(help="inception, domain:CLASSIFIER_JOB_ID or a TorchScript path")
    ] = "inception",
    resolution: Annotated[int | None, typer.Option()] = None,
    max_images: Annotated[int, typer.Option(help="Images per set at most.")] = 10_000,
    fid_resize: Annotated[
        str,
        typer.Option(
            help="Inception resize: antialias (synthbench), tf (TF1 reference) or clean "
            "(clean-fid's PIL bicubic, for FIDs beside clean-fid's published ones)"
        ),
    ] = "antialias",
    fid_resamples: Annotated[
        int,
        typer.Option(
            help="Bootstrap resamples for each FID's 95% interval (0: none). Above 2048 "
            "images per set each costs a 2048 x 2048 eigenproblem: seconds on a CPU."
        ),
    ] = 200,
    out: Annotated[Path | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """FID, KID, precision/recall, density/coverage against real train, with the real floor.
    The JSON result names the FID convention and gives each FID's bootstrap interval."""
    from app.evaluation.requests import FidelityRequest
    from app.evaluation.service import start_fidelity

    if features == "inception":
        chosen = {"features": "inception"}
    elif features.startswith("domain:"):
        chosen = {"features": "domain", "classifier_job_id": features.split(":", 1)[1]}
    else:
        chosen = {"features": "path", "features_path": str(Path(features).resolve())}

    def start(db: Any) -> Any:
        values = {**_set_values(db, synthetic, resolution, max_images), **chosen}
        values |= {"fid_resize": fid_resize, "fid_resamples": str(fid_resamples)}
        return start_fidelity(db, None, _dataset(db, real), FidelityRequest.from_form(values))

    _start(start, f"fidelity ({features})", out, as_json)


@run_cli.command("neighbours")
def neighbours_command(
    real: Annotated[str, typer.Option(help="Name of the real dataset.")],
    synthetic: Annotated[str, typer.Option(help="Synthetic image set (id or name).")],
    k: Annotated[int, typer.Option(help="Neighbours per synthetic image.")] = 5,
    domain: Annotated[
        int | None, typer.Option(help="Real-trained classifier job for domain features.")
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            help="Release gate: one-sided significance level of the exact test of the flagged "
            "count against chance (fails only for more flagged images than chance)."
        ),
    ] = 0.05,
    level: Annotated[str, typer.Option(help="p1 or p5 of the real-test baseline.")] = "p5",
    resolution: Annotated[int | None, typer.Option()] = None,
    max_images: Annotated[int, typer.Option()] = 10_000,
    out: Annotated[Path | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Nearest real training images of every synthetic image; memorisation flags; verdict."""
    from app.evaluation.requests import NeighboursRequest
    from app.evaluation.service import start_neighbours

    def start(db: Any) -> Any:
        values = {
            **_set_values(db, synthetic, resolution, max_images),
            "k": str(k),
            "alpha": str(alpha),
            "level": level,
            "classifier_job_id": "" if domain is None else str(domain),
        }
        request = NeighboursRequest.from_form(values)
        return start_neighbours(db, None, _dataset(db, real), request)

    _start(start, "nearest neighbours", out, as_json)


@run_cli.command("attribution")
def attribution_command(
    real_job: Annotated[int, typer.Option(help="Real-trained classifier job.")],
    synthetic_job: Annotated[int, typer.Option(help="Synthetic-trained classifier job.")],
    methods: Annotated[
        str, typer.Option(help="Comma-separated.")
    ] = "integrated_gradients,grad_cam",
    n_images: Annotated[int, typer.Option(help="Test images to explain.")] = 6,
    n_steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 32,
    out: Annotated[Path | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Attribution maps of two classifiers on the same real test images, side by side."""
    from app.evaluation.requests import AttributionRequest
    from app.evaluation.service import start_attribution

    values = {
        "real_job_id": str(real_job),
        "synthetic_job_id": str(synthetic_job),
        "methods": methods,
        "n_images": str(n_images),
        "n_steps": str(n_steps),
    }

    def start(db: Any) -> Any:
        return start_attribution(db, None, AttributionRequest.from_form(values))

    _start(start, "attribution", out, as_json)


@imageset_cli.command("import")
def import_command(
    folder: Annotated[Path, typer.Argument(help="Folder of images (class sub-folders).")],
    name: Annotated[str, typer.Option(help="Name of the new image set.")],
    owner: Annotated[str, typer.Option(help="User who owns the set (sees it on the web).")],
    description: Annotated[str, typer.Option()] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import synthetic images generated elsewhere as an image set, with their labels.

    A sub-folder with a manifest.csv of its own (the dicom/ copies of `run sample --dicom`) is
    a set of its own: it is left out, and can be imported by naming it."""
    import json

    from app.db import session_scope
    from app.imagesets.folder_upload import FolderLayoutError, folder_zip
    from app.imagesets.service import IngestError, create_image_set
    from app.models import Origin

    if not folder.is_dir():
        _fail(f"{folder} is not a folder.")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "upload.zip"
        try:
            upload = folder_zip(folder, archive)
        except FolderLayoutError as exc:
            _fail(str(exc))
        if upload.n_images == 0:
            _fail(f"{folder} holds no PNG, JPEG or DICOM image.")
        for nested in upload.left_out:
            typer.echo(
                f"left out {nested}/: it has a manifest.csv of its own (import it on its own)",
                err=True,
            )
        with session_scope() as db:
            user_id = owner_id(db, owner)
            try:
                image_set = create_image_set(
                    db,
                    owner_id=user_id,
                    name=name,
                    default_origin=Origin.synthetic,
                    upload_path_or_file=archive,
                    description=description or f"Imported from {folder.resolve()}",
                )
            except IngestError as exc:
                _fail(*exc.errors)
            image_set.kind = "import"
            db.commit()
            set_id = image_set.id
    if as_json:
        shown = {"image_set_id": set_id, "name": name, "n_images": upload.n_images}
        typer.echo(json.dumps({**shown, "left_out": upload.left_out}))
    else:
        typer.echo(f"image set {set_id} ({name})")
