"""The synthbench command line: serve, worker, db, user, demo, export, import.

Each feature's commands are a module of this package (datasets, gans, evaluation, studies,
backup): they drive the feature packages' services and run jobs in-process through `workers`,
which the feature packages themselves never import.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from app.cli.console import progress_bar
from app.models import Role

# Soft wrap: a long link printed to a log or a narrow terminal stays one line, clickable.
console = Console(soft_wrap=True)
cli = typer.Typer(help="synthbench: judge synthetic medical images.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
user_cli = typer.Typer(help="User accounts.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(user_cli, name="user")
from app.cli.studies import study_cli  # noqa: E402

cli.add_typer(study_cli, name="study")
from app.cli.backup import export_command, import_command  # noqa: E402

cli.command("export")(export_command)
cli.command("import")(import_command)
from app.cli.datasets import dataset_cli  # noqa: E402

cli.add_typer(dataset_cli, name="dataset")
from app.cli.gans import run_cli  # noqa: E402

cli.add_typer(run_cli, name="run")
# Registers the evaluation commands on run_cli as a side effect of the import.
from app.cli.evaluation import imageset_cli  # noqa: E402

cli.add_typer(imageset_cli, name="imageset")


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations (the only way the schema is created)."""
    from app.config import get_settings
    from app.migrate import upgrade

    upgrade(revision=revision)
    console.print(f"database at [bold]{get_settings().resolved_database_url()}[/] is at {revision}")


@user_cli.command("create")
def user_create(
    username: str,
    role: Annotated[Role, typer.Option(help="admin, researcher or reader")] = Role.researcher,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
) -> None:
    """Create a user who signs in with a password."""
    from app.auth.service import AuthError, create_user
    from app.db import session_scope

    try:
        with session_scope() as db:
            create_user(db, username=username, password=password, role=role)
    except AuthError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    console.print(f"created {role.value} [bold]{username}[/]")


def _worker_argv(queues: str, concurrency: int) -> list[str]:
    return [
        "worker",
        # A name no other worker process has, now or later (Celery expands %h to the host):
        # jobs record it, and a new worker must never take another's running jobs for its own.
        # The pid for people; the token because a restarted container runs as pid 1 again.
        "--hostname",
        f"synthbench-{os.getpid()}-{secrets.token_hex(3)}@%h",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]


@cli.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated: gpu,cpu")] = "gpu,cpu",
    concurrency: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Run a Celery worker that consumes the given queues."""
    from app.queue import celery_app

    celery_app.worker_main(_worker_argv(queues, concurrency))


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    embedded_worker: Annotated[bool, typer.Option(help="also run a worker")] = True,
    web_workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Web server plus an embedded worker, one process tree: Ctrl-C stops all."""
    import uvicorn

    child: subprocess.Popen[bytes] | None = None
    if embedded_worker:
        # Fixed argv, no shell: the worker is this same interpreter running `synthbench
        # worker`. Its own session, so that we (not the terminal) decide when and how it stops;
        # and it dies with us, so a server killed outright leaves no worker behind to run jobs
        # beside the one the next server starts. From the main thread, which lives as long as
        # this process: the kernel signals the child when the thread that forked it ends.
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "worker",
                "--queues",
                "gpu,cpu",
                "--concurrency",
                "1",
            ],
            env=os.environ.copy(),
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    # uvicorn re-raises the signal that stopped it; with a Python handler in place that
    # becomes SystemExit here, so the finally block below always stops the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=web_workers,
            log_level="info",
            # The app decides which proxies to believe (SYNTHBENCH_TRUSTED_PROXIES); uvicorn's
            # default would rewrite the client address from X-Forwarded-For for any local
            # client before the app sees it, so a local user could pick their rate-limit key.
            proxy_headers=False,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if child is not None:
            stop_process_group(child)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when this process dies (Linux's
    parent-death signal); None elsewhere. Celery's pool processes already die with the worker."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # we died between fork and prctl: nobody would signal
            os._exit(1)

    return arm


def stop_process_group(child: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """Celery's warm shutdown first (running jobs finish or go back to the queue), then kill."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


@cli.command()
def demo(
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Migrate, load the demo content, print the logins, then serve."""
    from app.config import get_settings
    from app.demo.loader import DEMO_USERS, load_demo

    if sys.stdout.isatty():
        with progress_bar() as bar:
            task = bar.add_task("preparing demo", total=1.0)

            def report(done: float, total: float, message: str = "") -> None:
                bar.update(task, completed=done / total if total else 1.0, description=message)

            info = load_demo(progress=report)
    else:
        # A log file gets one line per step, as it happens, not a bar drawn at the end.
        def log_line(done: float, total: float, message: str = "") -> None:
            print(f"demo: [{done:g}/{total:g}] {message}", flush=True)

        info = load_demo(progress=log_line)
    url = f"http://{host}:{port}"
    console.rule("synthbench demo")
    console.print(f"Open [bold]{url}[/]  (data in {get_settings().home})")
    for username, (password, role) in DEMO_USERS.items():
        console.print(f"  {role.value:<10} {username} / {password}")
    if info.get("invite_link_path"):
        console.print(f"  reader invitation (single use): {url}{info['invite_link_path']}")
    console.print(
        f"  the demo's jobs run now on the embedded worker; watch them live: {url}/jobs\n"
        "    (dataset import, then a tiny GAN, its samples, their benchmark and a sweep)"
    )
    if info.get("dataset_id"):
        console.print(f"  demo dataset: {url}/datasets/{info['dataset_id']}")
        console.print(f"  benchmark dashboard: {url}/datasets/{info['dataset_id']}/benchmark")
    if info.get("gan_job_id"):
        console.print(f"  demo GAN training run: {url}/jobs/{info['gan_job_id']}")
        console.print(f"  its benchmark: {url}/gans/{info['gan_job_id']}/benchmark")
    if info.get("sweep_id"):
        console.print(f"  the demo sweep: {url}/sweeps/{info['sweep_id']}")
    if serve_after:
        serve(host=host, port=port, embedded_worker=True, web_workers=1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
