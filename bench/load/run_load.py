"""Load harness (issue 6): serve the Flask docs on loopback, start SKR (embedded or
scale-out), seed it with a crawl, then run headless Locust phases (a single-user baseline,
then the load, optionally a 10× spike), measuring CPU; write a markdown and JSON report.

    python bench/load/run_load.py --mode embedded --users 1000 --spawn-rate 50 --duration 3m

Every child runs in its own process group with a hard time limit and is ended on exit.
All traffic goes to 127.0.0.1."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE, free_port, static_site

from bench.load.load_report import (
    canary_figures,
    phase_figures,
    read_canary,
    render_markdown,
    spike_analysis,
    steady_figures,
)
from bench.load.processes import Child, CpuSampler, wait_ready
from bench.load.profile_summary import markdown as profile_markdown
from bench.load.profile_summary import summarise

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("SKR_LOAD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SKR_LOAD_REDIS_URL", "redis://127.0.0.1:6379/0")
BASELINE_SECONDS = 60
STOP_TIMEOUT = 10
SPIKE_SECONDS = 60


def seconds(text: str) -> int:
    """``90``, ``20s``, ``3m`` or ``1h`` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@contextmanager
def scratch_database() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database of this run's own, dropped afterwards."""
    name = f"skr_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def skr_env(work: Path, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SKR_DATA_DIR": str(work / "data"),
        "SKR_PORT": str(port),
        "SKR_API_URL": f"http://127.0.0.1:{port}",
        "SKR_ALLOW_PRIVATE_NETWORKS": "true",  # the docs site is on loopback
        "SKR_LOG_LEVEL": "warning",  # no access log line per request
        **extra,
    }


