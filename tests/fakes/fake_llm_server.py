"""A real OpenAI-compatible chat server on loopback whose behaviour tests switch at run time."""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Mode = Literal["ok", "slow", "fail", "429", "400", "empty"]

_PASSAGE_HEAD = re.compile(r"^\[(\d+)\] ")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def scripted_answer(user_message: str) -> str:
    """'According to the sources, <first sentence of the lowest-numbered passage> [n].'"""
    lines = user_message.splitlines()
    for i, line in enumerate(lines):
        match = _PASSAGE_HEAD.match(line)
        if match is None:
            continue
        body = next((rest for rest in lines[i + 1 :] if rest.strip()), "")
        sentence = _SENTENCE_END.split(body.strip(), maxsplit=1)[0].rstrip(".!? ")
        return f"According to the sources, {sentence} [{match.group(1)}]."
    return "The sources do not say."


def scripted_rewrite(user_message: str) -> str:
    """A model's standalone question, scripted: the last question, then the conversation's
    first user question in brackets (what a follow-up most often refers to)."""
    lines = user_message.splitlines()
    last = next(
        (
            ln.removeprefix("Last question:").strip()
            for ln in lines
            if ln.startswith("Last question:")
        ),
        "",
    )
    first = next((ln.removeprefix("User:").strip() for ln in lines if ln.startswith("User:")), "")
    return f"{last} ({first})" if first else last


class FakeLLMServer:
    """``POST /v1/chat/completions`` served by uvicorn in a background thread.

    Switch ``mode`` between "ok", "slow" (waits ``delay_seconds``, then answers), "fail"
    (HTTP 500), "429" (with ``Retry-After: retry_after_seconds`` unless None), "400" (a
    request the server rejects) and "empty" (an answer with no text). ``request_count``
    counts chat requests; ``last_request`` holds the newest JSON body.
    """

    def __init__(self, *, mode: Mode = "ok", delay_seconds: float = 0.0) -> None:
        self.mode: Mode = mode
        self.delay_seconds = delay_seconds
        self.retry_after_seconds: float | None = None
        self.last_request: dict[str, Any] | None = None
        self._count = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeLLMServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._count

    def reset(self) -> None:
        """Back to answering at once, with the counters at zero."""
        with self._lock:
            self._count = 0
        self.mode, self.delay_seconds, self.retry_after_seconds = "ok", 0.0, None
        self.last_request = None

    def start(self) -> None:
        if self._thread is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        self._socket = sock
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="auto",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._stopping.clear()
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-llm", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("FakeLLMServer did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        self._stopping.set()  # ends "slow" waits so shutdown does not wait for them
        server.should_exit = True
        thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _chat(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        with self._lock:
            self._count += 1
            self.last_request = body
        mode = self.mode
        if mode == "fail":
            return _error(500, "server_error", "the fake model is failing on purpose")
        if mode == "429":
            headers = {}
            if self.retry_after_seconds is not None:
                headers["Retry-After"] = f"{self.retry_after_seconds:g}"
            return _error(429, "rate_limit_exceeded", "slow down", headers)
        if mode == "400":
            return _error(400, "invalid_request_error", "the fake model rejects this request")
        if mode == "slow":
            await self._pause(self.delay_seconds)
        message = _last_user_message(body)
        if mode == "empty":
            text = ""
        elif _is_rewrite(body):
            text = scripted_rewrite(message)
        else:
            text = scripted_answer(message)
        return JSONResponse(self._completion(body, text))

    async def _pause(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        # Polled, not an anyio.Event: stop() sets the flag from the test's thread.
        while not self._stopping.is_set() and time.monotonic() < until:
            await anyio.sleep(min(0.02, max(0.0, until - time.monotonic())))

    def _completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        return {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_words + len(text.split()),
            },
        }


def _is_rewrite(body: dict[str, Any]) -> bool:
    system = [m for m in body.get("messages", []) if m.get("role") == "system"]
    return bool(system) and str(system[0].get("content", "")).startswith("You rewrite")


def _last_user_message(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return str(content)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    payload = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return JSONResponse(payload, status_code=status, headers=headers)
