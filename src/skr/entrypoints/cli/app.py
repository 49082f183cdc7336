"""The ``skr`` command line: the Typer app, ``main``, and the commands that talk to a
running SKR over HTTP (ingest, search, ask, jobs). The commands of the other families
live in their own modules and join the app here."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.table import Table

from skr.entrypoints.cli.eval_commands import eval_app
from skr.entrypoints.cli.job_watch import follow_job_events, poll_job
from skr.entrypoints.cli.keys_commands import keys_app
from skr.entrypoints.cli.output import err, fail, out
from skr.entrypoints.cli.server_commands import server_app
from skr.entrypoints.cli.transfer_commands import transfer_app
from skr.settings import Settings

# rich_markup_mode=None: typer's Rich panels print a type for every flag (`--wait <bool>`,
# `--help <bool>`) though a flag takes no value; the plain layout prints none, and the
# metavars below name what each other option takes.
app = typer.Typer(
    help="SKR, the Smart Knowledge Repository: turn web sites into a knowledge base.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

ApiUrl = Annotated[
    str | None,
    typer.Option("--api-url", metavar="URL", help="SKR server to talk to (default: SKR_API_URL)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON response.")]
CollectionOpt = Annotated[
    str, typer.Option("--collection", "-c", metavar="NAME", help="Collection name.")
]


class _Client:
    """A thin HTTP client for the API with errors a person can read."""

    def __init__(self, api_url: str | None) -> None:
        settings = Settings()
        self.base = (api_url or settings.api_url).rstrip("/")
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self.http = httpx.Client(
            base_url=self.base, timeout=httpx.Timeout(60.0, connect=3.0), headers=headers
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            fail(f"no SKR server answers at {self.base}; start one with `skr serve`")
        except httpx.TimeoutException:
            fail(f"the SKR server at {self.base} did not answer in time")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            fail(f"{response.status_code}: {detail}")
        return response.json() if response.content else None


@app.command()
def ingest(
    url: Annotated[str, typer.Argument(metavar="URL", help="The page, PDF or site to ingest.")],
    collection: CollectionOpt = "default",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job and show progress.")] = (
        False
    ),
    crawl: Annotated[
        bool, typer.Option("--crawl", help="Crawl the site from URL, not only the page.")
    ] = False,
    max_depth: Annotated[
        int, typer.Option(metavar="N", help="Crawl: links followed from URL.")
    ] = 3,
    max_pages: Annotated[
        int, typer.Option(metavar="N", help="Crawl: most URLs in the crawl.")
    ] = 200,
    same_host: Annotated[
        bool,
        typer.Option("--same-host/--subdomains", help="Crawl: URL's host only, or subdomains too."),
    ] = True,
    prefix: Annotated[
        str | None, typer.Option(metavar="PREFIX", help="Crawl: only URLs that start with this.")
    ] = None,
    sitemap: Annotated[
        bool, typer.Option("--sitemap/--no-sitemap", help="Crawl: read the site's sitemaps.")
    ] = True,
    api_url: ApiUrl = None,
) -> None:
    """Queue URL for ingestion: a page, a PDF, or with --crawl a site.

    --crawl follows links from URL up to --max-depth, to at most --max-pages URLs. With
    --wait the command shows the job's progress until it ends, and fails (exit code 1)
    when the job does not succeed.
    """
    client = _Client(api_url)
    body: dict[str, Any] = {"url": url, "collection": collection}
    if crawl:
        body["crawl"] = {
            "max_depth": max_depth, "max_pages": max_pages, "same_host": same_host,
            "prefix": prefix, "sitemap": sitemap,
        }  # fmt: skip
    accepted = client.call("POST", "/v1/ingest", json=body)
    job_id = accepted["job_id"]
    out().print(f"job {job_id} queued for {accepted['url']}")
    if wait:
        _wait_for_job(client, job_id)


def _job_progress(job: dict[str, Any]) -> str:
    c = job["counters"]
    rate = job.get("pages_per_second")
    eta = job.get("eta_seconds")
    return (
        f"{job['status']}: discovered {c['discovered']}, fetched {c['fetched']}, "
        f"indexed {c['indexed']}, unchanged {c['unchanged']}, skipped {c['skipped']}, "
        f"failed {c['failed']}"
        + (f", {rate:.1f} pages/s" if rate else "")
        + (f", about {eta:.0f} s left" if eta is not None and job["status"] == "running" else "")
    )


def _wait_for_job(client: _Client, job_id: str) -> None:
    """Show the job's progress live (its event stream, or polling if that fails)."""
    with out().status("waiting…") as status:

        def show(job: dict[str, Any]) -> None:
            status.update(_job_progress(job))

        job = follow_job_events(client.http, job_id, show) or poll_job(
            lambda: client.call("GET", f"/v1/jobs/{job_id}"), show
        )
    c = job["counters"]
    for error in job["errors"]:
        err().print(f"  {error['url']}: {error['reason']}", highlight=False)
    if job["status"] != "succeeded":
        fail(f"job {job['status']}: {job.get('reason') or 'see errors above'}")
    out().print(
        f"job succeeded: indexed {c['indexed']}, unchanged {c['unchanged']}, "
        f"skipped {c['skipped']}, failed {c['failed']}, removed {c['removed']}"
    )


