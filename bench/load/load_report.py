"""Figures of one load phase from Locust's CSV files and the per-request log, the spike's
recovery time, and the markdown report laid out as the review's metrics table."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.load.scenario import SHED

ENDPOINTS = ["/v1/search", "/v1/ask", "/v1/documents", "/v1/jobs", "/v1/ingest", "/v1/jobs/{id}"]


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def phase_figures(prefix: Path) -> dict[str, Any]:
    """Per endpoint (admitted requests) and totals from ``PREFIX_stats.csv``; shed
    requests under their own names; ingest jobs (type JOB) apart from HTTP."""
    endpoints: dict[str, dict[str, float]] = {}
    shed: dict[str, int] = {}
    shed_rps = 0.0
    jobs: dict[str, float] = {}
    with Path(f"{prefix}_stats.csv").open() as f:
        for row in csv.DictReader(f):
            name, kind = row["Name"], row["Type"]
            figures = {
                "requests": int(_num(row["Request Count"])),
                "failures": int(_num(row["Failure Count"])),
                "rps": round(_num(row["Requests/s"]), 2),
                "p50": _num(row["50%"]),
                "p95": _num(row["95%"]),
                "p99": _num(row["99%"]),
                "max": round(_num(row["Max Response Time"])),
            }
            if name == "Aggregated":
                continue
            if kind == "JOB":
                jobs = figures
            elif name.startswith(SHED):
                shed[name.removeprefix(SHED)] = int(figures["requests"])
                shed_rps += figures["rps"]
            else:
                endpoints[name] = figures
    http = list(endpoints.values())
    requests = sum(e["requests"] for e in http) + sum(shed.values())
    failures = sum(e["failures"] for e in http)
    return {
        "endpoints": endpoints,
        "shed": shed,
        "jobs": jobs,
        "requests": requests,
        "rps": round(sum(e["rps"] for e in http) + shed_rps, 1),
        "failures": failures,
        "error_rate": failures / requests if requests else 0.0,
        "shed_total": sum(shed.values()),
        "shed_rate": sum(shed.values()) / requests if requests else 0.0,
        "failure_reasons": _failures(prefix),
    }


def _failures(prefix: Path) -> list[dict[str, Any]]:
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open() as f:
        return [
            {"name": r["Name"], "error": r["Error"][:160], "count": int(_num(r["Occurrences"]))}
            for r in csv.DictReader(f)
        ]


def read_request_log(path: Path) -> list[tuple[float, str, str, float, bool]]:
    with path.open() as f:
        return [
            (float(r["time"]), r["type"], r["name"], float(r["ms"]), r["failed"] == "1")
            for r in csv.DictReader(f)
        ]


def user_counts(prefix: Path) -> list[tuple[int, int]]:
    """(epoch second, users) from the stats history's Aggregated rows."""
    with Path(f"{prefix}_stats_history.csv").open() as f:
        return [
            (int(r["Timestamp"]), int(_num(r["User Count"])))
            for r in csv.DictReader(f)
            if r["Name"] == "Aggregated"
        ]


def window_figures(
    log: list[tuple[float, str, str, float, bool]], start: float, end: float
) -> dict[str, Any]:
    """Admitted p50/p95/p99 per endpoint, errors and shedding between two instants."""
    inside = [r for r in log if start <= r[0] < end and r[1] != "JOB"]
    by_name: dict[str, list[float]] = defaultdict(list)
    for _, _, name, ms, failed in inside:
        if not failed and not name.startswith(SHED):
            by_name[name].append(ms)
    failures = sum(1 for r in inside if r[4])
    shed = sum(1 for r in inside if r[2].startswith(SHED))
    seconds = max(1e-9, end - start)
    return {
        "seconds": round(end - start, 1),
        "requests": len(inside),
        "rps": round(len(inside) / seconds, 1),
        "failures": failures,
        "error_rate": failures / len(inside) if inside else 0.0,
        "shed": shed,
        "shed_rate": shed / len(inside) if inside else 0.0,
        "endpoints": {
            name: {
                "requests": len(v),
                "p50": round(percentile(v, 0.5), 1),
                "p95": round(percentile(v, 0.95), 1),
                "p99": round(percentile(v, 0.99), 1),
            }
            for name, v in sorted(by_name.items())
        },
    }


