"""Browser tests: Debian's Chromium, driven by Playwright, against ``bentoml serve`` of the real
service with a model trained on the embedded sample and the built page (``frontend/dist``).

Without a browser, a built page or the playwright package the tests skip and say what is
missing; with ``MOVIEREC_REQUIRE_BROWSER=1`` (CI) they fail instead.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from recommender.settings import PROJECT_ROOT, get_settings
from support.servers import HOST, free_port, running_server

if TYPE_CHECKING:  # the package is optional until the tests run (see browser_prerequisites)
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
DIST = PROJECT_ROOT / "frontend" / "dist"
REQUIRE_BROWSER = "MOVIEREC_REQUIRE_BROWSER"
# Without the background-networking flags Chromium keeps dialling Google services, which on a
# closed network only fills the logs with refused connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL_VERSION = "e2e-1"
SCREENSHOTS = PROJECT_ROOT / "test-results" / "e2e"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _missing() -> list[str]:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"a browser at {CHROMIUM} (apt-get install chromium)")
    if not (DIST / "index.html").exists():
        missing.append(f"the built page in {DIST} (cd frontend && npm ci && npm run build)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package (uv sync)")
    return missing


@pytest.fixture(scope="session", autouse=True)
def browser_prerequisites() -> None:
    """Skip, or under MOVIEREC_REQUIRE_BROWSER=1 fail, when something the tests need is missing."""
    missing = _missing()
    if not missing:
        return
    message = "the e2e tests need " + "; ".join(missing)
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{REQUIRE_BROWSER}=1 and {message}", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Served:
    """The running service: its page URL, the model version it names, its feedback and
    impression logs."""

    url: str
    model_version: str
    feedback_log: Path
    impression_log: Path


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``bentoml serve`` of bentos.service with a freshly trained model and frontend/dist."""
    root = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MOVIEREC_DATA_DIR": str(root / "data"),
        "MOVIEREC_FRONTEND_DIST": str(DIST),
    }
    trained = subprocess.run(
        [sys.executable, "-m", "support.sample_model", str(root / "trained"), MODEL_VERSION],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, f"training the served model failed:\n{trained.stderr}"
    env["MOVIEREC_BENTO_MODEL_TAG"] = trained.stdout.split()[-1]

    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "bentos.service:MovieRecommender"]
    command += ["--host", HOST, "--port", str(port)]
    with running_server(
        command, port=port, env=env, cwd=PROJECT_ROOT, log=root / "serve.log"
    ) as url:
        settings = get_settings(data_dir=root / "data")
        yield Served(
            url=f"{url}/",
            model_version=MODEL_VERSION,
            feedback_log=settings.feedback_log,
            impression_log=settings.impression_log,
        )


# Module scope: Playwright's sync API keeps an asyncio loop running while it is open, which
# makes asyncio.run() fail in whatever tests run next (Prefect's, for one).
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright's own browser download does not work here)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)  # two cores shared with the service: allow some slack
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open_page(browser: Browser, served: Served, viewport: dict[str, int]) -> Iterator[Page]:
    """A page in a fresh context (new session storage, so a new visitor), at the site's root.

    Fails the test at teardown when the page logged a console error or threw.
    """
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.set_default_timeout(10_000)
    page.goto(served.url)
    yield page
    context.close()
    assert not errors, f"the browser console logged errors: {errors}"


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    """The page at a desktop width (1280x800)."""
    yield from _open_page(browser, served, DESKTOP)


@pytest.fixture
def phone_page(browser: Browser, served: Served) -> Iterator[Page]:
    """The page at a phone width (390x844)."""
    yield from _open_page(browser, served, PHONE)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where screenshots go: test-results/e2e/ (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
