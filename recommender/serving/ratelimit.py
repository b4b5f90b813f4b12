"""Per-client rate limits for the service's write endpoints, and who the client is.

:class:`RateLimiter` is a token bucket per client key: a client may send ``burst`` requests at
once and then ``rate_per_minute`` a minute. It tracks at most ``max_clients`` keys, forgetting
the least recently seen first, so a flood of distinct (or spoofed) addresses costs a bounded
amount of memory. A forgotten client starts again with a full bucket, which is what it would
have had anyway once idle for ``burst / rate`` seconds.

:func:`client_key` picks the address to limit: behind ``trusted_hops`` reverse proxies (the
Kubernetes Ingress controller is one) the peer is the nearest proxy, and the client is the
address the outermost trusted proxy appended to ``X-Forwarded-For``; entries further left were
written by the client itself and are never trusted. An IPv6 client is its /64 network: one
host usually holds a whole /64, so counting its addresses one by one would not limit it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets of ``burst`` requests refilled at ``rate_per_minute``, one per client key.

    Not thread-safe: one instance serves one event loop (one service worker).

    Args:
        rate_per_minute: Sustained requests a minute per client (> 0).
        burst: Requests a client may send at once (>= 1).
        max_clients: Client keys tracked at most (>= 1).
        clock: Monotonic seconds (injectable for tests).

    Raises:
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: int,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_per_minute > 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients}")
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self.max_clients = max_clients
        self._per_second = rate_per_minute / 60.0
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """How many client keys are tracked."""
        return len(self._buckets)

    def acquire(self, key: str) -> float:
        """Take one request from ``key``'s bucket.

        Returns:
            0.0 when the request may proceed; otherwise the seconds until it would (nothing is
            taken).
        """
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self._per_second)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._per_second


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up so that a client retrying then succeeds."""
    return str(max(1, math.ceil(seconds)))


def client_key(peer: str | None, forwarded_for: list[str], *, trusted_hops: int) -> str:
    """The address that identifies a client.

    Args:
        peer: The connection's peer address (``None`` when the server does not know it).
        forwarded_for: The values of every ``X-Forwarded-For`` header, in order.
        trusted_hops: How many reverse proxies in front of the service append to
            ``X-Forwarded-For`` (0: none, the peer is the client).

    Returns:
        With ``trusted_hops`` n > 0, the n-th address from the right of ``X-Forwarded-For``;
        the peer when there is no proxy or the header has fewer addresses than trusted hops
        (the request did not come through them); an IPv6 address as its /64 network.
        ``"unknown"`` without any address.
    """
    address = peer or "unknown"
    if trusted_hops > 0:
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= trusted_hops:
            address = hops[-trusted_hops]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a name or an address with a port: only ever compared, never parsed
        return address
    if ip.version == 6 and ip.ipv4_mapped is None:
        return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
    return address
