"""The process pools of an import: started safely inside a job, gone when the job is gone.

"forkserver" where there is one: an import job runs in a process with threads (the lease
heartbeat), and forking such a process can copy a lock some thread held. As with every
multiprocessing program, a script that uses these pools must guard its entry point
(`if __name__ == "__main__":`), because the fork server imports the main script.

Every pool process watches the process that made the pool and exits when it is gone: when an
import is SIGKILLed (the OOM killer, a lost worker) nobody shuts its pool down, and an idle
pool process would otherwise wait on its task queue forever.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["pool_allowed", "process_pool", "usable_cores"]


def pool_allowed() -> bool:
    """False in a daemonic process, which may not start children: a Celery prefork pool
    process is one, so an import there decodes in its own process instead."""
    return not multiprocessing.current_process().daemon


def usable_cores() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the host's);
    1 where no pool may be started (`pool_allowed`)."""
    if not pool_allowed():
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def process_pool(workers: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


def _exit_with_parent(parent: int, interval_s: float = 0.5) -> None:
    """Pool initializer: end this process once the process `parent` that made the pool is gone.

    Its own parent is no guide: under "forkserver" that is the fork server, which waits for its
    children to end before it exits. So `parent` is watched by its pid.
    """

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                os.kill(parent, 0)
            except (ProcessLookupError, PermissionError):  # gone, or the pid was reused
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
