"""An import inside a daemonic process (a Celery prefork pool process) decodes without a pool:
such a process may not start children, and a pool there failed every import job."""

from __future__ import annotations

import multiprocessing
from queue import Queue

from ml.data.pools import pool_allowed, usable_cores


def _report(out: Queue) -> None:
    out.put((pool_allowed(), usable_cores()))


def test_a_daemonic_process_gets_one_core_and_no_pool() -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_report, args=(out,), daemon=True)
    child.start()
    allowed, cores = out.get(timeout=60)
    child.join(timeout=60)
    assert (allowed, cores) == (False, 1)
    assert pool_allowed() and usable_cores() >= 1
