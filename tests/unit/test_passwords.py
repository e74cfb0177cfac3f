"""Password hashing parameters and the bounded, off-loop password check."""

from __future__ import annotations

import asyncio
import itertools
import time

from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

from app.auth import passwords


def _parameters(stored: str) -> dict[str, int]:
    # $argon2id$v=19$m=19456,t=2,p=1$salt$hash
    fields = stored.split("$")[3].split(",")
    return {k: int(v) for k, v in (f.split("=") for f in fields)}


def test_new_hashes_meet_owasps_argon2id_minimum() -> None:
    stored = passwords.hash_password("a long enough password")
    assert stored.startswith("$argon2id$")
    found = _parameters(stored)
    # OWASP Password Storage Cheat Sheet: m >= 19 MiB with t >= 2, p = 1.
    assert found["m"] >= 19 * 1024 and found["t"] >= 2 and found["p"] == 1


def test_hashes_with_other_parameters_verify_and_ask_for_a_rehash() -> None:
    old = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).hash("old-password-1")
    assert passwords.check_password("old-password-1", old) == passwords.Verdict(True, True)
    assert passwords.check_password("wrong", old) == passwords.Verdict(False, False)
    current = passwords.hash_password("new-password-1")
    assert passwords.check_password("new-password-1", current) == passwords.Verdict(True, False)
    assert not passwords.check_password("anything", None).ok


def test_concurrency_defaults_to_the_cpus_this_process_may_use() -> None:
    assert passwords.default_concurrency(3) == 3
    assert passwords.default_concurrency(None) >= 1
    assert passwords.default_concurrency(0) == passwords.default_concurrency(None)


def test_checks_beyond_the_limit_wait_and_the_loop_stays_free() -> None:
    stored = passwords.hash_password("burst-password-1")

    async def main() -> tuple[list[passwords.Verdict], float, int, int]:
        ticks: list[float] = []
        borrowed, waiting = 0, 0

        async def heartbeat() -> None:
            # The event loop must keep turning while checks run (health checks, other pages).
            nonlocal borrowed, waiting
            while True:
                ticks.append(time.perf_counter())
                limiter = passwords._limiters.get(asyncio.get_running_loop())
                if limiter is not None:
                    stats = limiter.statistics()
                    borrowed = max(borrowed, stats.borrowed_tokens)
                    waiting = max(waiting, stats.tasks_waiting)
                await asyncio.sleep(0.005)

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        verdicts = await asyncio.gather(
            *(passwords.check_password_off_loop("burst-password-1", stored, 2) for _ in range(8))
        )
        beat.cancel()
        return verdicts, max(b - a for a, b in itertools.pairwise(ticks)), borrowed, waiting

    verdicts, longest_gap, borrowed, waiting = asyncio.run(main())
    assert all(v.ok for v in verdicts)
    assert borrowed == 2 and waiting > 0  # the rest queued on the loop, no thread each
    assert longest_gap < 0.5
