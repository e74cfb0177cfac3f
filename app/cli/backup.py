"""``synthbench export`` and ``synthbench import``: a whole study as one zip and back.

Registered as top-level commands in app/cli/__init__.py. The work is in app/studies/backup.py; these
only parse options, open a session and print. Reports go to stdout, refusals to stderr with
exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer


def _fail(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


def export_command(
    study_id: Annotated[int, typer.Argument(help="the study's id")],
    out: Annotated[Path, typer.Option("--out", help="the zip file to write")],
    force: Annotated[bool, typer.Option("--force", help="replace --out if it exists")] = False,
) -> None:
    """Back up a study (design, images, readers, schedules, answers) into one zip file."""
    from app.db import get_sessionmaker
    from app.studies.backup import BackupError, export_study

    if out.exists() and not force:
        _fail(f"{out} exists already; pass --force to replace it.")
    if not out.parent.is_dir():
        _fail(f"There is no folder {out.parent} to write {out.name} into.")
    try:
        with get_sessionmaker()() as db:
            report = export_study(db, study_id, out)
    except BackupError as exc:
        _fail("Nothing was exported:", *exc.problems)
    typer.echo(
        f"Exported study {report.study_id} ({report.name!r}) to {report.path}: "
        f"{report.images} images in {report.files} files, {report.readers} readers, "
        f"{report.answers} answers, {report.size_bytes / 1e6:,.1f} MB."
    )
    if report.missing_originals:
        typer.echo(
            f"{report.missing_originals} image(s) had no original file here; the archive "
            "holds their blinded version only."
        )


def import_command(
    file: Annotated[Path, typer.Argument(help="a zip written by `synthbench export`")],
    owner: Annotated[
        str | None,
        typer.Option(
            "--owner",
            help="researcher who owns the imported study and image sets "
            "(default: the archived owners where they exist here, else the first admin)",
        ),
    ] = None,
    as_new: Annotated[
        bool,
        typer.Option(
            "--as-new", help="import even if this study is here already, as a separate copy"
        ),
    ] = False,
) -> None:
    """Restore a study backup as a new study; all of it or, on any problem, nothing."""
    from app.db import get_sessionmaker
    from app.studies.backup import BackupError, import_study

    try:
        with get_sessionmaker()() as db:
            report = import_study(db, file, owner=owner, as_new=as_new)
    except BackupError as exc:
        _fail(f"Nothing was imported from {file}:", *exc.problems)
    typer.echo(
        f"Imported {report.name!r} as study {report.study_id} (study {report.source_study_id} "
        f"in the archive), owned by {report.owner}: {report.image_sets} image sets, "
        f"{report.images} images, {report.entries} schedule entries, {report.answers} answers."
    )
    if report.readers_matched:
        typer.echo(f"Readers matched by username: {', '.join(report.readers_matched)}.")
    if report.readers_created:
        typer.echo(
            f"Readers created without a password: {', '.join(report.readers_created)}. "
            "They cannot sign in here; their answers count as before. Readers who had not "
            "finished must be invited again (an invitation starts a new reader)."
        )
    for note in report.notes:
        typer.echo(f"Note: {note}.")