def steady_figures(
    prefix: Path, users: int, canary_rows: list[tuple[float, str, int, float]]
) -> dict[str, Any] | None:
    """The load phase from the second all ``users`` were running to its end: the ramp,
    when Locust starts its users and their connections on the machine SKR runs on, left
    out. None when the users never all ran."""
    spawned = [t for t, n in user_counts(prefix) if n >= users]
    log = read_request_log(Path(f"{prefix}_requests.csv"))
    if not spawned or not log:
        return None
    start, end = float(spawned[0]), log[-1][0] + 1e-3
    figures = window_figures(log, start, end)
    figures["after_s"] = round(start - log[0][0], 1)
    figures["canary"] = canary_figures(canary_rows, start)
    return figures


def read_canary(path: Path) -> list[tuple[float, str, int, float]]:
    """(sent, kind, status, ms) of each canary search (bench/load/canary.py)."""
    if not path.exists():
        return []
    with path.open() as f:
        return [
            (float(r["time"]), r["kind"], int(r["status"]), float(r["ms"]))
            for r in csv.DictReader(f)
        ]


def canary_figures(
    rows: list[tuple[float, str, int, float]], start: float = 0.0, end: float = math.inf
) -> dict[str, Any]:
    """The canary's searches sent between two instants: answered p50/p95/p99 (all, and of
    queries asked once, which SKR must embed and rank), shed and failed counts."""
    inside = [r for r in rows if start <= r[0] < end]
    answered = [r[3] for r in inside if r[2] == 200]
    once = [r[3] for r in inside if r[2] == 200 and r[1] == "once"]
    return {
        "requests": len(inside),
        "shed": sum(1 for r in inside if r[2] == 503),
        "failures": sum(1 for r in inside if r[2] not in (200, 503)),
        "p50": round(percentile(answered, 0.5), 1),
        "p95": round(percentile(answered, 0.95), 1),
        "p99": round(percentile(answered, 0.99), 1),
        "max": round(max(answered, default=0.0), 1),
        "once_p99": round(percentile(once, 0.99), 1),
    }


def per_second_p95(log: list[tuple[float, str, str, float, bool]], name: str) -> dict[int, float]:
    buckets: dict[int, list[float]] = defaultdict(list)
    for t, _, n, ms, failed in log:
        if n == name and not failed:
            buckets[int(t)].append(ms)
    return {s: percentile(v, 0.95) for s, v in buckets.items()}


def history_p95(prefix: Path, name: str) -> dict[int, float]:
    """Locust's own per-second p95 (over its 2 s window) of one endpoint."""
    with Path(f"{prefix}_stats_history.csv").open() as f:
        return {
            int(r["Timestamp"]): _num(r["95%"])
            for r in csv.DictReader(f)
            if r["Name"] == name and _num(r["95%"]) > 0
        }


def recovery_seconds(
    series: dict[int, float], spike_end: int, threshold: float, hold: int = 10
) -> float | None:
    """Seconds from the spike's end until the per-second p95 is within ``threshold`` and
    stays there for ``hold`` seconds; None if it never does."""
    seconds = sorted(s for s in series if s >= spike_end)
    for i, s in enumerate(seconds):
        window = [x for x in seconds[i:] if x < s + hold]
        if window[-1] - s >= hold - 2 and all(series[x] <= threshold for x in window):
            return float(s - spike_end)
    return None


