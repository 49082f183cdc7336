"""What a site's robots.txt lets SKR fetch, how slowly, and where its sitemaps are (protego)."""

from __future__ import annotations

import re

from protego import Protego

from skr.domain.errors import InvalidInputError

__all__ = ["MAX_ROBOTS_BYTES", "RobotsPolicy", "user_agent_token"]

# RFC 9309 section 2.5: crawlers must parse at least 500 KiB and may ignore the rest.
MAX_ROBOTS_BYTES = 500 * 1024

# RFC 9309 section 2.2.1: a product token is letters, "-" and "_".
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]+")


def user_agent_token(user_agent: str) -> str:
    """The robots.txt product token of a User-Agent: ``"SKR"`` from ``"SKR/0.1 (...)"``.

    It is the leading run of letters, ``-`` and ``_`` of the first word (RFC 9309
    allows no other characters in the token a robots.txt group names).
    """
    words = user_agent.split()
    match = _PRODUCT_TOKEN.match(words[0]) if words else None
    if match is None:
        raise InvalidInputError(
            f"the user agent {user_agent[:80]!r} does not start with a product token"
        )
    return match.group()


class RobotsPolicy:
    """The robots.txt rules that apply to one user agent on one site.

    Build it from the robots.txt fetch:

    * 2xx: ``RobotsPolicy.parse(body, user_agent)``;
    * 404, 410 and other 4xx: ``RobotsPolicy.allow_all()`` (no robots.txt, no rules);
    * 401 and 403: ``RobotsPolicy.deny_all()``. A site that refuses its robots.txt to
      SKR is taken to refuse SKR altogether. This is Google's historical rule and more
      careful than RFC 9309 section 2.3.1.3 (which allows crawling after any 4xx) and
      than Google today, which treats 401/403 like 404;
    * 429, 5xx and network failures: ``RobotsPolicy.deny_all()`` until a later try
      succeeds, as RFC 9309 section 2.3.1.4 requires.

    Matching is protego's: the group with the longest name contained in the token at
    a word boundary wins, case-insensitively, else the ``*`` group, else no rules; the
    longest matching ``Allow``/``Disallow`` pattern decides, ``Allow`` winning ties;
    ``*`` and a final ``$`` work as in RFC 9309; ``/robots.txt`` is always allowed.
    """

    __slots__ = ("_agent", "_default", "_parser")

    def __init__(self, *, parser: Protego | None, agent: str, default: bool) -> None:
        self._parser = parser
        self._agent = agent
        self._default = default

    @classmethod
    def parse(cls, robots_txt: str | bytes, user_agent: str) -> RobotsPolicy:
        """The rules of ``robots_txt`` for ``user_agent`` (a token or a whole User-Agent).

        Only the first ``MAX_ROBOTS_BYTES`` are read, minus the line cut in half there;
        bytes that are not UTF-8 are replaced, and lines that are not rules are skipped.
        """
        token = user_agent_token(user_agent)
        return cls(parser=Protego.parse(_bounded_text(robots_txt)), agent=token, default=True)

    @classmethod
    def allow_all(cls) -> RobotsPolicy:
        """No rules: every URL may be fetched (robots.txt answered 404)."""
        return cls(parser=None, agent="*", default=True)

    @classmethod
    def deny_all(cls) -> RobotsPolicy:
        """Nothing may be fetched (robots.txt answered 401/403, 429, 5xx or not at all)."""
        return cls(parser=None, agent="*", default=False)

    def allowed(self, url: str) -> bool:
        """Whether SKR may fetch ``url`` (absolute, or a path with its query)."""
        if self._parser is None:
            return self._default
        try:
            return self._parser.can_fetch(url, self._agent)
        except ValueError as exc:  # urllib cannot split it (a broken IPv6 host, say)
            raise InvalidInputError(f"unparsable URL {url[:80]!r}: {exc}") from exc

    def crawl_delay(self) -> float | None:
        """Seconds to wait between requests to the site, or ``None`` when no rule says.

        ``Crawl-delay`` and ``Request-rate`` (``n/s`` as ``s/n`` seconds; any time-of-day
        window is ignored, so the rate holds all day) are both honoured: the slower wins.
        """
        if self._parser is None:
            return None
        delays: list[float] = []
        delay = self._parser.crawl_delay(self._agent)
        if delay is not None:
            delays.append(delay)
        rate = self._parser.request_rate(self._agent)
        if rate is not None:
            delays.append(rate.seconds / rate.requests)
        return max(delays, default=None)

    def sitemaps(self) -> list[str]:
        """The ``Sitemap:`` URLs, deduplicated in file order and as written.

        They are not checked: normalise them and pass them through the network guard.
        """
        if self._parser is None:
            return []
        return list(dict.fromkeys(self._parser.sitemaps))


def _bounded_text(robots_txt: str | bytes) -> str:
    """At most ``MAX_ROBOTS_BYTES`` of UTF-8, decoded leniently, with no partial last line."""
    if isinstance(robots_txt, str):
        # Each character is a byte or more, so one over the cap is enough to notice it.
        data = robots_txt[: MAX_ROBOTS_BYTES + 1].encode("utf-8", errors="replace")
    else:
        data = robots_txt[: MAX_ROBOTS_BYTES + 1]
    if len(data) > MAX_ROBOTS_BYTES:
        data = data[:MAX_ROBOTS_BYTES]
        # A rule cut in half ("Allow: /private-docs" read as "Allow: /pri") could allow
        # more than the site meant, so the incomplete last line is dropped.
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        data = data[: cut + 1]
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")
