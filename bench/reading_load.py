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
from load_study import LoadStudy, build_study, fresh_postgres
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
        default=0.1,
        metavar="SHARE",
        help="share of answers whose image is fetched and its hash checked",
    )
    parser.add_argument("--database-url", default=None, help="default: a SQLite file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--think-s", type=float, default=0.0, help="mean pause before each answer (0: none)"
    )
    parser.add_argument("--baseline", action="store_true", help="also run bare uvicorn")
    return parser.parse_args()


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


def bare_server(workers: int) -> contextlib.AbstractContextManager[str]:
    return bare_uvicorn("bench.bare_app:app", workers)


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
