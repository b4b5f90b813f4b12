"""The API logic on a checkerboard: users like movies of their own parity.

User ``USER0 + u`` likes movie ``MOVIE0 + i`` when u and i have the same parity, except movie
i = u (mod N): that is the user's one unseen same-parity movie, so the known answer of a top-1.
The catalog also holds ``UNRATED``, a movie nobody rated (not in the model).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from recommender.data.catalog import CATALOG_COLUMNS
from recommender.data.feedback import FeedbackEvent, read_events
from recommender.data.logs import log_files
from recommender.experiments.assignment import assign
from recommender.modeling.als import ALSConfig, ALSRecommender, train_als, train_popularity
from recommender.serving.api import (
    MAX_CLOCK_SKEW_S,
    MAX_EVENT_AGE_S,
    MAX_IDS,
    ExplainRequest,
    Feedback,
    MoviesRequest,
    PopularRequest,
    RecommendationsResponse,
    RecommenderAPI,
    RecommendForLikedRequest,
    RecommendRequest,
    RequestError,
    Routing,
    ServedModel,
    SimilarRequest,
)
from recommender.serving.bundle import CATALOG_FILE, MODEL_DIR, model_version
from recommender.serving.catalog import Catalog, poster_url
from tests import checkerboard
from tests.checkerboard import MOVIE0, N, movie, user

UNRATED = 999
IMAGES = "https://images.example/t/p/w342"


@pytest.fixture(scope="module")
def model() -> ALSRecommender:
    config = ALSConfig(als=checkerboard.PARAMS)
    return train_als(checkerboard.interactions((0,)), config=config, movies=checkerboard.genres())


def catalog_frame() -> pl.DataFrame:
    ids = [movie(i) for i in range(N)] + [UNRATED]
    return pl.DataFrame(
        {
            "movie_id": ids,
            "title": [f"Film {m}" for m in ids[:-1]] + ["The Unrated Story"],
            "year": [2000 + i for i in range(N)] + [None],
            "genres": [["Even"] if i % 2 == 0 else ["Odd"] for i in range(N)] + [[]],
            "poster_path": ["/p.jpg" if m % 2 == 0 else None for m in ids],
            "overview": [None] * (N + 1),
        },
        schema_overrides={"year": pl.Int32},
    )


@pytest.fixture
def api(model: ALSRecommender, tmp_path: Path) -> RecommenderAPI:
    ranking = model.popular(k=N).movie_ids
    catalog = Catalog(catalog_frame(), image_base_url=IMAGES, ranking=ranking)
    return RecommenderAPI(
        ServedModel(model, catalog, "7"), feedback_log=tmp_path / "feedback" / "events.jsonl"
    )


def ids(response: RecommendationsResponse) -> list[int]:
    return [movie.movie_id for movie in response.movies]


# --- pure helpers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        (IMAGES, "/abc.jpg", f"{IMAGES}/abc.jpg"),
        (IMAGES + "/", "abc.jpg", f"{IMAGES}/abc.jpg"),
        (IMAGES, None, None),
        (IMAGES, "", None),
    ],
)
def test_poster_url_joins_base_and_path(base: str, path: str | None, expected: str | None) -> None:
    assert poster_url(base, path) == expected


def test_model_version_prefers_the_label() -> None:
    assert model_version({"model_version": "3"}, "movie-recommender:abc") == "3"
    assert model_version({}, "movie-recommender:abc") == "movie-recommender:abc"


# --- the catalog ----------------------------------------------------------------------------
def test_search_is_a_case_insensitive_substring_match_in_ranking_order() -> None:
    catalog = Catalog(catalog_frame(), image_base_url=IMAGES, ranking=[movie(3), movie(1)])
    page = catalog.search("  fILM 10", page=1, page_size=5)
    # the ranked 103 and 101 first, then the unranked matches in id order
    assert [m.movie_id for m in page.items] == [103, 101, 100, 102, 104]
    assert page.total == 10  # "Film 100" .. "Film 109"
    assert catalog.search("unrated", page=1, page_size=5).items[0].movie_id == UNRATED


def test_search_paginates_and_a_page_past_the_end_is_empty() -> None:
    catalog = Catalog(catalog_frame(), image_base_url=IMAGES)
    pages = [catalog.search(None, page=p, page_size=8) for p in (1, 2, 3, 4)]
    assert [len(p.items) for p in pages] == [8, 8, 5, 0]
    assert {p.total for p in pages} == {N + 1}
    seen = [m.movie_id for p in pages for m in p.items]
    assert seen == sorted(seen) and len(set(seen)) == N + 1


def test_catalog_movies_carry_poster_urls() -> None:
    catalog = Catalog(catalog_frame(), image_base_url=IMAGES)
    assert catalog[movie(0)].poster_url == f"{IMAGES}/p.jpg"
    assert catalog[movie(1)].poster_url is None
    assert catalog[UNRATED].year is None and catalog[UNRATED].genres == []


def test_catalog_refuses_a_frame_without_its_columns() -> None:
    with pytest.raises(ValueError, match="poster_path"):
        Catalog(catalog_frame().drop("poster_path"), image_base_url=IMAGES)


# --- the endpoints --------------------------------------------------------------------------
def test_recommend_finds_the_unseen_same_parity_movie(api: RecommenderAPI) -> None:
    response = api.recommend(RecommendRequest(user_id=user(4), k=1))
    assert response.model_version == "7" and not response.fallback
    assert ids(response) == [movie(4)]
    first = response.movies[0]
    assert (first.title, first.year, first.genres) == ("Film 104", 2004, ["Even"])
    assert first.poster_url == f"{IMAGES}/p.jpg" and first.score > 0


def test_recommend_honours_exclusions_and_genres(api: RecommenderAPI) -> None:
    excluded = api.recommend(RecommendRequest(user_id=user(4), k=3, exclude_movie_ids=[movie(4)]))
    assert movie(4) not in ids(excluded)
    odd = api.recommend(RecommendRequest(user_id=user(4), k=5, genres=["Odd"]))
    assert ids(odd) and all((m - MOVIE0) % 2 == 1 for m in ids(odd))


def test_an_unknown_user_gets_popular_movies_flagged_as_fallback(api: RecommenderAPI) -> None:
    response = api.recommend(RecommendRequest(user_id=5, k=3))
    assert response.fallback
    assert ids(response) == api.champion.model.popular(k=3).movie_ids


def test_an_unknown_genre_is_a_422_that_lists_the_known_ones(api: RecommenderAPI) -> None:
    with pytest.raises(RequestError, match="known: Even, Odd") as caught:
        api.popular(PopularRequest(genre="Western"))
    assert caught.value.status_code == 422


def test_recommend_for_liked_folds_in_a_visitor(api: RecommenderAPI) -> None:
    liked = [movie(i) for i in (0, 2, 4, 6)]
    response = api.recommend_for_liked(RecommendForLikedRequest(liked_movie_ids=liked, k=3))
    assert not response.fallback
    assert set(ids(response)).isdisjoint(liked)
    assert all((m - MOVIE0) % 2 == 0 for m in ids(response))


def test_recommend_for_liked_skips_unrated_likes_and_falls_back_without_any(
    api: RecommenderAPI,
) -> None:
    with_unrated = RecommendForLikedRequest(liked_movie_ids=[movie(0), UNRATED], k=3)
    assert not api.recommend_for_liked(with_unrated).fallback
    only_unrated = api.recommend_for_liked(RecommendForLikedRequest(liked_movie_ids=[UNRATED]))
    assert only_unrated.fallback


def test_recommend_for_liked_names_unknown_ids_in_a_404(api: RecommenderAPI) -> None:
    request = RecommendForLikedRequest(liked_movie_ids=[movie(0), 5, 7, 5])
    with pytest.raises(RequestError) as caught:
        api.recommend_for_liked(request)
    assert caught.value.status_code == 404
    assert caught.value.body["unknown_movie_ids"] == [5, 7]
    assert "/movies" in caught.value.body["error"]


def test_similar_movies_share_the_parity(api: RecommenderAPI) -> None:
    response = api.similar(SimilarRequest(movie_id=movie(3), k=4))
    assert len(ids(response)) == 4 and movie(3) not in ids(response)
    assert all((m - MOVIE0) % 2 == 1 for m in ids(response))


@pytest.mark.parametrize("movie_id", [5, UNRATED])
def test_similar_to_an_unknown_or_unrated_movie_is_a_404(
    api: RecommenderAPI, movie_id: int
) -> None:
    with pytest.raises(RequestError) as caught:
        api.similar(SimilarRequest(movie_id=movie_id))
    assert caught.value.status_code == 404
    assert caught.value.body["unknown_movie_ids"] == [movie_id]


def test_popular_of_a_genre(api: RecommenderAPI) -> None:
    response = api.popular(PopularRequest(k=3, genre="Even"))
    assert len(ids(response)) == 3 and not response.fallback
    assert all((m - MOVIE0) % 2 == 0 for m in ids(response))


def test_movies_pages_through_the_catalog_most_popular_first(api: RecommenderAPI) -> None:
    page = api.movies(MoviesRequest(page=1, page_size=N + 5))
    assert page.total == N + 1 and page.items[-1].movie_id == UNRATED
    assert [m.movie_id for m in page.items[:N]] == api.champion.model.popular(k=N).movie_ids


def test_explain_lists_the_contributing_movies_with_shares(api: RecommenderAPI) -> None:
    response = api.explain(ExplainRequest(user_id=user(4), movie_id=movie(4), n=3))
    assert response.movie.title == "Film 104" and response.model_version == "7"
    assert len(response.contributions) == 3
    assert all(
        (c.movie_id - MOVIE0) % 2 == 0 and -1 <= c.share <= 1 for c in response.contributions
    )
    scores = [c.score for c in response.contributions]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (ExplainRequest(user_id=5, movie_id=movie(0)), 404),
        (ExplainRequest(user_id=user(0), movie_id=5), 404),
        (ExplainRequest(user_id=user(0), movie_id=UNRATED), 404),
    ],
)
def test_explain_unknown_ids_are_404s(
    api: RecommenderAPI, request_: ExplainRequest, status: int
) -> None:
    with pytest.raises(RequestError) as caught:
        api.explain(request_)
    assert caught.value.status_code == status


def test_feedback_is_appended_to_the_log(api: RecommenderAPI) -> None:
    events = [
        FeedbackEvent(user_id=1, movie_id=UNRATED, event="like", timestamp=1.0),
        FeedbackEvent(user_id=2, movie_id=movie(1), event="rating", value=4.5, timestamp=2.0),
    ]
    assert [api.feedback(event) for event in events] == events
    log = read_events(api.feedback_log)
    assert log.events["movie_id"].to_list() == [UNRATED, movie(1)]
    assert log.rejected.is_empty()


def test_the_feedback_log_rotates_at_the_size_the_api_is_given(api: RecommenderAPI) -> None:
    small = RecommenderAPI(
        api.champion,
        feedback_log=api.feedback_log,
        feedback_log_max_bytes=200,
    )
    for n in range(10):  # ~80 bytes an event: two to a file
        small.feedback(FeedbackEvent(user_id=1, movie_id=movie(1), event="view", timestamp=n))

    assert len(log_files(api.feedback_log)) == 5
    assert read_events(api.feedback_log).events["timestamp"].to_list() == list(range(10))


def test_feedback_on_an_unknown_movie_is_a_404_and_writes_nothing(api: RecommenderAPI) -> None:
    with pytest.raises(RequestError) as caught:
        api.feedback(FeedbackEvent(user_id=1, movie_id=5, event="view"))
    assert caught.value.status_code == 404
    assert not api.feedback_log.exists()


def test_the_catalog_must_hold_every_movie_of_the_model(
    model: ALSRecommender, tmp_path: Path
) -> None:
    partial = Catalog(catalog_frame().filter(pl.col("movie_id") != movie(3)), image_base_url=IMAGES)
    with pytest.raises(ValueError, match="catalog lacks 1 movie"):
        ServedModel(model, partial, "7")


def test_load_reads_a_served_model_directory(model: ALSRecommender, tmp_path: Path) -> None:
    model.save(tmp_path / MODEL_DIR)
    frame = catalog_frame()
    frame = frame.with_columns(
        [pl.lit(None, dtype=pl.String).alias(c) for c in CATALOG_COLUMNS if c not in frame.columns]
    )
    frame.select(CATALOG_COLUMNS).write_parquet(tmp_path / CATALOG_FILE)
    api = RecommenderAPI(
        ServedModel.load(tmp_path, version="7", image_base_url=IMAGES),
        feedback_log=tmp_path / "log",
    )
    assert ids(api.recommend(RecommendRequest(user_id=user(4), k=1))) == [movie(4)]
    # the listing ranks by the model's popularity, unrated movies last
    assert api.movies(MoviesRequest(page_size=N + 1)).items[-1].movie_id == UNRATED


# --- request validation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_class", "payload"),
    [
        (RecommendRequest, {"user_id": 1, "k": 0}),
        (RecommendRequest, {"user_id": 1, "k": 101}),
        (RecommendRequest, {"user_id": True}),
        (RecommendRequest, {"user_id": "1"}),
        (RecommendRequest, {"user_id": 0}),
        (RecommendRequest, {"user_id": 2**63}),
        (RecommendRequest, {"user_id": 1, "userId": 1}),
        (RecommendRequest, {"user_id": 1, "genres": []}),
        (RecommendRequest, {"user_id": 1, "exclude_movie_ids": list(range(1, MAX_IDS + 2))}),
        (RecommendForLikedRequest, {"liked_movie_ids": []}),
        (RecommendForLikedRequest, {"liked_movie_ids": list(range(1, MAX_IDS + 2))}),
        (RecommendForLikedRequest, {"liked_movie_ids": [1.5]}),
        (SimilarRequest, {"movie_id": -1}),
        (PopularRequest, {"genre": ""}),
        (MoviesRequest, {"page": 0}),
        (MoviesRequest, {"page_size": 101}),
        (MoviesRequest, {"query": "x" * 201}),
        (ExplainRequest, {"user_id": 1}),
    ],
)
def test_malformed_requests_are_refused(model_class: type, payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        model_class.model_validate_json(json.dumps(payload))


def test_request_defaults() -> None:
    request = RecommendRequest.model_validate_json('{"user_id": 3}')
    assert (request.k, request.exclude_movie_ids, request.genres) == (10, [], None)
    page = MoviesRequest.model_validate_json("{}")
    assert (page.query, page.page, page.page_size) == (None, 1, 20)
    liked = RecommendForLikedRequest.model_validate_json('{"liked_movie_ids": [1, 2]}')
    assert (liked.liked_movie_ids, liked.k) == ([1, 2], 10)


def test_the_api_stamps_feedback_with_the_time_it_receives_it() -> None:
    before = time.time()
    event = Feedback(user_id=1, movie_id=movie(1), event="like")
    assert before <= event.timestamp <= time.time()


@pytest.mark.parametrize(
    "offset", [-MAX_EVENT_AGE_S - 60, MAX_CLOCK_SKEW_S + 60, 1e19, -1e19, float("inf")]
)
def test_feedback_times_far_from_the_server_clock_are_refused(offset: float) -> None:
    with pytest.raises(ValidationError, match="timestamp"):
        Feedback(user_id=1, movie_id=movie(1), event="like", timestamp=time.time() + offset)


def test_feedback_times_within_the_window_are_kept() -> None:
    queued = time.time() - MAX_EVENT_AGE_S + 60
    assert Feedback(user_id=1, movie_id=1, event="view", timestamp=queued).timestamp == queued


# --- experiments: a challenger beside the champion -----------------------------------------
def _experiment_api(
    model: ALSRecommender,
    tmp_path: Path,
    routing: Routing,
    *,
    challenger_version: str = "8",
    challenger_model: ALSRecommender | None = None,
) -> tuple[RecommenderAPI, list[dict[str, object]]]:
    records: list[dict[str, object]] = []
    catalog = Catalog(catalog_frame(), image_base_url=IMAGES)
    api = RecommenderAPI(
        ServedModel(model, catalog, "7"),
        challenger=ServedModel(challenger_model or model, catalog, challenger_version),
        routing=routing,
        feedback_log=tmp_path / "events.jsonl",
        impressions=records.append,
    )
    return api, records


def test_ab_answers_each_user_from_the_arm_assignment_gives_it(
    model: ALSRecommender, tmp_path: Path
) -> None:
    api, records = _experiment_api(model, tmp_path, Routing(mode="ab", share=50))
    assert api.experiment == "v7-vs-v8"
    arms = set()
    for u in range(N):
        response = api.recommend(RecommendRequest(user_id=user(u), k=2))
        expected = assign("v7-vs-v8", str(user(u)), share=50)
        assert (response.arm, response.experiment) == (expected, "v7-vs-v8")
        assert response.model_version == ("8" if expected == "challenger" else "7")
        again = api.recommend(RecommendRequest(user_id=user(u), k=2))
        assert again.arm == response.arm  # sticky
        arms.add(response.arm)
    assert arms == {"champion", "challenger"}
    assert {(r["arm"], r["model_version"], r["experiment"]) for r in records} == {
        ("champion", "7", "v7-vs-v8"),
        ("challenger", "8", "v7-vs-v8"),
    }
    assert all("shadow_movie_ids" not in r for r in records)


def test_a_visitor_without_user_or_session_is_not_in_the_experiment(
    model: ALSRecommender, tmp_path: Path
) -> None:
    api, records = _experiment_api(model, tmp_path, Routing(mode="ab", share=99))
    response = api.popular(PopularRequest(k=3))
    assert (response.arm, response.experiment, response.model_version) == ("champion", None, "7")
    assert records[-1]["experiment"] is None
    session = api.popular(PopularRequest(k=3, session_id="visitor-1"))
    assert session.arm == assign("v7-vs-v8", "s:visitor-1", share=99)


def test_shadow_mode_shows_the_champion_and_logs_the_challengers_list(
    model: ALSRecommender, tmp_path: Path
) -> None:
    popularity = train_popularity(
        checkerboard.interactions((0,)), config=ALSConfig(), movies=checkerboard.genres()
    )
    api, records = _experiment_api(
        model, tmp_path, Routing(mode="shadow"), challenger_model=popularity
    )
    for u in range(4):
        response = api.recommend(RecommendRequest(user_id=user(u), k=3))
        assert (response.arm, response.model_version) == ("champion", "7")
        assert response.experiment == "v7-vs-v8"
        assert ids(response) == model.recommend(user(u), k=3).movie_ids
    similar = api.similar(SimilarRequest(movie_id=movie(2), k=3))
    for record in records:
        assert record["shadow_version"] == "8"
    # each list logged is the challenger's own ranking of the same request, not the shown one
    for u, record in enumerate(records[:4]):
        assert record["shadow_movie_ids"] == popularity.recommend(user(u), k=3).movie_ids
    assert any(r["shadow_movie_ids"] != r["movie_ids"] for r in records[:4])
    assert records[-1]["movie_ids"] == ids(similar)
    assert records[-1]["shadow_movie_ids"] == popularity.similar(movie(2), k=3).movie_ids


def test_without_an_experiment_the_challenger_is_not_used(
    model: ALSRecommender, tmp_path: Path
) -> None:
    for routing, version in ((Routing(mode="off"), "8"), (Routing(mode="ab", share=99), "7")):
        api, records = _experiment_api(model, tmp_path, routing, challenger_version=version)
        assert api.experiment is None and api.challenger is None
        response = api.recommend(RecommendRequest(user_id=user(1), k=2))
        assert (response.arm, response.experiment, response.model_version) == (
            "champion",
            None,
            "7",
        )
        assert records[-1]["arm"] == "champion" and records[-1]["experiment"] is None


def test_explain_uses_the_model_of_the_users_arm(model: ALSRecommender, tmp_path: Path) -> None:
    api, _ = _experiment_api(model, tmp_path, Routing(mode="ab", share=50))
    for u in range(6):
        answer = api.explain(ExplainRequest(user_id=user(u), movie_id=movie(u)))
        arm = api.arm(str(user(u)))
        assert answer.model_version == ("8" if arm == "challenger" else "7")
