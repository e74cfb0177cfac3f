"""The sign-in rate limit's sliding window, as a pure function of failure times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.auth.ratelimit import normalise, wait_seconds

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_below_the_limit_nobody_waits() -> None:
    assert wait_seconds([], NOW, 5, 900) == 0
    assert wait_seconds([ago(s) for s in (1, 2, 3, 4)], NOW, 5, 900) == 0


def test_at_the_limit_the_wait_lasts_until_the_oldest_failure_leaves_the_window() -> None:
    failures = [ago(s) for s in (10, 20, 30, 40, 100)]
    assert wait_seconds(failures, NOW, 5, 900) == 800


def test_failures_outside_the_window_do_not_count() -> None:
    failures = [ago(s) for s in (10, 20, 30, 40, 900, 5000)]
    assert wait_seconds(failures, NOW, 5, 900) == 0


def test_far_over_the_limit_waits_until_enough_failures_expire() -> None:
    # Seven failures with a limit of five: the count falls to four only when the three oldest
    # have left, so the wait ends when the third oldest (500 s ago) leaves.
    failures = [ago(s) for s in (600, 550, 500, 50, 40, 30, 20)]
    assert wait_seconds(failures, NOW, 5, 900) == 400


def test_the_wait_is_never_rounded_down_to_zero() -> None:
    failures = [ago(899.5)] + [ago(1)] * 4
    assert wait_seconds(failures, NOW, 5, 900) == 1


def test_usernames_count_together_however_typed() -> None:
    assert normalise("  Alice ") == normalise("alice") == "alice"


def test_without_trusted_proxies_the_forwarded_header_is_ignored() -> None:
    from app.auth.ratelimit import client_address

    assert client_address("127.0.0.1", "198.51.100.1", []) == "127.0.0.1"
    assert client_address(None, "198.51.100.1", []) == "unknown"


def test_behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_client() -> None:
    from app.auth.ratelimit import client_address

    proxies = ["10.0.0.0/8", "::1"]
    assert client_address("10.0.0.5", "203.0.113.7", proxies) == "203.0.113.7"
    # A client's own (forged) entries come first; the proxies append what they saw.
    assert client_address("10.0.0.5", "1.2.3.4, 203.0.113.7, 10.0.0.9", proxies) == "203.0.113.7"
    assert client_address("::1", " 2001:db8::7 ", proxies) == "2001:db8::7"
    assert client_address("10.0.0.5", None, proxies) == "10.0.0.5"
    assert client_address("10.0.0.5", "10.0.0.8", proxies) == "10.0.0.8"
    assert client_address("10.0.0.5", "not-an-ip", proxies) == "not-an-ip"
    assert client_address("192.0.2.1", "203.0.113.7", proxies) == "192.0.2.1"
