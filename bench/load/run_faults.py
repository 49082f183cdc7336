"""Faults under steady load (issue 6, scenario 3): the scale-out stack (one `skr serve`
with two API processes, two `skr worker`s, PostgreSQL, Redis, and an OpenAI-compatible
answer model on loopback) under a steady headless Locust load, while this script

1. kills a worker with SIGKILL while it holds a job (frozen with SIGSTOP the moment it
   leases one, killed once the job is seen still running under its lease; a supervisor
   starts a new worker after ``--hold`` seconds),
2. restarts PostgreSQL (``pg_ctlcluster … restart``: every connection is cut),
3. stops Redis (``redis-cli shutdown``) and starts it again after ``--hold`` seconds,
4. makes the answer model fail (HTTP 500) for ``--hold`` seconds, then slow (answers
   after ``--llm-delay`` seconds, past SKR's ``SKR_LLM_TIMEOUT_SECONDS``), then well,

with ``--recover`` seconds of the same load after each. Requests count in the window in
which they were sent. For each fault it reports the
error rate while the fault lasts and in the recovery window, the shed rate, the answers
degraded, and the recovery time (from the fault's end until every request succeeds
and the per-second search p95 is within 2× the steady load's, held for 5 s); then it
waits for every job to end and checks the data: every accepted ingest is one job row,
every job succeeded, every page is one document with no duplicate chunk.

    python bench/load/run_faults.py --users 100

PostgreSQL and Redis are this machine's own (127.0.0.1:5432, :6379): run it only where
nothing else uses them. They are started again (``scripts/ensure-services.sh``) whatever
happens. All traffic goes to 127.0.0.1; every child has a hard time limit."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import SHARED_SITE, free_port, static_site
from tests.fakes.fake_llm_server import FakeLLMServer

from bench.load.load_report import (
    percentile,
    read_request_log,
    recovery_seconds,
    window_figures,
)
from bench.load.processes import Child
from bench.load.run_load import (
    BIN,
    HERE,
    REDIS_URL,
    git_state,
    scratch_database,
    seed,
    skr_env,
    start_skr,
)
from bench.load.scenario import DEGRADED, SHED

WARM_SECONDS = 45  # the ramp, then the steady reference window
STEADY_FROM = 15  # seconds after Locust starts: the steady window begins
HEALTHY_HOLD = 5  # seconds a recovery must hold
TERMINAL = ("succeeded", "failed", "cancelled")
ENSURE_SERVICES = ROOT / "scripts" / "ensure-services.sh"


@dataclass
class Fault:
    name: str
    begin: float = 0.0  # epoch seconds, as in Locust's request log
    end: float = 0.0
    notes: list[str] = field(default_factory=list)


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def postgres_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]


def restart_postgres() -> str:
    version = postgres_version()
    done = run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"])
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed: {done.stderr[-1000:]}")
    return f"pg_ctlcluster {version} main restart"


def stop_redis() -> None:
    port = REDIS_URL.rsplit(":", 1)[1].split("/")[0]
    run(["redis-cli", "-h", "127.0.0.1", "-p", port, "shutdown", "nosave"], timeout=30)
    deadline = time.monotonic() + 10
    while run(["redis-cli", "-h", "127.0.0.1", "-p", port, "ping"], 5).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("Redis did not stop")
        time.sleep(0.1)


def ensure_services() -> None:
    done = run(["bash", str(ENSURE_SERVICES)], timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{ENSURE_SERVICES.name} failed: {done.stdout}{done.stderr}")


def seconds_healthy(
    log: list[tuple[float, str, str, float, bool]], start: float, end: float, limit_ms: float
) -> float | None:
    """Seconds from ``start`` until ``HEALTHY_HOLD`` seconds in a row in which no request
    failed and the admitted searches' p95 was within ``limit_ms``; None if the window up
    to ``end`` has none."""
    searches: dict[int, list[float]] = defaultdict(list)
    failed_seconds = set()
    for t, kind, name, ms, failed in log:
        if start <= t < end and kind != "JOB":
            if failed:
                failed_seconds.add(int(t))
            elif name == "/v1/search":
                searches[int(t)].append(ms)
    series = {
        second: math.inf if second in failed_seconds else percentile(searches[second], 0.95)
        for second in range(int(start), math.ceil(end))
    }
    return recovery_seconds(series, int(start), limit_ms, hold=HEALTHY_HOLD)


def ask_outcomes(
    log: list[tuple[float, str, str, float, bool]], start: float, end: float
) -> dict[str, Any]:
    asks = [r for r in log if start <= r[0] < end and r[2].endswith("/v1/ask")]
    answered = [r[3] for r in asks if not r[4] and not r[2].startswith(SHED)]
    degraded = [r for r in asks if r[2].startswith(DEGRADED)]
    return {
        "asks": len(asks),
        "degraded": len(degraded),
        "last_degraded_s": round(max(r[0] for r in degraded) - start, 1) if degraded else None,
        "p50": round(percentile(answered, 0.5), 1),
        "p95": round(percentile(answered, 0.95), 1),
        "max": round(max(answered, default=0.0), 1),
    }


def one_row(conn: psycopg.Connection[tuple[Any, ...]], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {sql}")
    return row


def data_check(database_url: str, accepted_ingests: int) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1").fetchall())
        retried = one_row(conn, "SELECT count(*) FROM jobs WHERE attempts > 1")
        documents = one_row(conn, "SELECT count(*), count(DISTINCT url) FROM documents")
        missing = one_row(
            conn,
            "SELECT count(*) FROM jobs j WHERE j.kind = 'ingest' AND NOT EXISTS "
            "(SELECT 1 FROM documents d WHERE d.url = j.url OR d.final_url = j.url)",
        )
        duplicate_chunks = one_row(
            conn,
            "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks "
            "GROUP BY 1, 2 HAVING count(*) > 1) d",
        )
        short_documents = one_row(
            conn,
            "SELECT count(*) FROM documents d WHERE d.chunk_count + d.image_count <> "
            "(SELECT count(*) FROM chunks c WHERE c.document_id = d.id)",
        )
    jobs = sum(statuses.values())
    return {
        "accepted_ingests": accepted_ingests,
        "job_rows": jobs,
        "job_statuses": statuses,
        "lost_jobs": max(0, accepted_ingests - jobs),
        "extra_jobs": max(0, jobs - accepted_ingests),
        "jobs_run_more_than_once": retried[0],
        "documents": documents[0],
        "distinct_document_urls": documents[1],
        "page_jobs_without_document": missing[0],
        "duplicate_chunks": duplicate_chunks[0],
        "documents_whose_chunk_count_differs": short_documents[0],
    }


def wait_for_jobs(database_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            open_jobs = conn.execute(
                "SELECT count(*) FROM jobs WHERE status <> ALL(%s)", [list(TERMINAL)]
            ).fetchone()
        if open_jobs and open_jobs[0] == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"jobs still open {timeout:.0f} s after the load ended")


def jobs_held(conn: psycopg.Connection[tuple[Any, ...]], pid: int) -> int:
    """Running jobs whose lease the worker process ``pid`` holds."""
    held = conn.execute(
        "SELECT count(*) FROM jobs WHERE status = 'running' AND lease_owner LIKE %s",
        [f"worker-%-{pid}-%"],
    ).fetchone()
    return int(held[0]) if held else 0


def wait_for_lease(conn: psycopg.Connection[tuple[Any, ...]], pid: int, timeout: float) -> bool:
    """Whether the worker process ``pid`` came to hold a job within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if jobs_held(conn, pid):
            return True
        time.sleep(0.02)
    return False


