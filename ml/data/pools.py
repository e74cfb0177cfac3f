"""The process pools of an import: started safely inside a job, gone when the job is gone.

"forkserver" where there is one: an import job runs in a process with threads (the lease
heartbeat), and forking such a process can copy a lock some thread held. As with every
multiprocessing program, a script that uses these pools must guard its entry point
(`if __name__ == "__main__":`), because the fork server imports the main script.

Every pool process watches the process that made the pool and exits when it is gone: when an
import is SIGKILLed (the OOM killer, a lost worker) nobody shuts its pool down, and an idle
pool process would otherwise wait on its task queue forever.

That watch is also why a pool may be started from a daemonic process, which multiprocessing
forbids: a Celery prefork pool process (`synthbench worker`, where every import job runs) is
one. The rule exists because a daemonic process is killed, not joined, when its parent ends,
and its children would be left behind; ours exit with it, so the rule is lifted for the pool's
own processes (`_PoolProcess`) and nowhere else. This keeps imports in the prefork worker, with
its hard time limit, its SIGKILL recovery and the journal's resume, rather than on a second
kind of worker (a thread or solo pool has no hard limit) or a subprocess with its own progress
and cancel plumbing.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.process import AuthenticationString

__all__ = ["pool_allowed", "process_pool", "terminate", "usable_cores"]


def pool_allowed() -> bool:
    """Whether `process_pool` may be used here: everywhere, a daemonic process (a Celery
    prefork pool process) included, since its processes exit with the process that made it.
    Kept for the callers that ask."""
    return True


def usable_cores() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_BASE = multiprocessing.get_context(_METHOD)


@contextmanager
def _children_allowed() -> Iterator[None]:
    """Clear this process's daemon flag while a pool process starts: `BaseProcess.start`
    refuses to start one from a daemonic process (see the module's docstring for why that is
    safe here). Only the thread that submits to the pool starts its processes.

    A billiard process (Celery's pool) also holds its authkey as billiard's own string type,
    which refuses to be pickled outside billiard, and the new process is sent its parent's
    authkey: it goes as multiprocessing's type, the same bytes.
    """
    me = multiprocessing.current_process()
    config = me._config  # private: the authkey type has no public setter
    saved = dict(config)
    if config.get("daemon"):
        config["daemon"] = False
    key = config.get("authkey")
    if key is not None and type(key) is not AuthenticationString:
        config["authkey"] = AuthenticationString(key)
    try:
        yield
    finally:
        config.update(saved)


class _PoolProcess(_BASE.Process):  # type: ignore[name-defined, misc]
    """A process of `process_pool`: may be started from a daemonic process."""

    def start(self) -> None:
        self.authkey = bytes(self.authkey)  # copied from its parent's: see `_children_allowed`
        with _children_allowed():
            super().start()


class _PoolContext(type(_BASE)):  # type: ignore[misc]
    Process = _PoolProcess


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_PoolContext(),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


def terminate(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's processes and shut it down, without waiting for the tasks they run:
    for work nobody wants any more (an import stopped or failed), which may take a while
    (a task of large files on a busy machine). Pool processes only compute and send back,
    so killing one mid-task loses nothing."""
    kill = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if kill is not None:
        kill()
    else:
        # The executor's own record of its processes (private, the same from 3.8 to 3.13).
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


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
