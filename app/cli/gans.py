"""``synthbench run ...``: run a job in this process, exactly as a worker would.

The command builds the same job spec the web form builds, creates the Job row (with its
artefact folder set to --out) and runs it through `workers.runner.execute`, with a progress
bar. Running the same command again on the same --out resumes from the last checkpoint.
`--json` prints the job's result (metrics) as JSON on stdout, with the job's id and its
`resources` (wall time, device, energy and CO2 estimate: what the job page shows).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

run_cli = typer.Typer(help="Run a job in this process (same code as the workers).")


def _fail(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


def _execute(
    job_id: int,
    title: str,
    as_json: bool,
    extra: Callable[[int], dict[str, Any]] | None = None,
) -> None:
    """Run the job; with `as_json`, print its result plus `extra(job_id)`: what its page shows
    beyond the result (a classifier's DeLong comparison, say)."""
    from app.cli.datasets import _run
    from app.db import session_scope
    from app.models import Job, JobStatus

    typer.echo(f"job {job_id}", err=True)
    _run(job_id, title)
    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None
        status, result, error = job.status, job.result, job.error
        resources = job.resources
    if status is not JobStatus.succeeded:
        _fail(f"job {job_id} {status.value}: {(error or '').split(chr(10) * 2)[0]}")
    if as_json:
        shown = {"job_id": job_id, **(result or {}), "resources": resources}
        typer.echo(json.dumps({**shown, **(extra(job_id) if extra else {})}, indent=2))
    else:
        typer.echo(f"job {job_id} succeeded")


def owner_id(db: Any, username: str) -> int:
    """The id of the user called `username` (the sign-in name, often an email address)."""
    from sqlalchemy import select

    from app.models import User

    found = db.scalar(select(User.id).where(User.username == username))
    if found is None:
        _fail(f"No user called {username!r} (see `synthbench user create`).")
    return int(found)


def _own_folder(job_id: int, out: Path | None) -> None:
    if out is None:
        return
    from app.db import session_scope
    from app.models import Job

    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None
        job.artefact_dir = str(out.expanduser().resolve())


@run_cli.command("train-gan")
def train_gan_command(
    dataset: Annotated[str, typer.Option(help="Name of a ready dataset.")],
    arch: Annotated[str | None, typer.Option(help="dcgan, wgan-gp, sngan, acgan, progan…")] = None,
    resolution: Annotated[
        int | None, typer.Option(help="One of the dataset's resolutions.")
    ] = None,
    kimg: Annotated[float | None, typer.Option(help="Thousands of images to train on.")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    tick_kimg: Annotated[float | None, typer.Option()] = None,
    snapshot_ticks: Annotated[int | None, typer.Option()] = None,
    augment: Annotated[str | None, typer.Option(help="none, diffaugment or ada")] = None,
    fid: Annotated[str | None, typer.Option(help="FID features: inception or none")] = None,
    fid_images: Annotated[int | None, typer.Option()] = None,
    fid_patience: Annotated[int | None, typer.Option(help="Early stop after N snapshots.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    domain_classifier: Annotated[
        Path | None, typer.Option(help="TorchScript classifier for the domain loss (seed 001).")
    ] = None,
    domain_lambda: Annotated[float | None, typer.Option(help="Weight of the domain loss.")] = None,
    dp_noise: Annotated[
        float | None, typer.Option(help="DP noise multiplier (Opacus on D; dcgan/acgan/stylegan2).")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="tiny-cpu, seed000-progan-32, …")] = None,
    per_class: Annotated[
        bool,
        typer.Option(
            "--per-class", help="Seed 002: one GAN per class, each on that class's images."
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Run folder (resumes if it has one).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train a GAN on a dataset; resumable, with ticks, snapshots and optional FID."""
    from app.datasets.service import find_by_name
    from app.db import session_scope
    from app.gans.options import gan_config
    from app.gans.service import start_training
    from app.jobs.specs import SpecError

    values = {
        "arch": arch,
        "resolution": resolution,
        "kimg": kimg,
        "batch_size": batch_size,
        "tick_kimg": tick_kimg,
        "snapshot_ticks": snapshot_ticks,
        "augment": augment,
        "fid_features": fid,
        "fid_images": fid_images,
        "fid_patience": fid_patience,
        "seed": seed,
        "device": device,
        "domain_classifier": str(domain_classifier.resolve()) if domain_classifier else None,
        "domain_lambda": domain_lambda,
        "dp_noise_multiplier": dp_noise,
        "per_class": per_class or None,  # None: the preset's (no preset has it)
    }
    try:
        with session_scope() as db:
            found = find_by_name(db, dataset)
            if found is None:
                _fail(f"No dataset called {dataset!r} (see `synthbench dataset list`).")
            resolutions = tuple(found.info.get("resolutions", []))
            config = gan_config(values, preset=preset, resolutions=resolutions)
            job_id = start_training(db, owner_id=None, dataset=found, config=config, queue=None).id
    except SpecError as exc:
        _fail(f"--{exc.field.replace('_', '-')}: {exc.message}")
    _own_folder(job_id, out)
    _execute(job_id, f"training {config.arch}", as_json)


@run_cli.command("sample")
def sample_command(
    job: Annotated[int, typer.Option(help="Id of the training job to sample from.")],
    per_class: Annotated[int, typer.Option(help="Images per class.")] = 16,
    name: Annotated[str, typer.Option(help="Name of the synthetic image set.")] = "",
    truncation_psi: Annotated[
        float,
        typer.Option(help="StyleGAN2 only: the other families have no mapping network, ignore it."),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the first image.")] = 0,
    checkpoint: Annotated[
        str,
        typer.Option(help="best (lowest FID; the last if the run kept none) or last snapshot."),
    ] = "best",
    classes: Annotated[
        str, typer.Option(help="Classes to sample, by name or 0-based index: 0,2 (default all).")
    ] = "",
    owner: Annotated[
        str | None,
        typer.Option(help="User (sign-in name) to register the samples as an image set for."),
    ] = None,
    dicom: Annotated[
        bool, typer.Option(help="Also write DICOM marked as synthetic (a set of its own, dicom/).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the images.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Generate images from a training job's checkpoint (PNG + manifest.csv); with --owner,
    also an image set of that user's, as sampling from the web does."""
    from dataclasses import replace

    from app.db import session_scope
    from app.gans.sample_classes import pick_classes
    from app.gans.service import parse_sample_options, run_logs, start_sampling
    from app.jobs.specs import SpecError
    from app.models import Job

    try:
        with session_scope() as db:
            train_job = db.get(Job, job)
            if train_job is None:
                _fail(f"No job {job}.")
            user_id = owner_id(db, owner) if owner else None
            options = parse_sample_options(
                name or f"Samples of job {job}", per_class, truncation_psi, seed, dicom, checkpoint
            )
            # run.json names them from the first tick: a run still training can be sampled.
            run = train_job.result or run_logs(train_job)["info"]
            options = replace(options, classes=pick_classes(classes, run.get("class_names", [])))
            started = start_sampling(
                db, owner_id=user_id, train_job=train_job, options=options, queue=None
            )
            job_id = started.id
            _say_sampling(started.params, train_job.params)
    except SpecError as exc:
        _fail(f"--{exc.field.replace('_', '-')}: {exc.message}")
    _own_folder(job_id, out)
    _execute(job_id, "sampling", as_json)


def _say_sampling(params: dict[str, Any], train_params: dict[str, Any]) -> None:
    """Which checkpoint will be read, and a warning when psi will be ignored (on stderr)."""
    from app.gans.service import truncation_note

    used, path = params["checkpoint_used"], params["checkpoint"]
    typer.echo(f"sampling the {used} checkpoint {path}", err=True)
    arch = str((train_params.get("config") or {}).get("arch", "torchscript"))  # none: imported
    note = truncation_note(arch, float(params["truncation_psi"]))
    if note:
        typer.echo(f"warning: {note}", err=True)


@run_cli.command("import-generator")
def import_generator_command(
    module: Annotated[Path, typer.Argument(help="TorchScript file (torch.jit.save).")],
    manifest: Annotated[
        Path,
        typer.Option(help="JSON: latent_size, classes, resolution, channels, output_range."),
    ],
    name: Annotated[str, typer.Option(help="Name of the generator (default: manifest's).")] = "",
    owner: Annotated[
        str | None, typer.Option(help="User (sign-in name) who may see and sample it.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the checked generator.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bring your own generator: check a TorchScript module against its manifest and register
    it as a run that `run sample --job ID` samples like a trained GAN."""
    from app.db import session_scope
    from app.gans.byo import start_import
    from app.jobs.specs import SpecError

    for path in (module, manifest):
        if not path.is_file():
            _fail(f"No file {path}.")
    try:
        with session_scope() as db, module.open("rb") as upload:
            user_id = owner_id(db, owner) if owner else None
            job = start_import(
                db,
                owner_id=user_id,
                upload=upload,
                manifest_text=manifest.read_bytes(),
                name=name,
            )
            job_id = job.id
    except SpecError as exc:
        _fail(f"--{exc.field.replace('_', '-')}: {exc.message}")
    _own_folder(job_id, out)
    _execute(job_id, "checking the generator", as_json)


@run_cli.command("translate")
def translate_command(
    dataset_a: Annotated[str, typer.Option(help="Source dataset (e.g. rendered DRRs).")],
    dataset_b: Annotated[str, typer.Option(help="Target style dataset (e.g. radiographs).")],
    resolution: Annotated[int, typer.Option(help="Stored in both datasets.")] = 64,
    kimg: Annotated[float, typer.Option(help="Thousands of images to train on.")] = 10.0,
    batch_size: Annotated[int, typer.Option()] = 1,
    tick_kimg: Annotated[float, typer.Option()] = 1.0,
    snapshot_ticks: Annotated[int, typer.Option()] = 5,
    base_channels: Annotated[int, typer.Option()] = 64,
    seed: Annotated[int, typer.Option()] = 0,
    split: Annotated[str, typer.Option(help="Split of A to translate (or 'all').")] = "test",
    name: Annotated[str, typer.Option(help="Name of the translated image set.")] = "",
    out: Annotated[Path | None, typer.Option(help="Run folder (resumes if it has one).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """CycleGAN (seed 004): learn A -> B unpaired, then translate A's images."""
    from app.datasets.service import find_by_name
    from app.db import session_scope
    from app.gans.service import start_translation
    from app.jobs.specs import SpecError
    from ml.training.cyclegan_config import CycleGanConfig

    config = CycleGanConfig(
        resolution=resolution,
        kimg=kimg,
        batch_size=batch_size,
        tick_kimg=tick_kimg,
        snapshot_ticks=snapshot_ticks,
        base_channels=base_channels,
        seed=seed,
        device="auto",
    )
    try:
        with session_scope() as db:
            found = {n: find_by_name(db, n) for n in (dataset_a, dataset_b)}
            missing = [n for n, d in found.items() if d is None]
            if missing:
                _fail(f"No dataset called {missing[0]!r} (see `synthbench dataset list`).")
            job_id = start_translation(
                db,
                owner_id=None,
                dataset_a=found[dataset_a],
                dataset_b=found[dataset_b],
                config=config,
                name=name or f"{dataset_a} translated to {dataset_b}",
                split=None if split == "all" else split,
            ).id
    except SpecError as exc:
        _fail(f"--{exc.field.replace('_', '-')}: {exc.message}")
    _own_folder(job_id, out)
    _execute(job_id, "CycleGAN", as_json)
