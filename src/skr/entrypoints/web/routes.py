"""The web page: `/`, `/search`, `/documents` and `/jobs`, rendered on the server from the
same services as the API; skr.js calls the JSON API for everything that changes state."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import jinja2
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from skr.domain.errors import NotFoundError
from skr.domain.models import DEFAULT_COLLECTION, ChunkKind, Collection, Document, Hit
from skr.entrypoints.api.dependencies import (
    AskAdmissionDep,
    JobServiceDep,
    KnowledgeDep,
    LibraryDep,
    SearchAdmissionDep,
)
from skr.entrypoints.api.routes_jobs import job_read
from skr.entrypoints.api.routes_search import answer_read
from skr.entrypoints.api.schemas import COLLECTION_NAME
from skr.entrypoints.web.signin import SignIn
from skr.entrypoints.web.signin import WebTenantDep as TenantDep
from skr.entrypoints.web.templating import build_environment
from skr.services.library import LibraryService
from skr.services.search import MAX_QUERY_CHARS

STATIC_PATH = "/static"

# Scripts and styles only from this origin, and none inline; images from anywhere on
# http(s) (thumbnails load from their own sites, without a referrer); no frames, plugins
# or foreign form targets.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' http: https:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    "object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
SEARCH_RESULTS = 20
ASK_PASSAGES = 5
JOBS_SHOWN = 50
DOCUMENTS_PER_PAGE = 50
DEFAULT_CRAWL_PAGES = 100

CollectionParam = Annotated[str, Query(pattern=COLLECTION_NAME)]
_KINDS: dict[str, ChunkKind | None] = {
    "text": ChunkKind.TEXT,
    "image": ChunkKind.IMAGE,
    "all": None,
}


class WebPages:
    """The page handlers, holding the template environment they render with."""

    def __init__(self, environment: jinja2.Environment) -> None:
        self._environment = environment

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        for path, handler in (
            ("/", self.home),
            ("/search", self.search),
            ("/documents", self.documents),
            ("/jobs", self.jobs),
        ):
            router.add_api_route(path, handler, methods=["GET"], response_class=HTMLResponse)
        signin = SignIn(self.render)
        router.add_api_route("/signin", signin.form, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/signin", signin.submit, methods=["POST"])
        router.add_api_route("/signout", signin.sign_out, methods=["POST"])
        return router

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("error", None)
        html = self._environment.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)

    async def home(
        self,
        library: LibraryDep,
        knowledge: KnowledgeDep,
        tenant: TenantDep,
        admit: AskAdmissionDep,
        question: Annotated[str, Query(max_length=2000)] = "",
        collection: CollectionParam = DEFAULT_COLLECTION,
    ) -> HTMLResponse:
        """Search and ask. With ``question`` the answer is rendered here too, so the page
        answers without JavaScript; with it, skr.js streams answers instead."""
        collections = await library.list_collections(tenant)
        found = await _collection_or_none(library, collection, tenant)
        answer = None
        if question.strip() and found is not None:
            result = await knowledge.ask(
                tenant, collection, question.strip(), k=ASK_PASSAGES, admit=admit
            )
            answer = answer_read(result)
        return self.render(
            "index.html",
            status_code=200 if found is not None else 404,
            active="home",
            collections=collections,
            collection=collection,
            question=question,
            answer=answer,
            error=None if found is not None else _no_collection(collection),
        )

    async def search(
        self,
        library: LibraryDep,
        knowledge: KnowledgeDep,
        tenant: TenantDep,
        admit: SearchAdmissionDep,
        q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
        kind: Literal["text", "image", "all"] = "all",
        collection: CollectionParam = DEFAULT_COLLECTION,
    ) -> HTMLResponse:
        """Results for ``q``, matching words marked."""
        collections = await library.list_collections(tenant)
        found = await _collection_or_none(library, collection, tenant)
        query = q.strip()
        hits: list[Hit] = []
        if query and found is not None:
            hits = await knowledge.search(
                tenant, collection, query, k=SEARCH_RESULTS, kind=_KINDS[kind], admit=admit
            )
        return self.render(
            "search.html",
            status_code=200 if found is not None else 404,
            active="search",
            collections=collections,
            collection=collection,
            q=query,
            kind=kind,
            hits=hits,
            error=None if found is not None else _no_collection(collection),
        )

    async def documents(
        self,
        library: LibraryDep,
        tenant: TenantDep,
        collection: CollectionParam = DEFAULT_COLLECTION,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> HTMLResponse:
        """The library: collections, and one collection's documents a page at a time."""
        collections = await library.list_collections(tenant)
        found = await _collection_or_none(library, collection, tenant)
        documents: list[Document] = []
        next_cursor: str | None = None
        if found is not None:
            documents, next_cursor = await library.list_documents(
                collection, tenant, limit=DOCUMENTS_PER_PAGE, cursor=cursor
            )
        return self.render(
            "documents.html",
            status_code=200 if found is not None else 404,
            active="documents",
            collections=collections,
            collection=collection,
            documents=documents,
            next_cursor=next_cursor,
            error=None if found is not None else _no_collection(collection),
        )

    async def jobs(
        self, library: LibraryDep, job_service: JobServiceDep, tenant: TenantDep
    ) -> HTMLResponse:
        """Sources: the form that adds a page or a crawl, and recent jobs (live in skr.js)."""
        collections = await library.list_collections(tenant)
        jobs = await job_service.list_recent(tenant, JOBS_SHOWN)
        names = {c.id: c.name for c in collections}
        return self.render(
            "jobs.html",
            active="jobs",
            collections=collections,
            collection_names=names,
            jobs=[job_read(j) for j in jobs if j.collection_id in names],
            max_pages_limit=job_service.limits.max_pages,
            default_crawl_pages=DEFAULT_CRAWL_PAGES,
        )


async def _collection_or_none(library: LibraryService, name: str, tenant: str) -> Collection | None:
    try:
        return await library.collection(name, tenant)
    except NotFoundError:
        return None


def _no_collection(name: str) -> str:
    return f"There is no collection called “{name}”."


def web_router() -> APIRouter:
    """The page routes, with their template environment built now (not at import)."""
    return WebPages(build_environment()).router()


def static_files() -> StaticFiles:
    """skr.js and skr.css, served from the installed package."""
    return StaticFiles(packages=[("skr.entrypoints.web", "static")])
