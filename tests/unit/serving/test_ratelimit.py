"""The token bucket and the client key, with an injected clock."""

from __future__ import annotations

import pytest

from recommender.serving.ratelimit import RateLimiter, client_key, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(60, burst=3, max_clients=10, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(1.0)  # one token a second
    clock.now += 0.25
    assert limiter.acquire("a") == pytest.approx(0.75)  # a refused request takes nothing
    clock.now += 0.75
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(1.0)
    clock.now += 3600  # refills up to the burst, never beyond
    assert [limiter.acquire("a") for _ in range(4)][3] == pytest.approx(1.0)


def test_clients_have_their_own_buckets() -> None:
    limiter = RateLimiter(1, burst=1, max_clients=10, clock=Clock())
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(60.0)
    assert limiter.acquire("b") == 0.0


def test_at_most_max_clients_are_tracked_the_least_recently_seen_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(1, burst=1, max_clients=3, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.acquire(key) == 0.0
    assert limiter.acquire("a") > 0  # a is now the most recently seen
    for n in range(1000):
        limiter.acquire(f"spoofed-{n}")
        assert len(limiter) <= 3
    assert limiter.acquire("spoofed-999") > 0  # still tracked: the newest
    assert limiter.acquire("a") == 0.0  # forgotten: a full bucket again


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"rate_per_minute": 0, "burst": 1, "max_clients": 1}, "rate_per_minute"),
        ({"rate_per_minute": 1, "burst": 0, "max_clients": 1}, "burst"),
        ({"rate_per_minute": 1, "burst": 1, "max_clients": 0}, "max_clients"),
    ],
)
def test_bad_arguments_are_named(options: dict[str, int], argument: str) -> None:
    rate = options.pop("rate_per_minute")
    with pytest.raises(ValueError, match=argument):
        RateLimiter(rate, **options)


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_header(s) for s in (0.001, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "key"),
    [
        ("10.0.0.9", [], 0, "10.0.0.9"),
        ("10.0.0.9", ["1.1.1.1"], 0, "10.0.0.9"),  # no trusted proxy: the header is the client's
        ("10.0.0.9", ["1.1.1.1"], 1, "1.1.1.1"),
        ("10.0.0.9", ["6.6.6.6, 1.1.1.1"], 1, "1.1.1.1"),  # the client wrote 6.6.6.6 itself
        ("10.0.0.9", ["6.6.6.6", "1.1.1.1, 10.1.1.1"], 2, "1.1.1.1"),  # headers are one list
        ("10.0.0.9", ["1.1.1.1"], 2, "10.0.0.9"),  # fewer addresses than proxies: not proxied
        ("10.0.0.9", [" , "], 1, "10.0.0.9"),
        (None, [], 0, "unknown"),
        ("2001:db8:1:2:aa::1", [], 0, "2001:db8:1:2::/64"),  # one host holds a whole /64
        ("10.0.0.9", ["2001:db8:1:2:bb::7"], 1, "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", [], 0, "::ffff:192.0.2.1"),
    ],
)
def test_client_key(peer: str | None, forwarded: list[str], hops: int, key: str) -> None:
    assert client_key(peer, forwarded, trusted_hops=hops) == key
