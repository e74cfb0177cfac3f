"""A process pool started inside a daemonic process (a Celery prefork pool process is one):
multiprocessing refuses that by default, and imports in the worker then decoded on one core."""

from __future__ import annotations

import multiprocessing
import os
from queue import Queue

from ml.data.pools import pool_allowed, process_pool, usable_cores


def _pid(_: int) -> int:
    return os.getpid()


def _pool_in_daemon(out: Queue) -> None:
    with process_pool(2) as pool:
        pids = set(pool.map(_pid, range(8)))
    out.put((multiprocessing.current_process().daemon, usable_cores(), os.getpid() in pids))


def test_a_daemonic_process_runs_a_pool_on_every_core() -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_pool_in_daemon, args=(out,), daemon=True)
    child.start()
    daemon, cores, decoded_itself = out.get(timeout=60)
    child.join(timeout=60)
    assert daemon and not decoded_itself
    assert cores == len(os.sched_getaffinity(0)) == usable_cores()
    assert pool_allowed()
