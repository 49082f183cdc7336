"""Signing in to the web page when SKR wants API keys: the key goes into a cookie that only
this site's own requests carry (HttpOnly, SameSite=Strict), so the page and its script's
calls to the API are authenticated and no session is kept on the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skr.domain.errors import AuthenticationError
from skr.entrypoints.api.dependencies import KEY_COOKIE, get_caller, get_container

_MAX_FORM_BYTES = 4096
_COOKIE_DAYS = 30


class SignInRequiredError(Exception):
    """A page was asked for without a (valid) key while SKR wants one."""


async def web_tenant(request: Request) -> str:
    try:
        return (await get_caller(request)).tenant
    except AuthenticationError as exc:
        raise SignInRequiredError from exc


WebTenantDep = Annotated[str, Depends(web_tenant)]


async def _to_sign_in(_: Request, __: Exception) -> Response:
    return RedirectResponse("/signin", status_code=303)


def install_sign_in_redirect(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequiredError, _to_sign_in)


class SignIn:
    def __init__(self, render: Callable[..., HTMLResponse]) -> None:
        self._render = render

    async def form(self, request: Request) -> HTMLResponse:
        open_mode = await get_container(request).services.access.open_mode()
        return self._render("signin.html", active="signin", open_mode=open_mode)

    async def submit(self, request: Request) -> Response:
        body = (await request.body())[:_MAX_FORM_BYTES].decode("utf-8", "replace")
        key = (parse_qs(body).get("key") or [""])[0].strip()
        try:
            await get_container(request).services.access.authenticate(key)
        except AuthenticationError as exc:
            return self._render("signin.html", 401, active="signin", open_mode=False,
                                error=exc.detail)  # fmt: skip
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            KEY_COOKIE, key, max_age=_COOKIE_DAYS * 86400, httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path="/",
        )  # fmt: skip
        return response

    async def sign_out(self, request: Request) -> Response:
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(KEY_COOKIE, path="/", httponly=True, samesite="strict")
        return response
