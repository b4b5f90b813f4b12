"""The checkerboard: a tiny interaction set with known answers, shared by the model and API tests.

User ``USER0 + u`` likes movie ``MOVIE0 + i`` when u and i have the same parity, except the
movies ``i = u + h (mod N)`` for each ``h`` in ``holes``: those are the user's unseen same-parity
movies, so the known top answers. Movies are tagged with the genre ``Even`` or ``Odd``. The data
has rank 2 (one block per parity), which :data:`PARAMS` fits exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from recommender.modeling.als import ALSParams
from tests.frames import interactions_frame

N = 20
USER0 = 1000
MOVIE0 = 100
# More factors than the data's rank would fit the holes.
PARAMS = ALSParams(factors=2, regularization=0.1, alpha=1.0, iterations=15)


def user(u: int) -> int:
    return USER0 + u


def movie(i: int) -> int:
    return MOVIE0 + i


def parity(movie_id: int) -> int:
    return (movie_id - MOVIE0) % 2


def unseen(u: int, holes: Sequence[int]) -> set[int]:
    """The user's same-parity movies left out of the interactions."""
    return {movie((u + hole) % N) for hole in holes}


def liked(u: int, holes: Sequence[int]) -> list[int]:
    """The user's movies in the interactions."""
    return [movie(i) for i in range(N) if i % 2 == u % 2 and movie(i) not in unseen(u, holes)]


def interactions(holes: Sequence[int], *, timestamp_step: int = 1) -> pl.DataFrame:
    """Every user's liked movies rated 4.0 (no ``source`` column), user u at time 1000 + u*step."""
    rows = [
        (user(u), m, 4.0, 1_000 + u * timestamp_step) for u in range(N) for m in liked(u, holes)
    ]
    return interactions_frame(rows, source=None)


def genres() -> pl.DataFrame:
    """``movie_id`` and ``genres`` (``Even`` or ``Odd``) of the N movies."""
    return pl.DataFrame(
        {
            "movie_id": [movie(i) for i in range(N)],
            "genres": [["Even"] if i % 2 == 0 else ["Odd"] for i in range(N)],
        }
    )
