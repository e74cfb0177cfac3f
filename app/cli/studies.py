"""``synthbench study ...``: import ratings, print a study's statistics, audit its blinding.

Registered in app/cli/__init__.py as ``cli.add_typer(study_cli, name="study")``. Heavy imports
(scipy, statsmodels) happen inside the commands so that ``synthbench --help`` stays quick.
Results go to stdout and nothing else does, so scripts can capture them; problems go to stderr
with exit code 1.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy.orm import Session

study_cli = typer.Typer(help="Reader-study results and imported ratings.", no_args_is_help=True)


class PolicyChoice(enum.StrEnum):
    wrong = "wrong"
    excluded = "excluded"


def _fail(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


def _owner_id(db: Session, username: str | None) -> int:
    from sqlalchemy import select

    from app.models import Role, User

    if username:
        user = db.scalar(select(User).where(User.username == username))
        if user is None or user.role not in (Role.admin, Role.researcher):
            _fail(f"There is no researcher or admin called {username!r}.")
        return user.id
    # Whoever runs the CLI can reach the database anyway: an admin owning the study is honest.
    admin = db.scalar(select(User).where(User.role == Role.admin).order_by(User.id))
    if admin is None:
        _fail(
            "No admin account to own the study: pass --owner USERNAME, or create one with "
            "`synthbench user create NAME --role admin`."
        )
    return admin.id


@study_cli.command("import-ratings")
def import_ratings_command(
    file: Annotated[
        Path,
        typer.Argument(help="CSV with reader, image, truth, answer columns, or an iMRMC .imrmc"),
    ],
    name: Annotated[str, typer.Option("--name", help="name of the new study")],
    owner: Annotated[
        str | None, typer.Option("--owner", help="researcher who owns it (default: first admin)")
    ] = None,
) -> None:
    """Import ratings collected elsewhere as a new study; prints only its id."""
    from app.db import session_scope
    from app.domain.imrmc_format import looks_like_imrmc
    from app.studies.imports import ImportRatingsError, import_imrmc, import_ratings

    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        _fail(f"No such file: {file}")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"Cannot read {file} as UTF-8 text: {exc}")
    try:
        with session_scope() as db:
            owner_id = _owner_id(db, owner)
            if file.suffix.lower() == ".imrmc" or looks_like_imrmc(text):
                study = import_imrmc(db, owner_id=owner_id, name=name, text=text)
            else:
                study = import_ratings(db, owner_id=owner_id, name=name, csv_text=text)
            study_id = study.id
    except ImportRatingsError as exc:
        _fail(f"Nothing was imported; {len(exc.errors)} problem(s) in {file}:", *exc.errors)
    typer.echo(study_id)


@study_cli.command("stats")
def stats_command(
    study_id: Annotated[int, typer.Argument(help="the study's id")],
    as_json: Annotated[
        bool, typer.Option("--json", help="print the full statistics as JSON")
    ] = False,
    uncertain: Annotated[
        PolicyChoice | None,
        typer.Option(
            "--uncertain",
            help="score 'uncertain' as wrong or leave it out "
            "(default: the study's pre-registered policy)",
        ),
    ] = None,
) -> None:
    """Print a study's statistics, the same numbers as its results page and stats.json."""
    from app.db import session_scope
    from app.models import Study

    with session_scope() as db:
        study = db.get(Study, study_id)
        if study is None:
            _fail(f"There is no study {study_id}.")
        # Only now the statistics stack (scipy, statsmodels): a typo fails in a blink.
        from app.studies.export import statistics_json
        from app.studies.results import resolve_policy, statistics_for

        policy = resolve_policy(study, uncertain.value if uncertain else None)
        _, stats = statistics_for(db, study, policy)
        about = {"id": study.id, "name": study.name, "kind": study.kind.value}
    if as_json:
        typer.echo(statistics_json(stats, study=about))
        return
    _print_summary(about, stats)


# "p (two-sided)": the exact binomial test against chance in either direction; "below chance"
# flags a reader significantly under it on decisive answers (inverted answers).
SUMMARY_COLUMNS = (
    "reader", "n", "correct", "accuracy", "Wilson 95% CI", "p (two-sided)", "p Holm",
    "below chance", "p TOST", "n uncertain", "uncertain share",
)  # fmt: skip


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_summary(about: dict[str, Any], stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Study {about['id']}: {about['name']} (uncertain: {stats['policy']})")
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="left" if column == "reader" else "right")
    for r in stats["readers"]:
        table.add_row(
            r["reader"], str(r["n"]), str(r["correct"]), _fmt(r["accuracy"]),
            f"{_fmt(r['wilson_low'])}-{_fmt(r['wilson_high'])}", _fmt(r["p_binomial"], 4),
            _fmt(r["p_holm"], 4), "yes" if r["below_chance"] else "no", _fmt(r["p_tost"], 4),
            str(r["n_uncertain"]), _fmt(r["uncertain_share"]),
        )  # fmt: skip
    pooled = stats["pooled"]
    # Piped output would otherwise be squeezed into 80 columns and truncate the numbers.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)
    console.print(
        f"pooled accuracy {_fmt(pooled['accuracy'])} "
        f"(95% CI {_fmt(pooled['ci_low'])}-{_fmt(pooled['ci_high'])}; {pooled['method']})"
    )
    console.print(f"Fleiss' kappa {_fmt(stats['fleiss_kappa'])}")


@study_cli.command("audit")
def audit_command(
    study_id: Annotated[int, typer.Argument(help="the study's id")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Check that nothing readers are served could unblind them; exit code 1 on any finding.

    Walks the whole study as a throwaway reader whose writes nobody sees (a rolled-back
    transaction, or a copy of a SQLite database), so the study is left exactly as it was.
    """
    import json

    from app.main import create_app
    from app.reading.study_audit import AuditRefused, audit_study

    try:
        report = audit_study(study_id, create_app)
    except AuditRefused as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif report.ok:
        typer.echo(
            f"Study {study_id} ({report.study_name!r}): blinding audit passed "
            f"({report.stored_ids} stored opaque ids checked, every page and image walked)."
        )
    else:
        typer.echo(f"Study {study_id} ({report.study_name!r}): {len(report.findings)} finding(s):")
        for finding in report.findings:
            typer.echo(f"- {finding}")
    if not as_json and report.channels:
        typer.echo("Leakage channels (AUC against the truth; random-feature 95th percentile):")
        for channel in report.channels:
            typer.echo(
                f"  {channel.channel:<14} {channel.auc:.3f}  {channel.null_p95:.3f}  "
                f"{'pass' if channel.passed else 'SEPARATES THE SOURCES'}"
            )
    if not report.ok:
        raise typer.Exit(1)
