"""Real processes and servers on loopback for end-to-end tests: a static site and `skr serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx

SHARED_SITE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sites" / "flask-docs"

FALLBACK_PAGES = {
    "blueprints.html": (
        "Modular Applications with Blueprints",
        "A blueprint is a way to organise a group of related views and other code. "
        "Blueprints are registered with the application using the register_blueprint method. "
        "A blueprint can have its own templates and static files.",
    ),
    "templating.html": (
        "Templates",
        "Flask leverages Jinja as its template engine. Templates are rendered with the "
        "render_template function, which looks in the templates folder.",
    ),
    "config.html": (
        "Configuration Handling",
        "The config attribute of the Flask object is a dictionary subclass. Values are loaded "
        "with from_object, from_pyfile or from_prefixed_env.",
    ),
}


def write_fallback_site(root: Path) -> Path:
    """A small site with the same page names, for machines without ../shared."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (title, text) in FALLBACK_PAGES.items():
        body = f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
        body += "".join(f"<p>{s.strip()}.</p>" for s in text.split(". ") if s.strip())
        (root / name).write_text(body + "</main></body></html>")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _QuietHandler(SimpleHTTPRequestHandler):
    delay_seconds = 0.0
    # (monotonic time, path, User-Agent) of every GET, in arrival order
    requests: ClassVar[list[tuple[float, str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.requests.append((time.monotonic(), self.path, self.headers.get("User-Agent", "")))
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        super().do_GET()


@contextmanager
def static_site(root: Path, delay_seconds: float = 0.0) -> Iterator[tuple[str, type]]:
    """Serve ``root`` on 127.0.0.1; yields the base URL and the handler class (whose
    ``delay_seconds`` a test may change while the server runs)."""
    handler = type("Handler", (_QuietHandler,), {"delay_seconds": delay_seconds, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


class SkrServer:
    """`skr serve` in a child process, as a user would run it."""

    def __init__(
        self, data_dir: Path, port: int, log_path: Path, command: str = "serve", **env: str
    ) -> None:
        self.command = command
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log_path = log_path
        self._env = {
            **os.environ,
            "SKR_DATA_DIR": str(data_dir),
            "SKR_PORT": str(port),
            "SKR_API_URL": self.url,
            "SKR_ALLOW_PRIVATE_NETWORKS": "true",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0, *, wait_ready: bool = True) -> None:
        log = self._log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "skr", self.command], env=self._env, stdout=log, stderr=log
        )
        if self.command != "serve":
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"skr serve exited: {self._log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
                if httpx.get(f"{self.url}/livez", timeout=1).status_code == 200 and not wait_ready:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("skr serve did not become ready")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "skr", *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
