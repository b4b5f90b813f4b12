"""Who sees which model: deterministic, sticky assignment of users to experiment arms.

An experiment compares the ``champion`` with a ``challenger``. Its id names both versions
(``v3-vs-v4``, plus ``Settings.experiment_salt`` when set) and salts the assignment: a user's
bucket is a hash of the id and the user's key into :data:`BUCKETS` buckets, and buckets below
the share go to the challenger. The same user always lands in the same arm of one experiment (no
state to store or share between workers), and a new experiment reshuffles everyone, so the
users who saw the last challenger are not the ones who see the next.
"""

from __future__ import annotations

import hashlib
from typing import Literal

BUCKETS = 100
CHAMPION = "champion"
CHALLENGER = "challenger"
Arm = Literal["champion", "challenger"]
ARMS: tuple[Arm, Arm] = (CHAMPION, CHALLENGER)


def experiment_id(champion_version: str, challenger_version: str, *, salt: str = "") -> str:
    """The experiment of two model versions: ``v<champion>-vs-v<challenger>[-<salt>]``."""
    if not champion_version or not challenger_version:
        raise ValueError("champion_version and challenger_version must be non-empty")
    name = f"v{champion_version}-vs-v{challenger_version}"
    return f"{name}-{salt}" if salt else name


def bucket(experiment: str, unit: str) -> int:
    """The unit's bucket in 0..BUCKETS-1: the first 8 bytes of BLAKE2b(experiment, unit) as an
    unsigned integer, modulo :data:`BUCKETS` (the modulo bias is below 1e-17)."""
    digest = hashlib.blake2b(f"{experiment}\x00{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def assign(experiment: str, unit: str, *, share: int) -> Arm:
    """The arm of ``unit`` (a user key): the challenger for buckets below ``share`` (percent).

    Raises:
        ValueError: ``share`` is not within 0..100.
    """
    if not 0 <= share <= BUCKETS:
        raise ValueError(f"share must be a percent within 0..{BUCKETS}, got {share}")
    return CHALLENGER if bucket(experiment, unit) < share else CHAMPION
