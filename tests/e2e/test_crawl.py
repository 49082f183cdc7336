"""Site crawls end to end: a real `skr serve` crawls the Flask tutorial served on
127.0.0.1 with a robots.txt and a sitemap written here, then crawls it again unchanged,
after one page changed, and after one page was deleted."""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import SHARED_SITE, SkrServer, free_port, static_site

pytestmark = pytest.mark.slow

CRAWL_DELAY = 0.25
TUTORIAL = [
    "index.html", "layout.html", "factory.html", "database.html", "views.html",
    "templates.html", "static.html", "blog.html", "install.html", "tests.html",
    "deploy.html", "next.html",
]  # fmt: skip
DISALLOWED = "deploy.html"


def write_site(root: Path, base: str) -> None:
    shutil.copytree(SHARED_SITE, root, dirs_exist_ok=True)
    (root / "robots.txt").write_text(
        f"User-agent: *\nDisallow: /tutorial/{DISALLOWED}\nCrawl-delay: {CRAWL_DELAY}\n"
        f"Sitemap: {base}/sitemap.xml\n"
    )
    urls = "".join(f"<url><loc>{base}/tutorial/{name}</loc></url>" for name in TUTORIAL)
    (root / "sitemap.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, type, Path]]:
    if not SHARED_SITE.is_dir():
        pytest.fail(f"the Flask docs are missing: {SHARED_SITE}")
    root = tmp_path_factory.mktemp("flask-site")
    with static_site(root) as (base, handler):
        write_site(root, base)
        yield base, handler, root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkrServer]:
    root = tmp_path_factory.mktemp("skr-crawl")
    skr = SkrServer(
        root / "data", free_port(), root / "server.log",
        SKR_CRAWL_HOST_INTERVAL_SECONDS="0",  # the site's Crawl-delay sets the pace
    )  # fmt: skip
    skr.start()
    try:
        yield skr
    finally:
        skr.stop()


def crawl(server: SkrServer, base: str, timeout: float = 180) -> dict[str, object]:
    body = {
        "url": f"{base}/tutorial/index.html",
        "crawl": {"max_depth": 2, "max_pages": 40, "prefix": f"{base}/tutorial/"},
    }
    accepted = httpx.post(f"{server.url}/v1/ingest", json=body, timeout=10)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            assert job["status"] == "succeeded", job
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"crawl {job_id} did not finish")


@pytest.fixture(scope="module")
def first_crawl(
    server: SkrServer, site: tuple[str, type, Path]
) -> tuple[dict[str, object], list[tuple[float, str, str]]]:
    """The site's first crawl, which every test here builds on (so each can run alone),
    with the requests the site saw during it."""
    base, handler, _ = site
    handler.requests.clear()  # type: ignore[attr-defined]
    job = crawl(server, base)
    return job, list(handler.requests)  # type: ignore[attr-defined]


def documents(server: SkrServer) -> dict[str, dict[str, object]]:
    listed = httpx.get(f"{server.url}/v1/documents", params={"limit": 100}, timeout=10).json()
    return {d["url"]: d for d in listed["documents"]}


def test_a_crawl_keeps_to_robots_txt_and_its_crawl_delay(
    server: SkrServer,
    site: tuple[str, type, Path],
    first_crawl: tuple[dict[str, object], list[tuple[float, str, str]]],
) -> None:
    base, _, _ = site
    job, requests = first_crawl
    counters = job["counters"]
    assert counters["indexed"] == len(TUTORIAL) - 1, job
    assert counters["skipped"] >= 1 and counters["failed"] == 0
    assert job["pages_per_second"] > 0
    stored = documents(server)
    assert set(stored) == {f"{base}/tutorial/{n}" for n in TUTORIAL if n != DISALLOWED}
    paths = [path for _, path, _ in requests]
    assert "/robots.txt" in paths and "/sitemap.xml" in paths
    assert f"/tutorial/{DISALLOWED}" not in paths
    assert all("SKR" in agent for _, _, agent in requests)
    pages = [p for p in paths if p.startswith("/tutorial/")]
    assert len(pages) == len(set(pages)), "a page was fetched twice"
    starts = sorted(t for t, _, _ in requests)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= CRAWL_DELAY * 0.8, f"Crawl-delay not kept: {min(gaps):.3f} s"


