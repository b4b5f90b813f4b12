"""The poster page in a real browser against the real service (see conftest.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import polars as pl
import pytest

from recommender.data.feedback import read_events
from recommender.serving.impressions import read_impressions

try:
    from playwright.sync_api import expect
except ImportError:  # conftest's browser_prerequisites skips, or fails, every test and says why
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.e2e.conftest import Served

pytestmark = pytest.mark.e2e

PAGE_SIZE = 20  # frontend/src/services/config.js


def section(page: Page, name: str | re.Pattern[str]) -> Locator:
    return page.get_by_role("region", name=name, exact=isinstance(name, str))


def cards(scope: Locator) -> Locator:
    return scope.get_by_role("listitem")


def card_labels(scope: Locator) -> list[str]:
    return scope.locator(".card-open").evaluate_all("buttons => buttons.map(b => b.ariaLabel)")


def movie_ids(scope: Locator) -> list[int]:
    return [
        int(i) for i in scope.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.movieId)")
    ]


def visitor_id(page: Page) -> int:
    return int(page.evaluate("sessionStorage.getItem('movierec.visitor')"))


def feedback_of(served: Served, user_id: int, count: int) -> list[tuple[int, str]]:
    """``(movie_id, event)`` of ``user_id``'s events in the log, once it holds ``count``."""
    deadline = time.monotonic() + 10
    while True:
        events = read_events(served.feedback_log).events.filter(pl.col("user_id") == user_id)
        if events.height >= count or time.monotonic() > deadline:
            return list(events.select("movie_id", "event").iter_rows())
        time.sleep(0.1)


def impressions_of(served: Served, ids: list[str]) -> dict[str, dict[str, object]]:
    """The impression records of ``ids``, once the service has written them all."""
    deadline = time.monotonic() + 10
    while True:
        table = read_impressions(served.impression_log)
        found = {row["impression_id"]: row for row in table.iter_rows(named=True)}
        if set(ids) <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_grid_shows_posters_and_loads_more(page: Page, served: Served, screenshots: Path) -> None:
    popular = section(page, "Popular")
    expect(cards(popular)).to_have_count(PAGE_SIZE)
    # No TMDB key offline: every poster is generated, none is a broken image.
    expect(popular.get_by_role("img", name=re.compile(r"^Poster of "))).to_have_count(PAGE_SIZE)
    assert page.evaluate("[...document.images].filter(i => !i.naturalWidth).length") == 0
    expect(page.get_by_test_id("model-version")).to_have_text(served.model_version)
    page.screenshot(path=screenshots / "poster-grid.png")

    popular.get_by_role("button", name="Show more").scroll_into_view_if_needed()
    expect(cards(popular)).to_have_count(2 * PAGE_SIZE)
    assert len(set(movie_ids(popular))) == 2 * PAGE_SIZE


def test_footer_names_the_served_model_and_no_arm(page: Page, served: Served) -> None:
    # The service runs no experiment by default: its answers name the champion and no experiment,
    # and the footer names the model version only.
    expect(cards(section(page, "Popular"))).to_have_count(PAGE_SIZE)
    expect(page.get_by_test_id("served-model")).to_have_text(
        f"Model version {served.model_version}"
    )
    expect(page.get_by_test_id("experiment-arm")).to_have_count(0)
    answer = httpx.post(f"{served.url}popular", json={"k": 1}).json()
    assert (answer["arm"], answer["experiment"]) == ("champion", None)


def test_genre_filter_narrows_popular(page: Page, served: Served) -> None:
    page.get_by_role("group", name="Filter by genre").get_by_role(
        "button", name="Animation"
    ).click()
    popular = section(page, "Popular in Animation")
    answer = httpx.post(f"{served.url}popular", json={"k": PAGE_SIZE, "genre": "Animation"})
    expected = [movie["movie_id"] for movie in answer.json()["movies"]]
    expect(popular).to_have_attribute("aria-busy", "false")
    expect(popular.locator(".card").first).to_have_attribute("data-movie-id", str(expected[0]))
    assert movie_ids(popular) == expected


