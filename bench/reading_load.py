"""Many concurrent readers answering over HTTP against the real server, with faults.

By default 200 readers x 50 answers against ``synthbench serve`` with 2 uvicorn workers on a
SQLite file (WAL); 5% of answers are POSTed twice (half of them racing), and half-way through
the server is killed (SIGKILL to its process group) and started again on the same port, while
the readers resend whatever they were not sure about. Then the database is compared with the
clients' log: nothing lost, nothing twice, every answer with its reader, image and value.
Prints answers/s and p50/p99 latency; exits non-zero on any problem.

    .venv/bin/python bench/reading_load.py
    .venv/bin/python bench/reading_load.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1/synthbench_load   # created, dropped
    .venv/bin/python bench/reading_load.py --restart-at 0.3 0.6 --restart-signal term kill
    .venv/bin/python bench/reading_load.py --readers 50 --answers 40 \\
        --double-submit 0 --restart-at --baseline          # throughput beside bare uvicorn
    .venv/bin/python bench/reading_load.py --compare --readers 200 --answers 10 --workers 1

--compare measures, in one run and at the same load, ours and the baseline (bare uvicorn + one
SQLite insert per POST, bench/bare_app.py, serving an image of our byte length): first with no
think time (saturation: answers/s and their ratio), then with --think-s (default 3 s) between
answers (p50/p99 at that load; readers then arrive spread over one think time). No faults
in this mode; each answer fetches its image first (--image-check 1), so a step is "image GET
+ answer POST", as a reader's browser does; --image-check 0 times the answer POST alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from itertools import cycle
from pathlib import Path

from load_check import compare, problems
from load_faults import LoadLog, LoadPlan, Restart, run_load
from load_server import ServerControl, bare_uvicorn
from load_study import LoadStudy, build_study, fresh_postgres, start_readers
from sqlalchemy import make_url

SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--answers", "--images", dest="answers", type=int, default=50)
    parser.add_argument("--workers", "--web-workers", dest="workers", type=int, default=2)
    parser.add_argument("--double-submit", type=float, default=0.05, metavar="SHARE")
    parser.add_argument(
        "--restart-at",
        type=float,
        nargs="*",
        default=[0.5],
        metavar="SHARE",
        help="restart the server when this share of all answers is in (none: no restart)",
    )
    parser.add_argument(
        "--restart-signal",
        nargs="+",
        choices=sorted(SIGNALS),
        default=["kill"],
        help="stop signal for each restart, cycled: term (graceful, to the main process) "
        "or kill (SIGKILL to the whole process group)",
    )
    parser.add_argument(
        "--image-check",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of answers whose image is fetched and its hash checked (default 0.1; "
        "1 with --compare)",
    )
    parser.add_argument("--database-url", default=None, help="default: a SQLite file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--think-s", type=float, default=0.0, help="mean pause before each answer (0: none)"
    )
    parser.add_argument("--baseline", action="store_true", help="also run bare uvicorn")
    parser.add_argument(
        "--sequence",
        type=int,
        default=0,
        metavar="N",
        help="with --compare: N images per reader (default 2 x --answers), sequences written "
        "before timing; the answer path's cost may grow with it",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="ours vs bare uvicorn + one SQLite insert, saturated and at --think-s (no faults)",
    )
    args = parser.parse_args()
    if args.compare:
        args.restart_at, args.double_submit = [], 0.0
        args.think_s = args.think_s or 3.0
    if args.image_check is None:
        args.image_check = 1.0 if args.compare else 0.1
    return args


def configure(home: Path, database_url: str) -> dict[str, str]:
    """Settings for this process (building and checking the study) and the server's env."""
    os.environ.update(
        SYNTHBENCH_HOME=str(home),
        SYNTHBENCH_DATABASE_URL=database_url,
        SYNTHBENCH_BROKER_URL=f"sqla+sqlite:///{home / 'broker.sqlite'}",
        SYNTHBENCH_SECRET_KEY="load-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    )
    from app.migrate import upgrade

    upgrade()
    return dict(os.environ)


def bare_server(
    workers: int, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[str]:
    return bare_uvicorn("bench.bare_app:app", workers, env)


def served_image_bytes(study: LoadStudy) -> int:
    """The byte length of the study's served images (all alike, by design); renders the
    study's display images as its first image request would."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Image, Study, StudyItem
    from app.studies.display import display_pixels, served_png

    with session_scope() as db:
        row = db.get(Study, study.study_id)
        key = db.scalar(
            select(Image.key)
            .join(StudyItem, StudyItem.image_id == Image.id)
            .where(StudyItem.study_id == study.study_id)
            .limit(1)
        )
        assert row is not None and key is not None
        return len(served_png(display_pixels(db, row, key), "length-probe"))


def figures(name: str, log: LoadLog) -> str:
    return (
        f"{name:<22} {log.rate():7.0f} answers/s   p50 {log.percentile_ms(0.5):7.1f} ms   "
        f"p99 {log.percentile_ms(0.99):7.1f} ms   ({len(log.latencies)} POSTs, {log.seconds:.1f} s)"
    )


def report(args: argparse.Namespace, dialect: str, log: LoadLog, baseline: LoadLog | None) -> None:
    print(
        f"{args.readers} readers x {args.answers} answers, {args.workers} uvicorn workers, "
        f"{dialect}, {os.cpu_count()} CPUs shared with the clients"
    )
    if baseline is not None:
        print(figures("bare uvicorn endpoint", baseline))
    print(figures("synthbench answers", log) + ("   (restarts included)" if log.restarts else ""))
    print(
        f"double submits: {log.doubles} ({log.racing_doubles} racing); "
        f"resends after a connection error: {log.resends}; restarts: {len(log.restarts)}"
    )
    for r in log.restarts:
        print(
            f"  {r.signal} at {r.accepted_before} answers, serving again after {r.down_s:.1f} s; "
            f"pid {r.old_pid} -> {r.new_pid}, workers {sorted(r.old_workers)} -> "
            f"{sorted(r.new_workers)}"
        )


def merged(*logs: LoadLog) -> LoadLog:
    whole = LoadLog()
    for log in logs:
        whole.accepted += log.accepted
        whole.latencies += log.latencies
        whole.steps += log.steps
        whole.errors += log.errors
        whole.seconds += log.seconds
    return whole


def compare_line(name: str, log: LoadLog) -> str:
    return (
        f"  {name:<30} {log.rate():6.1f} answers/s   image+answer p50 "
        f"{log.percentile_ms(0.5, 'steps'):7.1f} ms p99 {log.percentile_ms(0.99, 'steps'):7.1f} ms"
        f"   POST p50 {log.percentile_ms(0.5):7.1f} ms p99 {log.percentile_ms(0.99):7.1f} ms"
    )


def run_compare(
    args: argparse.Namespace, server_env: dict[str, str], home: Path, study: LoadStudy
) -> LoadLog:
    """Both phases against the baseline, then against ours; prints the table, returns our log."""
    phases = (("saturation, no think time", 0.0), (f"think {args.think_s:g} s", args.think_s))
    bare_db = str(home / "bare.sqlite")
    from bare_app import create_table

    create_table(bare_db)
    bare_env = {"BARE_SQLITE_PATH": bare_db}
    if args.image_check:
        bare_env["BARE_IMAGE_BYTES"] = str(served_image_bytes(study))
    bare_logs, our_logs = [], []
    with bare_server(args.workers, bare_env) as url:
        for _, think in phases:
            plan = LoadPlan(
                args.readers,
                args.answers,
                image_check_share=args.image_check,
                double_share=0,
                seed=args.seed,
                baseline=True,
                think_s=think,
            )
            bare_logs.append(asyncio.run(run_load(url, study, plan)))
    with ServerControl(server_env, home, workers=args.workers) as server:
        for _, think in phases:
            plan = LoadPlan(
                args.readers,
                args.answers,
                double_share=0,
                image_check_share=args.image_check,
                seed=args.seed,
                think_s=think,
            )
            our_logs.append(asyncio.run(run_load(server.url, study, plan)))
    for (name, _), bare, ours in zip(phases, bare_logs, our_logs, strict=True):
        print(
            f"{name}: {args.readers} readers x {args.answers} answers each "
            f"(of {max(2 * args.answers, args.sequence)} per reader)"
        )
        if bare.errors or len(bare.accepted) != args.readers * args.answers:
            print(f"  baseline: {len(bare.accepted)} answers, errors: {bare.errors[:3]}")
        print(compare_line("bare uvicorn + 1 SQLite insert", bare))
        print(compare_line("synthbench", ours))
        ratio = ours.rate() / bare.rate() if bare.rate() else float("nan")
        print(f"  ratio of answers/s (synthbench / bare): {ratio:.2f}x")
    return merged(*our_logs)


def plan_from(args: argparse.Namespace) -> LoadPlan:
    signals = cycle(SIGNALS[s] for s in args.restart_signal)
    return LoadPlan(
        readers=args.readers,
        answers=args.answers,
        double_share=args.double_submit,
        restarts=tuple(Restart(at, next(signals)) for at in sorted(args.restart_at)),
        image_check_share=args.image_check,
        seed=args.seed,
        think_s=args.think_s,
    )


def main() -> None:
    args = parse_args()
    plan = plan_from(args)
    home = Path(tempfile.mkdtemp(prefix="synthbench-load-"))
    database_url = args.database_url or f"sqlite:///{home / 'load.sqlite'}"
    with contextlib.ExitStack() as stack:
        if database_url.startswith("postgresql"):
            stack.enter_context(fresh_postgres(database_url))
        server_env = configure(home, database_url)
        from app.db import get_engine

        stack.callback(lambda: get_engine().dispose())  # before the database is dropped
        if args.compare:
            print(
                f"{args.workers} uvicorn worker(s), {make_url(database_url).get_backend_name()}, "
                f"{os.cpu_count()} CPUs shared with the clients; a step: "
                + ("image GET + answer POST" if args.image_check else "answer POST")
            )
            # One share of the sequence for each phase; first visits made before any timing.
            study = build_study(args.readers, max(2 * args.answers, args.sequence))
            start_readers(study)
            log = run_compare(args, server_env, home, study)
            integrity = compare(log, study)
            found = problems(log, 2 * plan.total, 0, integrity)
            print(integrity.line())
            print("OK" if not found else "PROBLEMS:")
            for problem in found:
                print("  -", problem)
            sys.exit(1 if found else 0)
        study: LoadStudy = build_study(args.readers, args.answers)
        baseline = None
        if args.baseline:
            with bare_server(args.workers) as url:
                bare = LoadPlan(
                    args.readers, args.answers, double_share=0, baseline=True, think_s=args.think_s
                )
                baseline = asyncio.run(run_load(url, study, bare))
        server = stack.enter_context(ServerControl(server_env, home, workers=args.workers))
        log = asyncio.run(run_load(server.url, study, plan, server))
        server.stop()
        integrity = compare(log, study)
    report(args, make_url(database_url).get_backend_name(), log, baseline)
    print(integrity.line())
    found = problems(log, plan.total, len(plan.restarts), integrity)
    print("OK" if not found else "PROBLEMS:")
    for problem in found:
        print("  -", problem)
    print(f"(server logs in {home})")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
