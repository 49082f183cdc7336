"""Images of a page on fakes: measured and read, tiny ones and non-images left out, each
image URL read once, and the OCR text searchable with the image and its page."""

from __future__ import annotations

import pytest

from skr.adapters.memory.cache import MemoryCache
from skr.domain.models import ChunkKind
from skr.services.ingest import IngestService
from skr.services.page_images import ImageOptions
from tests.fakes.fake_embedder import FakeEmbedder
from tests.fakes.fake_fetcher import DictFetcher
from tests.fakes.fake_image_reader import FakeImageReader
from tests.fakes.fake_store import InMemoryStore

pytestmark = pytest.mark.anyio

SITE = "http://docs.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def page(title: str) -> str:
    return (
        f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
        "<p>The login form asks for a username and a password before anything else.</p>"
        '<figure><img src="/shot.png" alt="screenshot of the login page">'
        "<figcaption>The login page</figcaption></figure>"
        '<p><img src="/pixel.gif" alt="tracking pixel"> <img src="/fake.png" alt="not really"></p>'
        "</main></body></html>"
    )


async def test_images_are_read_tiny_and_broken_ones_left_out_each_url_read_once() -> None:
    fetcher = DictFetcher(
        {
            f"{SITE}/a": page("Login"),
            f"{SITE}/b": page("Login again"),
            f"{SITE}/shot.png": "SHOT",
            f"{SITE}/pixel.gif": "PIXEL",
            f"{SITE}/fake.png": "<html>not an image</html>",
        }
    )
    reader = FakeImageReader()
    reader.add(b"SHOT", width=800, height=600, text="Username Password Log In")
    reader.add(b"PIXEL", width=1, height=1)
    store = InMemoryStore()
    service = IngestService(
        fetcher=fetcher, store=store, embedder=FakeEmbedder(), cache=MemoryCache(10),
        max_tokens=64, image_reader=reader, image_options=ImageOptions(min_side=48),
    )  # fmt: skip
    collection = await store.ensure_collection("default", "default")
    await service.ingest_page(f"{SITE}/a", collection.id)
    await service.ingest_page(f"{SITE}/b", collection.id)
    images = [c for c, _ in store.chunks.values() if c.kind is ChunkKind.IMAGE]
    assert {c.url for c in images} == {f"{SITE}/a", f"{SITE}/b"}
    assert {c.image.src for c in images if c.image} == {f"{SITE}/shot.png"}
    assert all("Username Password" in c.text and "login page" in c.text for c in images)
    assert fetcher.fetched.count(f"{SITE}/shot.png") == 1  # remembered for the second page
    assert len(reader.reads) == 3
