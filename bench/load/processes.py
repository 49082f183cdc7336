"""Child processes for the load harness, each in its own process group (so it and its
children end together), and a sampler of their CPU use as a share of the whole machine."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import psutil


class Child:
    """A command in a new session; ``stop`` ends its whole process group."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                list(argv), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float) -> int:
        """Exit code; on timeout the group is killed and TimeoutError raised."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(f"{self.name} ran past its {timeout:.0f} s limit") from None

    def stop(self, grace: float = 20.0) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        # children left behind by a parent that exited (uvicorn workers, locust greenlets)
        self._signal(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def wait_ready(child: Child, url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited: {child.tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} was not ready within {timeout:.0f} s: {child.tail()}")


class CpuSampler:
    """Every second, the CPU time used by each group of process trees (and by PostgreSQL
    backends whose title names ``pg_database``), as % of the whole machine (100% = every
    core busy); and the machine's own busy share."""

    def __init__(
        self, groups: dict[str, Callable[[], list[int]]], pg_database: str | None = None
    ) -> None:
        self.groups = groups
        self.pg_database = pg_database
        self.samples: list[dict[str, float]] = []
        self.cores = psutil.cpu_count() or 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._procs: dict[int, psutil.Process] = {}
        self._last: dict[tuple[int, float], float] = {}

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _trees(self) -> dict[str, list[psutil.Process]]:
        trees: dict[str, list[psutil.Process]] = {}
        for label, roots in self.groups.items():
            found: list[psutil.Process] = []
            for pid in roots():
                try:
                    root = psutil.Process(pid)
                    found += [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
            trees[label] = found
        if self.pg_database:
            needle = f" {self.pg_database} "
            trees["postgresql"] = [
                p
                for p in psutil.process_iter(["cmdline"])
                if needle in " ".join(p.info["cmdline"] or []) + " "
            ]
        return trees

    def _busy(self, procs: list[psutil.Process], seen: dict[tuple[int, float], float]) -> float:
        total = 0.0
        for p in procs:
            try:
                key = (p.pid, p.create_time())
                times = p.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            if key in self._last:  # a process first seen now counts from the next second
                total += max(0.0, used - self._last[key])
            seen[key] = used
        return total

    def _run(self) -> None:
        machine = psutil.cpu_times()
        wall = time.monotonic()
        self._busy([p for ps in self._trees().values() for p in ps], self._last)
        while not self._stop.wait(1.0):
            seen: dict[tuple[int, float], float] = {}
            now, machine_now = time.monotonic(), psutil.cpu_times()
            capacity = (now - wall) * self.cores
            sample = {
                label: 100 * self._busy(procs, seen) / capacity
                for label, procs in self._trees().items()
            }
            idle = (machine_now.idle + machine_now.iowait) - (machine.idle + machine.iowait)
            sample["machine"] = 100 * (1 - idle / capacity)
            sample["time"] = time.time()
            self.samples.append(sample)
            self._last, machine, wall = seen, machine_now, now

    def summary(self, skip_first: int = 0) -> dict[str, dict[str, float]]:
        """Mean, p90 and max per group, leaving out the first seconds (the ramp)."""
        rows = self.samples[skip_first:] or self.samples
        labels = [k for k in (rows[0] if rows else {}) if k != "time"]
        out: dict[str, dict[str, float]] = {}
        for label in labels:
            values = sorted(r[label] for r in rows)
            out[label] = {
                "mean": round(statistics.fmean(values), 1),
                "p90": round(values[int(0.9 * (len(values) - 1))], 1),
                "max": round(values[-1], 1),
            }
        return out
