"""``synthbench dataset ...``: import, inspect, subset and fetch datasets from the shell.

Imports and subsets run in this process through the same job runner a worker uses (a Job row,
the same handler, the same outcome on the dataset row), with a progress bar instead of a page.
`info --json` prints only JSON on stdout so scripts can parse it; problems go to stderr with
exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy.orm import Session

dataset_cli = typer.Typer(help="Datasets: import, inspect, subset, fetch.", no_args_is_help=True)


def _fail(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


def _owner_id(db: Session, username: str | None) -> int | None:
    from sqlalchemy import select

    from app.models import Role, User

    if not username:
        return None
    user = db.scalar(select(User).where(User.username == username))
    if user is None or user.role not in (Role.admin, Role.researcher):
        _fail(f"--owner: no researcher or admin called {username!r}.")
    return user.id


def _run(job_id: int, title: str) -> None:
    from app.cli.console import progress_bar
    from workers.runner import execute

    with progress_bar() as bar:
        task = bar.add_task(title, total=1.0)

        def listener(done: float, total: float, message: str) -> None:
            bar.update(task, completed=done / total if total else 0.0, description=message[:60])

        execute(job_id, worker="cli", listener=listener)


def _finish(dataset_id: int, job_id: int, as_json: bool) -> None:
    """Print the dataset's summary, with the job that wrote it and that job's `resources` (wall
    time, device, energy: as every `run … --json` prints them)."""
    from app.datasets.service import get_dataset, info_dict
    from app.db import session_scope
    from app.models import DatasetStatus, Job

    with session_scope() as db:
        info = info_dict(get_dataset(db, dataset_id, None))
        job = db.get(Job, job_id)
        info["job_id"] = job_id
        info["resources"] = job.resources if job is not None else None
    _print(info, as_json)
    if info["status"] != DatasetStatus.ready.value:
        raise typer.Exit(1)


def _print(info: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{info['name']} (#{info['id']}, {info['format']}): {info['status']}")
    if info["error"]:
        typer.echo(f"  error: {info['error']}")
    typer.echo(f"  images {info['n_images']}, patients {info['n_patients']}")
    typer.echo(f"  splits {info['splits']}, resolutions {info['resolutions']}")
    typer.echo(f"  labels {', '.join(info['labels'])}")
    typer.echo(f"  content hash {info['content_hash']}")
    for note in info["notes"]:
        typer.echo(f"  {note}")
    # The import's last progress line, so the bar and this report say the same counts.
    summary = info["summary"] or f"{len(info['errors'])} problem(s)"
    if info["errors"]:
        typer.echo(f"  {summary}:")
        for line in info["errors"][:20]:
            typer.echo(f"    {line}")
    elif info["summary"]:
        typer.echo(f"  {summary}")


@dataset_cli.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="Dataset folder (or MedMNIST .npz file).")],
    fmt: Annotated[
        str, typer.Option("--format", help="chexpert, rsna, dicom-csv, folder or medmnist")
    ],
    name: Annotated[str, typer.Option(help="A unique name for the dataset.")],
    resolutions: Annotated[str, typer.Option(help="Comma-separated, e.g. 32,64.")] = "32,64",
    uncertain: Annotated[
        str, typer.Option(help="CheXpert -1 labels: ignore, u-ones or u-zeros.")
    ] = "ignore",
    window: Annotated[
        str | None,
        typer.Option(help="CT window preset (brain, bone...) or stack (3 channels)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the patient split.")] = 0,
    rule: Annotated[str, typer.Option(help="Square images by pad or crop.")] = "pad",
    colour: Annotated[
        str, typer.Option(help="auto (RGB when the images are colour), grey or rgb.")
    ] = "auto",
    owner: Annotated[str | None, typer.Option(help="Owning researcher's username.")] = None,
    description: str = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Import a dataset: decode, resize, split by patient, store; report every bad file."""
    from app.datasets.options import parse_import_options, parse_name
    from app.datasets.service import start_import
    from app.db import session_scope
    from app.jobs.specs import SpecError

    if not path.exists():
        _fail(f"{path}: no such file or folder.")
    try:
        options = parse_import_options(
            fmt,
            resolutions=resolutions,
            uncertain=uncertain,
            window=window,
            seed=seed,
            rule=rule,
            colour=colour,
        )
        with session_scope() as db:
            dataset, job = start_import(
                db,
                owner_id=_owner_id(db, owner),
                name=parse_name(name),
                source=path.expanduser().resolve(),
                options=options,
                description=description,
            )
            dataset_id, job_id = dataset.id, job.id
    except SpecError as exc:
        _fail(f"--{exc.field}: {exc.message}")
    _run(job_id, f"importing {name}")
    _finish(dataset_id, job_id, as_json)