def jobs_across(database_url: str, instant: float) -> dict[str, Any]:
    """The jobs that had started and not finished at ``instant`` (a worker's death), and
    how long after it the last of them finished."""
    at = dt.datetime.fromtimestamp(instant, dt.UTC)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, attempts, extract(epoch FROM finished_at) FROM jobs "
            "WHERE started_at <= %s AND (finished_at IS NULL OR finished_at > %s)",
            [at, at],
        ).fetchall()
    finished = [float(r[2]) for r in rows if r[2] is not None]
    return {
        "in_flight": len(rows),
        "succeeded": sum(1 for r in rows if r[0] == "succeeded"),
        "last_finished_after_s": round(max(finished) - instant, 1) if finished else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--spawn-rate", type=float, default=20)
    parser.add_argument("--ingesters", type=int, default=5)
    parser.add_argument("--hold", type=float, default=20, help="seconds each fault lasts")
    parser.add_argument("--recover", type=float, default=30, help="seconds after each")
    parser.add_argument("--llm-timeout", type=float, default=2.0, help="SKR_LLM_TIMEOUT_SECONDS")
    parser.add_argument("--llm-delay", type=float, default=5.0, help="the slow model's delay")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--job-workers", type=int, default=2)
    parser.add_argument("--skr-command", default=str(BIN / "skr"))
    parser.add_argument("--site", type=Path, default=SHARED_SITE)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep logs and Locust CSVs")
    args = parser.parse_args()
    args.mode = "scale-out"
    if not args.site.is_dir():
        sys.exit(f"the Flask docs are missing under {args.site}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python bench/load/run_faults.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    work = Path(tempfile.mkdtemp(prefix="skr-faults-"))
    faults: list[Fault] = []
    children: list[Child] = []
    locust: Child | None = None
    ensure_services()
    try:
        with (
            scratch_database() as (database_url, _),
            static_site(args.site) as (site_url, _),
            FakeLLMServer() as llm,
        ):
            os.environ.update(
                SKR_LLM_BASE_URL=llm.base_url, SKR_LLM_TIMEOUT_SECONDS=str(args.llm_timeout),
                SKR_OCR_ENABLED="false",
            )  # fmt: skip
            try:
                children = start_skr(args, work, database_url)
                seeded = seed(args.url, site_url)
                print(f"seeded: {seeded['summary']}", file=sys.stderr, flush=True)
                plan = WARM_SECONDS + 6 * (args.hold + args.recover) + 120
                prefix = work / "faults"
                argv = [
                    str(BIN / "locust"), "-f", str(HERE / "locustfile.py"), "--headless",
                    "--host", args.url, "--csv", str(prefix), "--only-summary",
                    "--stop-timeout", "10", "--exit-code-on-error", "0",
                    "--site-url", site_url, "--request-log", f"{prefix}_requests.csv",
                    "--loglevel", "WARNING", "--users", str(args.users),
                    "--spawn-rate", str(args.spawn_rate), "--run-time", f"{plan:.0f}s",
                    "--ingesters", str(args.ingesters), "ReaderUser", "AskerUser", "IngesterUser",
                ]  # fmt: skip
                locust = Child("locust", argv, dict(os.environ), work / "locust.log")
                load_start = time.time()
                time.sleep(WARM_SECONDS)

                def fault(
                    name: str,
                    begin: Callable[[], Any],
                    end: Callable[[], Any] = lambda: None,
                    hold: float | None = None,
                ) -> Fault:
                    print(f"{name}…", file=sys.stderr, flush=True)
                    began = time.time()
                    note = begin()
                    if hold is not None:  # the fault is begin() itself (a restart)
                        f = Fault(name, begin=began, notes=[note] if note else [])
                    else:  # the fault begins when begin() returns (a kill may wait)
                        f = Fault(name, begin=time.time(), notes=[note] if note else [])
                    time.sleep(args.hold if hold is None else hold)
                    if note := end():
                        f.notes.append(note)
                    f.end = time.time()
                    faults.append(f)
                    time.sleep(args.recover)
                    return f

                def kill_worker() -> str:
                    """SIGKILL the worker while it holds a job: frozen (SIGSTOP) once it
                    holds one, killed if it still does, else let go on to try again."""
                    victim = children[1]
                    held = 0
                    with psycopg.connect(database_url, autocommit=True) as conn:
                        for _ in range(20):
                            if not wait_for_lease(conn, victim.pid, 60):
                                break
                            os.killpg(victim.pid, signal.SIGSTOP)
                            # a statement it sent before the stop (its job's end) still
                            # lands in PostgreSQL: look once it has
                            time.sleep(0.3)
                            held = jobs_held(conn, victim.pid)
                            if held:
                                break
                            os.killpg(victim.pid, signal.SIGCONT)
                    os.killpg(victim.pid, signal.SIGKILL)
                    victim.process.wait(10)
                    return f"SIGKILL to {victim.name} (pid {victim.pid}) holding {held} job(s)"

                def new_worker() -> str:
                    env = skr_env(work, free_port(), SKR_DATABASE_URL=database_url,
                                  SKR_REDIS_URL=REDIS_URL)  # fmt: skip
                    name = f"skr worker {len(children) - 1}"
                    children.append(Child(name, [*shlex.split(args.skr_command), "worker"],
                                          env, work / "w-new.log"))  # fmt: skip
                    return f"{name} started by the supervisor"

                def postgres() -> str:
                    took = time.monotonic()
                    what = restart_postgres()
                    return f"{what}: {time.monotonic() - took:.1f} s"

                def llm_mode(mode: str, delay: float = 0.0) -> Callable[[], None]:
                    def switch() -> None:
                        llm.mode, llm.delay_seconds = mode, delay  # type: ignore[assignment]

                    return switch

                fault("worker killed (SIGKILL)", kill_worker, new_worker)
                fault("PostgreSQL restarted", postgres, hold=0)
                fault("Redis stopped, then started", stop_redis, ensure_services)
                fault("answer model failing (HTTP 500)", llm_mode("fail"), llm_mode("ok"))
                fault(f"answer model slow ({args.llm_delay:g} s)",
                      llm_mode("slow", args.llm_delay), llm_mode("ok"))  # fmt: skip
                load_end = time.time()
                locust.process.send_signal(signal.SIGTERM)
                locust.wait(60)
                wait_for_jobs(database_url, 300)
                # by the instant each request was sent: a request sent during a fault
                # belongs to it, however late it was answered
                log = [
                    (t - ms / 1000, kind, name, ms, failed)
                    for t, kind, name, ms, failed in read_request_log(
                        Path(f"{prefix}_requests.csv")
                    )
                ]
                accepted = sum(1 for r in log if r[2] == "/v1/ingest" and not r[4])
                checked = data_check(database_url, accepted + 1)  # + the seeding crawl
                worker_jobs = jobs_across(database_url, faults[0].begin)
                for child in children:
                    if child is not children[1] and child.process.poll() is not None:
                        raise RuntimeError(f"{child.name} died during the run: {child.tail()}")
            finally:
                for child in [*([locust] if locust else []), *children]:
                    child.stop()
    finally:
        ensure_services()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs and CSVs kept in {work}", file=sys.stderr)
    steady = window_figures(log, load_start + STEADY_FROM, faults[0].begin)
    limit = 2 * steady["endpoints"].get("/v1/search", {}).get("p95", 0.0)
    rows = []
    for f, following in zip(faults, [*faults[1:], None], strict=True):
        after_end = min(f.end + args.recover, following.begin if following else load_end)
        rows.append({
            **asdict(f),
            "seconds": round(f.end - f.begin, 1),
            "during": window_figures(log, f.begin, f.end),
            "after": window_figures(log, f.end, after_end),
            "asks_during": ask_outcomes(log, f.begin, f.end),
            "asks_after": ask_outcomes(log, f.end, after_end),
            "recovery_s": seconds_healthy(log, f.end, after_end, limit),
        })  # fmt: skip
    jobs = [r for r in log if r[1] == "JOB"]
    commit, dirty = git_state()
    result = {
        "command": command, "commit": commit, "dirty": dirty, "started_at": started_at,
        "users": args.users, "ingesters": args.ingesters, "hold_s": args.hold,
        "recover_s": args.recover, "llm_timeout_s": args.llm_timeout,
        "llm_delay_s": args.llm_delay, "seed": seeded,
        "whole_run": window_figures(log, load_start, load_end),
        "steady": steady, "search_p95_limit_ms": limit, "faults": rows,
        "worker_kill_jobs": worker_jobs, "data": checked,
        "jobs": {"finished": len(jobs), "failed": sum(1 for r in jobs if r[4]),
                 "p50_ms": percentile([r[3] for r in jobs], 0.5),
                 "max_ms": max((r[3] for r in jobs), default=0.0)},
    }  # fmt: skip
    markdown = render(result)
    args.results.mkdir(parents=True, exist_ok=True)
    tag = f"faults-scale-out-{args.users}"
    (args.results / f"{tag}.md").write_text(markdown)
    (args.results / f"{tag}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(markdown)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def render(r: dict[str, Any]) -> str:
    steady, data = r["steady"], r["data"]
    search = steady["endpoints"].get("/v1/search", {})
    lines = [
        f"# Faults under steady load: scale-out, {r['users']} users",
        "",
        f"- command: `{r['command']}`",
        f"- when: {r['started_at']}; commit {r['commit']}"
        + (f" (work tree also had: {', '.join(r['dirty'])})" if r["dirty"] else ""),
        f"- knowledge base: {r['seed']['summary']}",
        f"- load: {r['users']} users (think 1–5 s; {r['ingesters']} ingesters); each fault "
        f"lasts {r['hold_s']:g} s (PostgreSQL: the restart itself), then {r['recover_s']:g} s "
        f"of the same load; answer model timeout {r['llm_timeout_s']:g} s, slow = "
        f"{r['llm_delay_s']:g} s",
        f"- steady load before the first fault: {steady['rps']} req/s, error rate "
        f"{_pct(steady['error_rate'])}, search p50/p95/p99 {search.get('p50')}/"
        f"{search.get('p95')}/{search.get('p99')} ms; recovered = every request succeeds and "
        f"the per-second search p95 ≤ {r['search_p95_limit_ms']:.0f} ms, for "
        f"{HEALTHY_HOLD} s",
        "",
        "| fault | lasted | requests | errors | error rate | shed | asks degraded | "
        "recovery | after: errors | after: shed | after: search p95 | after: asks degraded "
        "(last at) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in r["faults"]:
        d, a = f["during"], f["after"]
        recovery = "never" if f["recovery_s"] is None else f"{f['recovery_s']:.0f} s"
        last = f["asks_after"]["last_degraded_s"]
        lines.append(
            f"| {f['name']} | {f['seconds']} s | {d['requests']:,} | {d['failures']} | "
            f"{_pct(d['error_rate'])} | {_pct(d['shed_rate'])} | "
            f"{f['asks_during']['degraded']} of {f['asks_during']['asks']} | {recovery} | "
            f"{a['failures']} | {_pct(a['shed_rate'])} | "
            f"{a['endpoints'].get('/v1/search', {}).get('p95', 0)} ms | "
            f"{f['asks_after']['degraded']} of {f['asks_after']['asks']}"
            + (f" ({last} s)" if last is not None else "")
            + " |"
        )
    w, j = r["worker_kill_jobs"], r["jobs"]
    lines += [
        "",
        "Notes: " + "; ".join(n for f in r["faults"] for n in f["notes"]) + ".",
        "",
        f"Worker killed: {w['in_flight']} job(s) were running at the kill; "
        f"{w['succeeded']} of them succeeded, the last "
        f"{w['last_finished_after_s']} s after the kill.",
        "",
        f"Ingest jobs followed by the ingesters: {j['finished']} finished, {j['failed']} "
        f"failed or timed out; submit → done p50 {j['p50_ms']:.0f} ms, max "
        f"{j['max_ms']:.0f} ms.",
        "",
        "Data after the run (all jobs ended):",
        "",
        f"- accepted ingests (+ the seeding crawl): {data['accepted_ingests']}; job rows: "
        f"{data['job_rows']} ({data['job_statuses']}); lost: {data['lost_jobs']}, extra: "
        f"{data['extra_jobs']}; run more than once: {data['jobs_run_more_than_once']}",
        f"- documents: {data['documents']} ({data['distinct_document_urls']} distinct URLs); "
        f"page jobs without their document: {data['page_jobs_without_document']}; duplicate "
        f"chunks: {data['duplicate_chunks']}; documents whose chunk count differs: "
        f"{data['documents_whose_chunk_count_differs']}",
        "",
        f"Whole run: {r['whole_run']['requests']:,} requests, error rate "
        f"{_pct(r['whole_run']['error_rate'])}, shed {_pct(r['whole_run']['shed_rate'])}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