@pytest.mark.usefixtures("first_crawl")
def test_images_are_read_searchable_and_cite_their_page(
    server: SkrServer, site: tuple[str, type, Path]
) -> None:
    base, _, _ = site
    params: dict[str, str | int] = {"q": "login page username password", "kind": "image", "k": 5}
    hits = httpx.get(f"{server.url}/v1/search", params=params, timeout=30).json()["hits"]
    assert hits and all(h["kind"] == "image" for h in hits)
    login = [h for h in hits if (h["image_url"] or "").endswith("flaskr_login.png")]
    assert login, hits
    pages_showing_it = {f"{base}/tutorial/{n}" for n in ("index.html", "static.html")}
    assert login[0]["url"] in pages_showing_it
    assert "Username" in login[0]["text"]  # read from the screenshot by OCR
    logos = [h for h in hits if (h["image_url"] or "").endswith("flask-icon.png")]
    assert len(logos) <= 3  # the logo on every page is boilerplate after a few pages


@pytest.mark.usefixtures("first_crawl")
def test_a_second_crawl_of_an_unchanged_site_embeds_nothing(
    server: SkrServer, site: tuple[str, type, Path]
) -> None:
    base, handler, _ = site
    handler.requests.clear()
    job = crawl(server, base)
    counters = job["counters"]
    assert counters["chunks_embedded"] == 0 and counters["indexed"] == 0, job
    assert counters["unchanged"] == len(TUTORIAL) - 1


@pytest.mark.usefixtures("first_crawl")
def test_a_changed_page_re_embeds_only_its_changed_chunks(
    server: SkrServer, site: tuple[str, type, Path]
) -> None:
    base, _, root = site
    page = root / "tutorial" / "views.html"
    html = page.read_text()
    assert "A view function is the code you write" in html
    page.write_text(
        html.replace("A view function is the code you write", "A view function is what you write")
    )
    time.sleep(1.1)  # Last-Modified has a one-second resolution
    page.touch()
    job = crawl(server, base)
    counters = job["counters"]
    assert counters["indexed"] == 1 and counters["unchanged"] == len(TUTORIAL) - 2, job
    stored = documents(server)[f"{base}/tutorial/views.html"]
    assert 1 <= counters["chunks_embedded"] < stored["chunk_count"]


@pytest.mark.usefixtures("first_crawl")
def test_a_deleted_page_is_removed_from_the_index(
    server: SkrServer, site: tuple[str, type, Path]
) -> None:
    base, _, root = site
    (root / "tutorial" / "next.html").unlink()
    job = crawl(server, base)
    assert job["counters"]["removed"] == 1, job
    assert f"{base}/tutorial/next.html" not in documents(server)
    params: dict[str, str | int] = {"q": "Keep Developing", "k": 20}
    hits = httpx.get(f"{server.url}/v1/search", params=params, timeout=30).json()["hits"]
    assert not [h for h in hits if h["url"].endswith("/next.html")]


def test_the_cli_crawls_and_shows_the_outcome(
    server: SkrServer, site: tuple[str, type, Path]
) -> None:
    base, _, _ = site
    httpx.post(f"{server.url}/v1/collections", json={"name": "cli-crawl"}, timeout=10)
    result = server.cli(
        "ingest", f"{base}/tutorial/index.html", "--collection", "cli-crawl", "--crawl",
        "--max-depth", "1", "--max-pages", "5", "--prefix", f"{base}/tutorial/", "--no-sitemap",
        "--wait",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "job succeeded: indexed 5" in result.stdout
    listed = httpx.get(
        f"{server.url}/v1/documents", params={"collection": "cli-crawl"}, timeout=10
    ).json()
    assert len(listed["documents"]) == 5
