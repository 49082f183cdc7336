"""`skr keys`: make, list and revoke API keys, straight on the store the settings select
(the first key cannot be made through an API that already wants one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import anyio
import typer
from rich.console import Console
from rich.table import Table

from skr.domain.access import Scope
from skr.domain.errors import SKRError
from skr.services.access import AccessService
from skr.settings import Settings

T = TypeVar("T")

keys_app = typer.Typer(help="API keys: each bound to one tenant and scopes.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)


def _run(action: Callable[[AccessService], Awaitable[T]]) -> T:
    from skr.wiring.stores import open_key_store  # the store's drivers only when a command runs

    async def go() -> T:
        async with open_key_store(Settings()) as store:
            return await action(AccessService(store, cache_seconds=0))

    try:
        return anyio.run(go)
    except SKRError as exc:
        _err.print(f"error: {exc.detail}", style="red", highlight=False)
        raise typer.Exit(1) from exc


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(metavar="TENANT", help="Whose data the key reaches.")],
    scope: Annotated[
        list[Scope],
        typer.Option("--scope", metavar="SCOPE", help="read, ingest or admin; repeat for several."),
    ],
    name: Annotated[
        str, typer.Option(metavar="TEXT", help="A note on who or what uses the key.")
    ] = "",
) -> None:
    """Make a key; it is printed once and never again.

    SKR keeps only the key's hash. The key goes to standard output, alone on its line;
    what it is for goes to standard error.
    """
    made = _run(lambda access: access.create_key(tenant, name, scope))
    _err.print(
        f"key {made.key.id} for tenant {made.key.tenant} "
        f"({', '.join(sorted(made.key.scopes))}); keep it now, it is not shown again:",
        highlight=False,
    )
    _out.print(made.token, highlight=False, soft_wrap=True)


@keys_app.command("list")
def list_() -> None:
    """Every key with its tenant, scopes and state (never a secret)."""
    keys = _run(lambda access: access.list_keys())
    table = Table("id", "tenant", "scopes", "name", "created", "state")
    for key in keys:
        state = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(
            key.id, key.tenant, ",".join(sorted(key.scopes)), key.name,
            f"{key.created_at:%Y-%m-%d %H:%M}", state,
        )  # fmt: skip
    _out.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key's id (from `skr keys list`).")
    ],
) -> None:
    """Revoke a key.

    API processes stop taking it within SKR_KEY_CACHE_SECONDS.
    """
    key = _run(lambda access: access.revoke_key(key_id))
    _out.print(f"key {key.id} of tenant {key.tenant} is revoked", highlight=False)
