"""Shared fixtures: tiny MovieLens datasets in both layouts, zips of them, a loopback server."""

from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recommender.settings import configure_process

# implicit warns (and warnings are errors) unless OpenBLAS is single-threaded; OpenBLAS reads
# that when numpy is first imported, so nothing imported above may import numpy.
configure_process()

from recommender.data.movielens import ML100K_GENRES  # noqa: E402

# One BentoML home for the session, set before anything imports bentoml (which reads it once):
# in-process imports and `bentoml serve` subprocesses share it, and ~/bentoml is never touched.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="movierec-test-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

ML_LATEST_FILES = {
    "ratings.csv": (
        "userId,movieId,rating,timestamp\n"
        "1,1,4.0,964982703\n"
        "1,2,3.5,964981247\n"
        "2,1,5.0,964982224\n"
        "2,3,0.5,964983815\n"
    ),
    "movies.csv": (
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Babylon 5,(no genres listed)\n"
    ),
    "links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n2,0112346,9087\n3,0105946,\n",
    "tags.csv": "userId,movieId,tag,timestamp\n1,1,pixar,964982703\n",
}


def _u_item_line(movie_id: int, title: str, release: str, genres: set[str]) -> str:
    flags = "|".join("1" if name in genres else "0" for name in ML100K_GENRES)
    return f"{movie_id}|{title}|{release}||http://us.imdb.com/M/title-exact?{movie_id}|{flags}\n"


ML100K_FILES = {
    "u.data": "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n",
    "u.item": (
        _u_item_line(1, "Toy Story (1995)", "01-Jan-1995", {"Animation", "Children's", "Comedy"})
        + _u_item_line(2, "Café Society (1995)", "01-Jan-1995", {"Drama"})
        + _u_item_line(3, "Some Film", "04-Jul-1996", {"Action", "Thriller"})
        + _u_item_line(267, "unknown", "", {"unknown"})
    ),
    "u.genre": "".join(f"{name}|{i}\n" for i, name in enumerate(ML100K_GENRES)) + "\n",
}


def _write(directory: Path, files: dict[str, str], *, encoding: str = "utf-8") -> Path:
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding=encoding)
    return directory


@pytest.fixture
def ml_latest_dir(tmp_path: Path) -> Path:
    """A three-movie, four-rating dataset in the ml-latest layout (plus an unused tags.csv)."""
    return _write(tmp_path / "ml-latest-tiny", ML_LATEST_FILES)


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    """A four-movie, three-rating dataset in the ml-100k layout (u.item in latin-1)."""
    return _write(tmp_path / "ml-100k", ML100K_FILES, encoding="latin-1")


@pytest.fixture
def make_zip(tmp_path: Path) -> Callable[..., Path]:
    """``make_zip(directory, folder=None)``: zip a directory's files, optionally in a folder."""

    def make(directory: Path, *, folder: str | None = None) -> Path:
        target = tmp_path / "zips" / f"{directory.name}.zip"
        target.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(directory.iterdir()):
                archive.write(path, f"{folder}/{path.name}" if folder else path.name)
        return target

    return make


class _Handler(SimpleHTTPRequestHandler):
    """Serves files; ``/truncated/<name>`` promises the whole file but sends half of it;
    ``/flaky/<name>`` answers 503 the first time, then serves the file."""

    flaky_seen: set[str]  # per server: set by the fixture

    def do_GET(self) -> None:
        if self.path.startswith("/flaky/"):
            if self.path not in self.flaky_seen:
                self.flaky_seen.add(self.path)
                self.send_error(503, "try again")
                return
            self.path = self.path.removeprefix("/flaky")
        if not self.path.startswith("/truncated/"):
            super().do_GET()
            return
        body = Path(self.translate_path(self.path.removeprefix("/truncated"))).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a fresh directory: yields (base URL, directory)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = type("_FileHandler", (_Handler,), {"flaky_seen": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- Prefect ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session (starting one takes ~20 s)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