@dataset_cli.command("subset")
def subset_command(
    dataset: Annotated[str, typer.Argument(help="Name of the dataset to take a subset of.")],
    name: Annotated[str, typer.Option(help="A unique name for the new version.")],
    kind: Annotated[str, typer.Option(help="classes, samples_per_class or all")],
    value: Annotated[int, typer.Option(help="Number of classes or samples per class.")] = 0,
    resolutions: Annotated[
        str | None, typer.Option(help="Keep only these stored resolutions.")
    ] = None,
    seed: int = 0,
    owner: Annotated[str | None, typer.Option(help="Owning researcher's username.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write a benchmark subset (seed 000's axes) as a new named dataset version."""
    from app.datasets.options import parse_name, parse_subset_options
    from app.datasets.service import find_by_name, start_subset
    from app.db import session_scope
    from app.jobs.specs import SpecError

    try:
        with session_scope() as db:
            parent = find_by_name(db, dataset)
            if parent is None:
                _fail(f"No dataset called {dataset!r} (see `synthbench dataset list`).")
            options = parse_subset_options(
                kind,
                value,
                seed=seed,
                resolutions=resolutions,
                available=tuple(parent.info.get("resolutions", [])),
            )
            created, job = start_subset(
                db,
                owner_id=_owner_id(db, owner),
                parent=parent,
                name=parse_name(name),
                options=options,
            )
            dataset_id, job_id = created.id, job.id
    except SpecError as exc:
        _fail(f"--{exc.field}: {exc.message}")
    _run(job_id, f"writing {name}")
    _finish(dataset_id, job_id, as_json)


@dataset_cli.command("info")
def info_command(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Counts, labels, splits, resolutions, content hash and the import report."""
    from app.datasets.service import find_by_name, info_dict
    from app.db import session_scope

    with session_scope() as db:
        dataset = find_by_name(db, name)
        if dataset is None:
            _fail(f"No dataset called {name!r} (see `synthbench dataset list`).")
        _print(info_dict(dataset), as_json)


@dataset_cli.command("list")
def list_command() -> None:
    """One line per dataset."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Dataset

    with session_scope() as db:
        for d in db.scalars(select(Dataset).order_by(Dataset.id)):
            typer.echo(
                f"{d.id:>4}  {d.status.value:<9}  {d.format:<9}  {d.n_images:>7} images  {d.name}"
            )


@dataset_cli.command("fetch")
def fetch_command(
    source: Annotated[str, typer.Argument(help="medmnist:NAME, e.g. medmnist:pneumoniamnist")],
    dest: Annotated[Path, typer.Option(help="Folder to download into.")] = Path("."),
    size: Annotated[int | None, typer.Option(help="MedMNIST+ size: 64, 128 or 224.")] = None,
) -> None:
    """Download an official dataset file (needs internet), then import it with `import`."""
    from ml.data.formats import DatasetFetchError
    from ml.data.formats.medmnist import fetch_medmnist

    scheme, _, name = source.partition(":")
    if scheme != "medmnist" or not name:
        _fail(f"Unknown source {source!r}; expected medmnist:NAME (e.g. medmnist:pneumoniamnist).")
    try:
        path = fetch_medmnist(name, dest, size=size)
    except (DatasetFetchError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(str(path))
    typer.echo(
        f"Import it with: synthbench dataset import {path} --format medmnist --name {name}",
        err=True,
    )