def spike_analysis(
    prefix: Path,
    log_path: Path,
    base_users: int,
    baseline_p95: float,
    before: float,
    spike_seconds: float,
    canary: list[tuple[float, str, int, float]] | None = None,
) -> dict[str, Any]:
    """Windows before, during and after the spike, and the recovery time against two
    references: the pre-spike load's p95 and the single-user baseline's p95 (each × 2).
    The spike's start and end are the shape's schedule from the first request (Locust's
    history reports the user count a second or so late)."""
    counts = user_counts(prefix)
    log = read_request_log(log_path)
    first = min(r[0] for r in log)
    start, end = first + before, first + before + spike_seconds
    peak = max(u for _, u in counts)
    last = max(r[0] for r in log)
    pre = window_figures(log, first + 15, start)  # after the ramp to the base load
    spike = window_figures(log, start, end)
    post = window_figures(log, end, last + 1)
    end_second = math.ceil(end)  # the first whole second after it
    from_log = per_second_p95(log, "/v1/search")
    from_history = history_p95(prefix, "/v1/search")
    recovery = {}
    for label, reference in [
        ("pre_spike", pre["endpoints"].get("/v1/search", {}).get("p95", 0.0)),
        ("single_user", baseline_p95),
    ]:
        recovery[label] = {
            "threshold_ms": 2 * reference,
            "request_log_s": recovery_seconds(from_log, end_second, 2 * reference),
            "stats_history_s": recovery_seconds(from_history, end_second, 2 * reference),
        }
    return {
        "base_users": base_users,
        "peak_users": peak,
        "spike_seconds": round(end - start),
        "pre": pre,
        "spike": spike,
        "post": post,
        "recovery": recovery,
        "per_second_search_p95": {str(s - end_second): v for s, v in sorted(from_log.items())},
        "canary": {
            label: canary_figures(canary or [], since, until)
            for label, since, until in [
                ("pre", first + 15, start),
                ("spike", start, end),
                ("post", end, last + 1),
            ]
        },
    }


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}".rstrip("0").rstrip(".")


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _ratio(load: float, base: float) -> str:
    return f"{load / base:.1f}×" if base else "–"