def start_skr(args: argparse.Namespace, work: Path, database_url: str | None) -> list[Child]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    skr = shlex.split(args.skr_command)
    if database_url is None:
        serve = Child("skr serve", [*skr, "serve"], skr_env(work, port), work / "serve.log")
        children = [serve]
    else:
        shared = {"SKR_DATABASE_URL": database_url, "SKR_REDIS_URL": REDIS_URL}
        migrate = subprocess.run(
            [*skr, "migrate"], env=skr_env(work, port, **shared), capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        if migrate.returncode != 0:
            raise RuntimeError(f"skr migrate failed: {migrate.stderr[-2000:]}")
        api_env = skr_env(
            work, port, **shared, SKR_RUN_WORKERS="false", SKR_API_WORKERS=str(args.api_workers)
        )
        children = [Child("skr serve", [*skr, "serve"], api_env, work / "serve.log")]
        for i in range(args.job_workers):
            env = skr_env(work, free_port(), **shared)
            children.append(Child(f"skr worker {i}", [*skr, "worker"], env, work / f"w{i}.log"))
    wait_ready(children[0], url)
    args.url = url
    return children


def seed(url: str, site: str) -> dict[str, Any]:
    """Crawl the docs (depth 2, at most 80 pages) and wait for the job."""
    started = time.monotonic()
    body = {"url": f"{site}/index.html", "crawl": {"max_depth": 2, "max_pages": 80}}
    job_id = httpx.post(f"{url}/v1/ingest", json=body, timeout=30).raise_for_status().json()
    job_id = job_id["job_id"]
    deadline = started + 900
    while True:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the seeding crawl did not finish in 900 s: {job['counters']}")
        time.sleep(1)
    took = time.monotonic() - started
    c = job["counters"]
    return {
        "status": job["status"],
        "seconds": round(took, 1),
        "counters": c,
        "summary": f"the Flask docs crawled from index.html (depth 2, ≤ 80 pages): "
        f"{c.get('indexed', 0)} pages indexed, {c.get('chunks_embedded', 0)} chunks, "
        f"{job['status']} in {took:.0f} s",
    }


def run_phase(
    args: argparse.Namespace,
    skr: list[Child],
    work: Path,
    name: str,
    pg_db: str | None,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One headless Locust process; its figures, with CPU sampled beside it."""
    prefix = work / name
    files = str(HERE / "locustfile.py")
    common = [
        "--headless", "--host", args.url, "--csv", str(prefix), "--csv-full-history",
        "--only-summary", "--stop-timeout", str(STOP_TIMEOUT), "--exit-code-on-error", "0",
        "--site-url", args.site_url, "--request-log", f"{prefix}_requests.csv",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    if name == "baseline":
        users, run_time = 1, BASELINE_SECONDS
        argv = [*common, "--users", "1", "--spawn-rate", "1", "--run-time", f"{run_time}s"]
        argv += ["--ingesters", "0", "BaselineUser"]
        limit = run_time + 120
    elif name == "spike":
        users, run_time = args.users, int(args.spike_before + SPIKE_SECONDS + args.spike_after)
        files += "," + str(HERE / "spike_shape.py")
        argv = [*common, "--spike-base-users", str(users), "--spike-seconds", str(SPIKE_SECONDS)]
        argv += ["--spike-before", str(args.spike_before), "--spike-after", str(args.spike_after)]
        argv += ["--spike-spawn-rate", str(args.spawn_rate * 10)]
        argv += ["--ingesters", str(args.ingesters)]
        argv += ["ReaderUser", "AskerUser", "IngesterUser"]
        limit = run_time + 300
    else:
        users, run_time = args.users, args.duration
        argv = [*common, "--users", str(users), "--spawn-rate", str(args.spawn_rate)]
        argv += ["--run-time", f"{run_time}s", "--ingesters", str(args.ingesters)]
        argv += ["ReaderUser", "AskerUser", "IngesterUser"]
        limit = run_time + users / args.spawn_rate + 300
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    canary_log = work / f"{name}_canary.csv"
    canary = Child(f"canary {name}", [sys.executable, str(HERE / "canary.py"), "--url", args.url,
                   "--out", str(canary_log), "--seconds", str(limit)], dict(os.environ),
                   work / f"{name}.canary.log")  # fmt: skip
    locust = Child(f"locust {name}", [str(BIN / "locust"), "-f", files, *argv], dict(os.environ),
                   work / f"{name}.locust.log")  # fmt: skip
    roots = {"skr": lambda: [c.pid for c in skr], "locust": lambda: [locust.pid]}
    profile = None
    try:
        with CpuSampler(roots, pg_db) as sampler:
            if name != "baseline" and args.profile:
                profile = start_profile(args, skr[0], work / f"{name}.profile.txt")
            locust.wait(limit)
    finally:
        locust.stop()
        canary.stop()
        if profile is not None:
            profile.stop()
    figures = phase_figures(prefix)
    canary_rows = read_canary(canary_log)
    figures["canary"] = canary_figures(canary_rows)
    profiled = work / f"{name}.profile.txt"
    if profiled.exists() and profiled.stat().st_size:
        figures["profile"] = summarise(profiled)
    ramp = min(int(users / args.spawn_rate), 60) if name == "load" else 0
    figures.update(
        users=users,
        duration_s=round(time.monotonic() - started, 1),
        cpu=sampler.summary(skip_first=ramp),
        cpu_per_second=sampler.samples,
        loadavg_start=load_start,
        loadavg_end=os.getloadavg()[0],
    )
    print(f"{name}: {figures['requests']:,} requests, {figures['rps']} req/s, "
          f"error rate {figures['error_rate']:.2%}, shed {figures['shed_total']:,}, "
          f"SKR CPU {figures['cpu'].get('skr', {}).get('mean')}%", file=sys.stderr, flush=True)  # fmt: skip
    if name == "load":
        figures["steady"] = steady_figures(prefix, users, canary_rows)
    if name == "spike":
        assert baseline is not None
        search_p95 = baseline["endpoints"].get("/v1/search", {}).get("p95", 0.0)
        log = Path(f"{prefix}_requests.csv")
        figures["spike"] = spike_analysis(
            prefix, log, users, search_p95, args.spike_before, SPIKE_SECONDS, canary_rows
        )
    return figures


def start_profile(args: argparse.Namespace, serve: Child, out: Path) -> Child | None:
    """py-spy, on SKR's API process(es) for ``--profile`` seconds from 30 s in."""
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not installed: no profile", file=sys.stderr)
        return None
    argv = ["sh", "-c", f"sleep 30 && exec {shlex.quote(py_spy)} record --subprocesses "
            f"--format raw --rate 50 --duration {args.profile} --pid {serve.pid} "
            f"--output {shlex.quote(str(out))} --nonblocking"
            + (" --gil" if args.profile_gil else "")]  # fmt: skip
    return Child("py-spy", argv, dict(os.environ), out.with_suffix(".log"))


def git_state() -> tuple[str, list[str]]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, check=False).stdout  # fmt: skip

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return git("rev-parse", "--short", "HEAD").strip(), dirty


def describe(args: argparse.Namespace) -> tuple[str, str]:
    if args.mode == "embedded":
        topology = "one `skr serve` (embedded: SQLite + HNSW; job workers in process)"
    else:
        topology = (
            f"one `skr serve` with SKR_API_WORKERS={args.api_workers} (no job workers) and "
            f"{args.job_workers} `skr worker`, over PostgreSQL (a database of this run's own) "
            "and Redis, all on this machine"
        )
    if args.spike:
        load = (f"{args.users} users for {args.spike_before:.0f} s, {args.users * 10} users "
                f"(spawn rate {args.spawn_rate * 10}/s) for 60 s, {args.users} users for "
                f"{args.spike_after:.0f} s")  # fmt: skip
    else:
        load = f"{args.users} users, spawn rate {args.spawn_rate}/s, {args.duration} s"
    pages = (
        "pages new to SKR (a second copy of the site), then unchanged"
        if args.ingest_new_pages
        else "pages the seeding crawl indexed (unchanged: 304)"
    )
    return topology, load + f"; think time 1–5 s; {args.ingesters} of them ingesters ({pages})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["embedded", "scale-out"], default="embedded")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--spawn-rate", type=float, default=50)
    parser.add_argument("--duration", type=seconds, default=180, help="e.g. 3m, 20s")
    parser.add_argument("--spike", action="store_true", help="base users, 10× for 60 s, back")
    parser.add_argument("--spike-before", type=float, default=60)
    parser.add_argument("--spike-after", type=float, default=90)
    parser.add_argument("--ingesters", type=int, default=None, help="default users/200, 1–5")
    parser.add_argument("--api-workers", type=int, default=2, help="scale-out API processes")
    parser.add_argument("--job-workers", type=int, default=1, help="scale-out `skr worker`s")
    parser.add_argument("--profile", type=int, default=0, help="py-spy seconds (0: none)")
    parser.add_argument(
        "--profile-gil", action="store_true", help="sample only the thread holding the GIL"
    )
    parser.add_argument("--skr-command", default=str(BIN / "skr"), help="how to run `skr`")
    parser.add_argument("--site", type=Path, default=SHARED_SITE)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep logs and Locust CSVs")
    parser.add_argument(
        "--ingest-new-pages",
        action="store_true",
        help="ingesters submit pages from a second copy of the site on another port: new "
        "to SKR the first time (extracted, embedded, written), unchanged (304) after",
    )
    args = parser.parse_args()
    if args.ingesters is None:
        args.ingesters = max(1, min(5, args.users // 200))
    if not args.site.is_dir():
        sys.exit(f"the Flask docs are missing under {args.site}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks run
    command = "python bench/load/run_load.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="skr-load-"))
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    children: list[Child] = []
    try:
        with (
            scratch_database() if args.mode == "scale-out" else _none() as db,
            static_site(args.site) as (site_url, _),
            static_site(args.site) if args.ingest_new_pages else _none() as second_copy,
        ):
            args.site_url = second_copy[0] if second_copy else site_url
            loadavg_before = os.getloadavg()[0]
            try:  # SKR stops before its database is dropped and its site closed
                children = start_skr(args, work, db[0] if db else None)
                seeded = seed(args.url, site_url)
                print(f"seeded: {seeded['summary']}", file=sys.stderr, flush=True)
                phases = {"baseline": run_phase(args, children, work, "baseline", db and db[1])}
                load_phase = "spike" if args.spike else "load"
                phases[load_phase] = run_phase(
                    args, children, work, load_phase, db and db[1], phases["baseline"]
                )
                for child in children:
                    if child.process.poll() is not None:
                        raise RuntimeError(f"{child.name} died during the run: {child.tail()}")
            finally:
                for child in children:
                    child.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs and CSVs kept in {work}", file=sys.stderr)
    commit, dirty = git_state()
    topology, load_description = describe(args)
    result = {
        "mode": args.mode, "users": args.users, "spawn_rate": args.spawn_rate,
        "duration_s": args.duration, "spike": args.spike, "ingesters": args.ingesters,
        "command": command, "commit": commit, "dirty": dirty,
        "started_at": started_at,
        "machine": {"cores": os.cpu_count(), "loadavg_before": loadavg_before},
        "topology": topology, "load_description": load_description, "seed": seeded,
        "phases": phases, "load_phase": load_phase,
        "spike_analysis": phases[load_phase].pop("spike", None),
    }  # fmt: skip
    markdown = render_markdown(result)
    if "profile" in phases[load_phase]:
        target = "the `skr serve` process and its children" + (
            ", only the thread holding the GIL" if args.profile_gil else ""
        )
        profile = profile_markdown(phases[load_phase]["profile"], args.profile, target)
        markdown += "\n".join(profile) + "\n"
    tag = f"load-{args.mode}-{args.users}" + ("-spike" if args.spike else "")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{tag}.md").write_text(markdown)
    (args.results / f"{tag}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(markdown)


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