@app.command()
def search(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to search for.")],
    collection: CollectionOpt = "default",
    k: Annotated[int, typer.Option("-k", metavar="N", help="How many results.")] = 10,
    kind: Annotated[str, typer.Option(metavar="KIND", help="text, image or all.")] = "all",
    as_json: JsonFlag = False,
    api_url: ApiUrl = None,
) -> None:
    """Search a collection."""
    params: dict[str, str | int] = {"q": query, "collection": collection, "k": k, "kind": kind}
    result = _Client(api_url).call("GET", "/v1/search", params=params)
    if as_json:
        out().print_json(json.dumps(result))
        return
    if not result["hits"]:
        out().print("no results")
    for n, hit in enumerate(result["hits"], start=1):
        out().print(f"[bold]{n}. {hit['title']}[/] ({hit['score']:.4f})", highlight=False)
        out().print(f"   {hit['url']}", style="cyan", highlight=False)
        out().print(f"   {hit['text'][:240].replace(chr(10), ' ')}", highlight=False)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="The question to answer.")],
    collection: CollectionOpt = "default",
    as_json: JsonFlag = False,
    api_url: ApiUrl = None,
) -> None:
    """Ask a question; the answer cites its sources."""
    body = {"question": question, "collection": collection}
    result = _Client(api_url).call("POST", "/v1/ask", json=body)
    if as_json:
        out().print_json(json.dumps(result))
        return
    if result["degraded"]:
        err().print("(the answer model failed; this is the extractive answer)")
    out().print(result["answer"], highlight=False)
    for citation in result["citations"]:
        out().print(f"[{citation['n']}] {citation['title']} — {citation['url']}", highlight=False)


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(metavar="N", help="How many jobs.")] = 20,
    as_json: JsonFlag = False,
    api_url: ApiUrl = None,
) -> None:
    """Recent jobs, newest first."""
    result = _Client(api_url).call("GET", "/v1/jobs", params={"limit": limit})
    if as_json:
        out().print_json(json.dumps(result))
        return
    table = Table("id", "status", "url", "indexed", "unchanged", "failed", "reason")
    for job in result["jobs"]:
        c = job["counters"]
        table.add_row(
            job["id"][:12], job["status"], job["url"], str(c["indexed"]),
            str(c["unchanged"]), str(c["failed"]), job.get("reason") or "",
        )  # fmt: skip
    out().print(table)


app.add_typer(server_app)
app.add_typer(transfer_app)
app.add_typer(eval_app)
app.add_typer(keys_app, name="keys")


def main() -> None:
    try:
        app()
    except ValidationError as exc:
        problems = "; ".join(
            f"SKR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        err().print(f"[bold red]error:[/] invalid setting: {problems}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
