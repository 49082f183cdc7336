"""API keys end to end: `skr keys create` on the store, a real `skr serve` that then
wants them, the CLI sending SKR_API_KEY, and `skr keys revoke` taking effect."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import SkrServer, free_port

pytestmark = pytest.mark.slow


def skr(server: SkrServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skr", *args], env={**server._env, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_keys_made_on_the_store_guard_the_server_and_the_cli_sends_one(tmp_path: Path) -> None:
    server = SkrServer(tmp_path / "data", free_port(), tmp_path / "server.log",
                       SKR_KEY_CACHE_SECONDS="0.5")  # fmt: skip
    made = skr(server, "keys", "create", "--tenant", "acme", "--scope", "read", "--name", "cli")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("skr_") and "not shown again" in made.stderr
    listed = skr(server, "keys", "list")
    assert "acme" in listed.stdout and token not in listed.stdout
    server.start()
    try:
        assert httpx.get(f"{server.url}/v1/collections").status_code == 401
        refused = skr(server, "search", "anything")
        assert refused.returncode != 0 and "401" in refused.stderr
        allowed = skr(server, "search", "anything", SKR_API_KEY=token)
        assert allowed.returncode == 0, allowed.stderr
        key_id = token.split("_")[1]
        assert skr(server, "keys", "revoke", key_id).returncode == 0
        time.sleep(1.0)  # SKR_KEY_CACHE_SECONDS
        answer = httpx.get(
            f"{server.url}/v1/collections", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 401  # and SKR did not fall back to running open
        assert httpx.get(f"{server.url}/v1/collections").status_code == 401
    finally:
        server.stop()