def render_markdown(result: dict[str, Any]) -> str:
    phases = result["phases"]
    base, load = phases["baseline"], phases[result["load_phase"]]
    lines = [
        f"# Load: {result['mode']}, {result['users']} users"
        + (" with a 10× spike" if result["spike"] else ""),
        "",
        f"- command: `{result['command']}`",
        f"- when: {result['started_at']}; commit {result['commit']}"
        + (f" (work tree also had: {', '.join(result['dirty'])})" if result["dirty"] else ""),
        f"- machine: {result['machine']['cores']} cores, shared; load average (1 min) "
        f"{result['machine']['loadavg_before']:.2f} before the run, "
        f"{load['loadavg_start']:.2f} → {load['loadavg_end']:.2f} over the load phase",
        f"- SKR: {result['topology']}",
        f"- knowledge base: {result['seed']['summary']}",
        f"- load phase: {result['load_description']}",
        f"- baseline: 1 user, the same request mix with 0.1–0.3 s think time, "
        f"{base['duration_s']:.0f} s",
        "",
        "## Per endpoint (admitted requests; milliseconds)",
        "",
        "| endpoint | baseline n | p50 | p95 | p99 | load n | req/s | p50 | p95 | p99 | max"
        " | failures | shed (503) | p99 load / baseline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ENDPOINTS:
        b = base["endpoints"].get(name)
        e = load["endpoints"].get(name)
        if e is None and b is None:
            continue
        b = b or {"requests": 0, "p50": 0, "p95": 0, "p99": 0}
        e = e or {"requests": 0, "rps": 0, "p50": 0, "p95": 0, "p99": 0, "max": 0, "failures": 0}
        shed = load["shed"].get(name, 0)
        lines.append(
            f"| `{name}` | {b['requests']} | {_ms(b['p50'])} | {_ms(b['p95'])} | {_ms(b['p99'])}"
            f" | {e['requests']:,} | {e['rps']:.1f} | {_ms(e['p50'])} | {_ms(e['p95'])}"
            f" | {_ms(e['p99'])} | {_ms(e['max'])} | {e['failures']} | {shed:,}"
            f" | {_ratio(e['p99'], b['p99']) if b['requests'] else '–'} |"
        )
    lines += ["", "## Totals", "", "| | baseline | load |", "| --- | --- | --- |"]
    for label, key, fmt in [
        ("users", "users", str),
        ("HTTP requests", "requests", lambda v: f"{v:,}"),
        ("requests/s", "rps", lambda v: f"{v:.1f}"),
        ("error rate (non-503 failures / all)", "error_rate", _pct),
        ("shed (503 + Retry-After)", "shed_total", lambda v: f"{v:,}"),
        ("shed rate", "shed_rate", _pct),
    ]:
        lines.append(f"| {label} | {fmt(base[key])} | {fmt(load[key])} |")
    for group in ["skr", "postgresql", "locust", "machine"]:
        if group in load["cpu"]:
            b_cpu, l_cpu = base["cpu"].get(group, {}), load["cpu"][group]
            lines.append(
                f"| CPU {_CPU_LABELS[group]}, % of the machine: mean (p90) "
                f"| {b_cpu.get('mean', 0)} ({b_cpu.get('p90', 0)}) "
                f"| {l_cpu['mean']} ({l_cpu['p90']}) |"
            )
    jobs = load["jobs"]
    if jobs:
        lines += [
            "",
            f"Ingest jobs (single pages, submitted by {result['ingesters']} ingesters, each "
            f"waiting for its job): {jobs['requests']} finished, {jobs['failures']} failed or "
            f"timed out; submit → done p50 {_ms(jobs['p50'])} ms, p95 {_ms(jobs['p95'])} ms.",
        ]
    if load["failure_reasons"]:
        lines += ["", "Failures by reason:", ""]
        lines += [
            f"- `{f['name']}`: {f['count']} × {f['error']}" for f in load["failure_reasons"][:8]
        ]
    lines += canary_lines(base, load, result.get("spike_analysis"))
    if load.get("steady"):
        lines += steady_lines(base, load["steady"], result["users"])
    if result.get("spike_analysis"):
        lines += spike_lines(result["spike_analysis"])
    lines += review_table(result)
    return "\n".join(lines) + "\n"


_CPU_LABELS = {
    "skr": "of SKR's processes",
    "postgresql": "of this run's PostgreSQL backends",
    "locust": "of Locust",
    "machine": "of the whole machine",
}


def canary_lines(
    base: dict[str, Any], load: dict[str, Any], spike: dict[str, Any] | None
) -> list[str]:
    """One user's searches, measured outside Locust (bench/load/canary.py)."""
    if not base.get("canary", {}).get("requests"):
        return []
    reference = base["canary"]["p99"]
    rows = [("baseline (1 Locust user)", base["canary"])]
    if spike:
        rows += [(f"{label} the spike", spike["canary"][key])
                 for label, key in [("before", "pre"), ("during", "spike"), ("after", "post")]]  # fmt: skip
    else:
        rows.append(("load", load["canary"]))
    lines = [
        "",
        "## The canary: one user's searches, measured outside Locust (milliseconds)",
        "",
        "One client on one kept-alive connection, in its own process, searching every 0.1 s "
        "(popular queries, every fifth one asked once), while Locust runs its users.",
        "",
        "| window | searches | p50 | p95 | p99 | max | p99 of queries asked once | shed | "
        "failures | p99 / baseline p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, c in rows:
        lines.append(
            f"| {label} | {c['requests']:,} | {_ms(c['p50'])} | {_ms(c['p95'])} "
            f"| {_ms(c['p99'])} | {_ms(c['max'])} | {_ms(c['once_p99'])} | {c['shed']} "
            f"| {c['failures']} | {_ratio(c['p99'], reference)} |"
        )
    return lines


def steady_lines(base: dict[str, Any], steady: dict[str, Any], users: int) -> list[str]:
    lines = [
        "",
        f"## With all {users:,} users running (milliseconds)",
        "",
        f"The load phase from the second all users were running ({steady['after_s']:.0f} s in)"
        " to its end: the ramp, when Locust starts its users and their connections on the"
        " two cores SKR runs on, is left out.",
        "",
        "| endpoint | n | req/s | p50 | p95 | p99 | p99 / baseline p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ENDPOINTS:
        e, b = steady["endpoints"].get(name), base["endpoints"].get(name)
        if e is None:
            continue
        ratio = _ratio(e["p99"], b["p99"]) if b and b["requests"] else "–"
        lines.append(
            f"| `{name}` | {e['requests']:,} | {e['requests'] / steady['seconds']:.1f}"
            f" | {_ms(e['p50'])} | {_ms(e['p95'])} | {_ms(e['p99'])} | {ratio} |"
        )
    c, reference = steady["canary"], base.get("canary", {}).get("p99", 0)
    lines += [
        "",
        f"Errors {_pct(steady['error_rate'])}, shed {_pct(steady['shed_rate'])}; the canary:"
        f" p99 {_ms(c['p99'])} ms ({_ratio(c['p99'], reference) if reference else '–'}),"
        f" queries asked once p99 {_ms(c['once_p99'])} ms.",
    ]
    return lines


def spike_lines(s: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## Spike: {s['base_users']} → {s['peak_users']} users for {s['spike_seconds']} s "
        "and back",
        "",
        "| window | s | req/s | error rate | shed rate | search p50 | p95 | p99 | ask p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in ["pre", "spike", "post"]:
        w = s[label]
        search = w["endpoints"].get("/v1/search", {"p50": 0, "p95": 0, "p99": 0})
        ask = w["endpoints"].get("/v1/ask", {"p99": 0})
        lines.append(
            f"| {label} | {w['seconds']:.0f} | {w['rps']} | {_pct(w['error_rate'])} "
            f"| {_pct(w['shed_rate'])} | {_ms(search['p50'])} | {_ms(search['p95'])} "
            f"| {_ms(search['p99'])} | {_ms(ask['p99'])} |"
        )
    lines += [
        "",
        "Recovery: seconds from the spike's end (users back to the base) until the per-second"
        " p95 of admitted `/v1/search` is within the threshold and stays there 10 s:",
        "",
    ]
    for label, text in [("pre_spike", "2× the pre-spike load's p95"),
                        ("single_user", "2× the single-user baseline's p95")]:  # fmt: skip
        r = s["recovery"][label]
        lines.append(
            f"- {text} ({_ms(r['threshold_ms'])} ms): **{_fmt_recovery(r['request_log_s'])}** "
            f"from the request log (1 s buckets), {_fmt_recovery(r['stats_history_s'])} from "
            "Locust's stats history (2 s window)"
        )
    return lines


def _fmt_recovery(value: float | None) -> str:
    return "never within the run" if value is None else f"{value:.0f} s"


def review_table(result: dict[str, Any]) -> list[str]:
    """The review's rows; with a spike, the load figures are those of the spike's 60 s."""
    base = result["phases"]["baseline"]
    load = result["phases"][result["load_phase"]]
    spike = result.get("spike_analysis")
    during = spike["spike"] if spike else load

    def ratios(window: dict[str, Any]) -> str:
        found = []
        for name in ["/v1/search", "/v1/ask"]:
            b, e = base["endpoints"].get(name), window["endpoints"].get(name)
            if b and e and b["p99"]:
                found.append(f"{name.removeprefix('/v1/')} {e['p99'] / b['p99']:.1f}×")
        return ", ".join(found)

    response = f"p99 {ratios(during)}" + (" (during the spike)" if spike else "")
    if not spike and load.get("steady"):
        response = (
            f"p99 {ratios(load['steady'])} with all users running; {ratios(load)} over the"
            " whole phase, ramp included"
        )
    recovery = "not in this run"
    if spike:
        r = spike["recovery"]
        recovery = (
            f"{_fmt_recovery(r['pre_spike']['request_log_s'])} to 2× the pre-spike p95, "
            f"{_fmt_recovery(r['single_user']['request_log_s'])} to 2× the single-user p95"
        )
    skr_cpu = load["cpu"].get("skr", {}).get("mean", 0)
    pg_cpu = load["cpu"].get("postgresql", {}).get("mean", 0)
    return [
        "",
        "## The review's metrics table, this run",
        "",
        "| metric | review's target | issue 6's target | measured |",
        "| --- | --- | --- | --- |",
        f"| concurrent users | > 1000 | 1,000 with 1–5 s think time | {result['users']:,}"
        + (f" (peak {spike['peak_users']:,})" if spike else "")
        + " |",
        f"| load response | < 2× baseline | p99 ≤ 2× single-user p99 | {response} |",
        f"| error rate | < 1% under 10× load | 0% | {_pct(during['error_rate'])} "
        f"(shed {_pct(during['shed_rate'])})" + (" (during the spike)" if spike else "") + " |",
        f"| recovery time | < 60 s after a spike | ≤ 10 s | {recovery} |",
        f"| resource efficiency | > 70% utilisation | ≥ 70% of the machine at saturation "
        f"| SKR {skr_cpu}%" + (f" + PostgreSQL {pg_cpu}%" if pg_cpu else "") + " |",
        "| auto-scaling time | < 5 minutes | – | not measured (no orchestrator here) |",
    ]