def test_search_narrows_the_results(page: Page, served: Served) -> None:
    expect(cards(section(page, "Popular"))).to_have_count(PAGE_SIZE)
    page.get_by_role("searchbox", name="Search movies by title").fill("star wars")

    results = section(page, "Titles with “star wars”")
    total = httpx.post(f"{served.url}movies", json={"query": "star wars"}).json()["total"]
    assert 1 < total < PAGE_SIZE
    expect(cards(results)).to_have_count(total)
    expect(results.get_by_text(f"{total} movies")).to_be_visible()
    assert all("star wars" in label.lower() for label in card_labels(results))
    expect(section(page, "Popular")).to_have_count(0)

    page.get_by_role("searchbox", name="Search movies by title").fill("")
    expect(cards(section(page, "Popular"))).to_have_count(PAGE_SIZE)


def test_a_card_opens_by_keyboard_with_similar_movies(
    page: Page, served: Served, screenshots: Path
) -> None:
    popular = section(page, "Popular")
    card = popular.locator(".card-open").first
    expect(card).to_be_visible()
    card.focus()
    assert card.evaluate("c => getComputedStyle(c).outlineStyle") == "solid"  # the focus ring
    page.keyboard.press("Enter")

    title = card.get_attribute("aria-label").rsplit(" (", 1)[0]
    dialog = page.get_by_role("dialog", name=title)
    expect(dialog).to_be_visible()
    similar = dialog.get_by_role("region", name="Similar movies")
    expect(cards(similar)).to_have_count(8)
    page.screenshot(path=screenshots / "movie-detail.png")

    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(card).to_be_focused()
    opened = movie_ids(popular)[0]
    assert feedback_of(served, visitor_id(page), 1) == [(opened, "click")]


def test_liking_three_movies_recommends_from_them(
    page: Page, served: Served, screenshots: Path
) -> None:
    popular = section(page, "Popular")
    expect(cards(popular)).to_have_count(PAGE_SIZE)
    liked = movie_ids(popular)[2:5]
    for movie_id in liked:
        like = popular.locator(f'.card[data-movie-id="{movie_id}"]').get_by_role(
            "button", name=re.compile(r"^Like: ")
        )
        like.click()
        expect(like).to_have_attribute("aria-pressed", "true")

    because = section(page, re.compile(r"^Because you liked .+, .+ and "))
    expect(cards(because)).to_have_count(12)
    expect(because).to_have_attribute("aria-busy", "false")
    assert not set(movie_ids(because)) & set(liked)
    page.evaluate("window.scrollTo(0, 0)")  # the new section is the first on the page
    page.screenshot(path=screenshots / "because-you-liked.png")

    visitor = visitor_id(page)
    assert visitor > 1_000_000_000  # an anonymous visitor, never a dataset user
    assert feedback_of(served, visitor, 3) == [(movie_id, "like") for movie_id in liked]
    # Each like names the impression (the popular answer) its movie was shown in.
    events = read_events(served.feedback_log).events.filter(pl.col("user_id") == visitor)
    shown = impressions_of(served, events.get_column("impression_id").unique().to_list())
    for movie_id, impression_id in events.select("movie_id", "impression_id").iter_rows():
        assert shown[impression_id]["endpoint"] == "popular"
        assert shown[impression_id]["user_key"] == f"s:{visitor}"
        assert movie_id in shown[impression_id]["movie_ids"]


def test_a_user_sees_recommendations_explanations_and_the_fallback(
    page: Page, served: Served
) -> None:
    user_id = page.get_by_label("User id")
    user_id.fill("1")
    user_id.press("Enter")
    for_you = section(page, "Recommended for you")
    expect(cards(for_you)).to_have_count(12)
    expect(for_you.get_by_text("No history for this user")).to_have_count(0)

    for_you.locator(".card-open").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Why user 1 may like it")).to_be_visible()
    expect(dialog.locator(".explanation li").first).to_contain_text("They watched ")
    opened = movie_ids(for_you)[0]
    dialog.get_by_role("button", name="Close").click()
    assert feedback_of(served, 1, 1)[-1] == (opened, "click")

    user_id.fill("999999")
    user_id.press("Enter")
    expect(for_you.get_by_text("No history for this user: showing popular movies")).to_be_visible()


def test_phone_width(phone_page: Page, screenshots: Path) -> None:
    popular = section(phone_page, "Popular")
    expect(cards(popular)).to_have_count(PAGE_SIZE)
    first, second, third = (cards(popular).nth(i).bounding_box() for i in range(3))
    assert first["y"] == second["y"] < third["y"]  # two columns
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    phone_page.screenshot(path=screenshots / "poster-grid-phone.png")
