"""One spelling per http(s) URL for the crawler, crawl-scope checks and rel=canonical choice.

``normalize_url`` applies these rules, in this order:

1. Leading and trailing spaces and C0 controls are stripped and tabs and line breaks
   removed anywhere (what browsers do with an ``href``); a backslash before the query
   counts as ``/`` (browsers again: ``http://a.test\\@b.test/`` is host ``a.test``).
2. A relative reference is resolved against ``base`` (RFC 3986 section 5), which is
   normalised first; ``http:path`` with the base's own scheme counts as relative.
3. Only ``http`` and ``https`` are accepted, and the scheme is lower-cased. Anything
   else (``javascript:``, ``mailto:``, ``data:``, ``file:``, ``ftp:``, a relative
   reference without a base, an empty string) raises ``InvalidInputError``, as do a
   missing or malformed host or port and any input longer than ``MAX_URL_LENGTH``.
4. User information (``user:password@``) is dropped: credentials must never reach
   the index, the logs or the job record, and the page is what the host serves.
5. The host is lower-cased and a single trailing dot dropped; a non-ASCII host is
   IDNA-encoded with the standard library codec (IDNA 2003, so ``ß`` becomes ``ss``).
   An IPv6 literal is written in its compressed form (``[2001:db8::1]``); zone ids are
   refused. Other IP spellings (``2130706433``) are left as they are: whether an
   address may be fetched is the network guard's call, not this module's.
6. The port is dropped when it is the scheme's default (80 for http, 443 for https).
7. The fragment is dropped.
8. Percent-encoding is normalised in the path and query: escapes of unreserved
   characters (``A-Z a-z 0-9 - . _ ~``) are decoded, other escapes get upper-case hex
   (``%2f`` becomes ``%2F`` and stays encoded), a stray ``%`` becomes ``%25``, and
   characters that may not appear in a URL (spaces, non-ASCII, ``"<>\\^`{|}``) are
   encoded as UTF-8.
9. Dot segments are removed (RFC 3986 section 5.2.4), after step 8, so ``%2E%2E``
   counts as ``..``; empty segments (``//``) are kept, since servers differ on them.
10. Tracking parameters are removed from the query: every name in
    ``TRACKING_PARAMETERS`` or starting with a prefix in ``TRACKING_PREFIXES``
    (``utm_*``), compared case-insensitively. Empty ``&&`` pieces go too.
11. The remaining parameters are sorted by name, stably (repeated names keep their
    order, values are never reordered); ``+`` is left alone. An empty query is dropped
    with its ``?``.
12. An empty path becomes ``/``. Otherwise the path is kept as given: no trailing
    slash is added or removed, and ``/index.html`` is not rewritten to ``/``, because
    servers differ on both.
"""

from __future__ import annotations

import ipaddress
import re
import string
from urllib.parse import SplitResult, urljoin, urlsplit

from skr.domain.errors import InvalidInputError

__all__ = [
    "MAX_URL_LENGTH",
    "TRACKING_PARAMETERS",
    "TRACKING_PREFIXES",
    "normalize_url",
    "pick_canonical",
    "same_site",
]

# RFC 9110 asks for at least 8000 octets; longer links are traps or garbage.
MAX_URL_LENGTH = 8192

TRACKING_PARAMETERS: frozenset[str] = frozenset(
    {
        "gclid",  # Google Ads
        "fbclid",  # Facebook
        "mc_cid",  # Mailchimp campaign
        "mc_eid",  # Mailchimp recipient
        "msclkid",  # Microsoft Ads
        "_ga",  # Google Analytics cross-domain linker
        "yclid",  # Yandex Direct
        "igshid",  # Instagram share
        "ref_src",  # Twitter/X embeds
    }
)
TRACKING_PREFIXES: tuple[str, ...] = ("utm_",)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PATH_SAFE = string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=" + ":@/"
_QUERY_SAFE = _PATH_SAFE + "?"
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_AND_NEWLINE = str.maketrans("", "", "\t\n\r")
_HOST_CHARS = re.compile(r"[a-z0-9_.-]+")
_MAX_HOST_LENGTH = 253


def _escape_pattern(safe: str) -> re.Pattern[str]:
    """A pattern matching each escape, each stray ``%`` and each run of unsafe characters."""
    return re.compile(rf"%[0-9A-Fa-f]{{2}}|%|[^{re.escape(safe)}%]+")


_PATH_ESCAPES = _escape_pattern(_PATH_SAFE)
_QUERY_ESCAPES = _escape_pattern(_QUERY_SAFE)


def normalize_url(url: str, base: str | None = None) -> str:
    """``url`` (resolved against ``base`` when relative) in SKR's canonical form."""
    reference = _clean(url)
    base_url = normalize_url(base) if base is not None else None
    try:
        parts = urlsplit(urljoin(base_url, reference) if base_url else reference)
    except ValueError as exc:
        raise InvalidInputError(f"unparsable URL {_shown(url)}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        what = f"a {scheme}: URL" if scheme else "a relative URL without a base"
        raise InvalidInputError(f"only http and https URLs can be crawled, not {what}")
    try:
        normalized = _assemble(scheme, parts)
    except UnicodeError as exc:
        raise InvalidInputError(f"unparsable URL {_shown(url)}: {exc}") from exc
    if len(normalized) > MAX_URL_LENGTH:
        raise InvalidInputError(f"URL longer than {MAX_URL_LENGTH} characters once encoded")
    return normalized


def same_site(url: str, root: str, *, same_host: bool = True, prefix: str | None = None) -> bool:
    """Whether ``url`` is inside the crawl scope that starts at ``root``.

    * ``prefix`` given: the scope is exactly the URLs whose normalised form starts with
      the normalised prefix, http and https counting as one (``root`` is only checked).
      The comparison is on strings: end the prefix with ``/`` to mean a directory.
    * ``same_host=True`` (the default): the same host and the same explicit port as
      ``root``; http and https count as one. ``www.example.com`` and ``example.com``
      are different hosts, as they are to HTTP: nothing says they serve the same site.
    * ``same_host=False``: the root's host and its subdomains; a root host starting
      with ``www.`` also admits the bare domain and its subdomains when that domain
      still has two labels or more. Any port. An IP-address root admits only itself.

    A ``url`` that cannot be normalised (``mailto:``, garbage) is outside every scope;
    an invalid ``root`` or ``prefix`` raises ``InvalidInputError``.
    """
    root_url = normalize_url(root)
    scope_prefix = normalize_url(prefix) if prefix is not None else None
    try:
        candidate = normalize_url(url)
    except InvalidInputError:
        return False
    if scope_prefix is not None:
        return _after_scheme(candidate).startswith(_after_scheme(scope_prefix))
    if same_host:
        return _authority(candidate) == _authority(root_url)
    return _within_domain(_host(candidate), _host(root_url))


def pick_canonical(page_url: str, canonical_href: str | None) -> str:
    """The normalised ``rel=canonical`` target if usable, else the normalised page URL.

    The target is used when it is http(s) on the page's host and explicit port (http
    and https counting as one, ``www.`` as another host). A relative ``canonical_href``
    is resolved against the page. A canonical naming another host is ignored: honouring
    it would let one site claim pages for another.
    """
    page = normalize_url(page_url)
    if canonical_href is None:
        return page
    try:
        canonical = normalize_url(canonical_href, base=page)
    except InvalidInputError:
        return page
    return canonical if _authority(canonical) == _authority(page) else page


def _clean(url: str) -> str:
    """``url`` without surrounding blanks and controls, tabs and line breaks; ``\\`` as ``/``."""
    if len(url) > 4 * MAX_URL_LENGTH:  # refuse before spending any work on it
        raise InvalidInputError(f"URL longer than {MAX_URL_LENGTH} characters")
    cleaned = url.strip(_C0_AND_SPACE).translate(_TAB_AND_NEWLINE)
    if len(cleaned) > MAX_URL_LENGTH:
        raise InvalidInputError(f"URL longer than {MAX_URL_LENGTH} characters")
    end = min((i for i in (cleaned.find("?"), cleaned.find("#")) if i >= 0), default=None)
    return cleaned[:end].replace("\\", "/") + (cleaned[end:] if end is not None else "")


def _assemble(scheme: str, parts: SplitResult) -> str:
    host, port = _host_and_port(parts.netloc)
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(_PATH_ESCAPES.sub(_fix_escape, parts.path)) or "/"
    query = _clean_query(parts.query)
    return f"{scheme}://{authority}{path}" + (f"?{query}" if query else "")


def _host_and_port(netloc: str) -> tuple[str, int | None]:
    """The normalised host and the port (``None`` when absent) of a network location."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        literal, bracket, port_text = hostport[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise InvalidInputError(f"malformed IPv6 host in {_shown(netloc)}")
        return _ipv6_host(literal), _port(port_text[1:])
    host, _, port_text = hostport.partition(":")
    return _name_host(host), _port(port_text)


def _ipv6_host(literal: str) -> str:
    if "%" in literal:
        raise InvalidInputError("IPv6 zone ids are not accepted in URLs to crawl")
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError as exc:
        raise InvalidInputError(f"malformed IPv6 host {_shown(literal)}") from exc
    return f"[{address.compressed}]"


def _name_host(host: str) -> str:
    host = host.removesuffix(".")
    if not host:
        raise InvalidInputError("the URL has no host")
    ascii_host = host.lower().encode("idna").decode("ascii")  # may raise UnicodeError
    if len(ascii_host) > _MAX_HOST_LENGTH or not _HOST_CHARS.fullmatch(ascii_host):
        raise InvalidInputError(f"malformed host {_shown(host)}")
    return ascii_host


def _port(text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= 65535:
        raise InvalidInputError(f"malformed port {_shown(text)}")
    return int(text)


def _fix_escape(match: re.Match[str]) -> str:
    """One escape normalised, a stray ``%`` escaped, or a run of unsafe characters encoded."""
    text = match.group()
    if len(text) == 3 and text[0] == "%":
        char = chr(int(text[1:], 16))
        return char if char in _UNRESERVED else text.upper()
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8"))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for a path that is empty or starts with ``/``."""
    if "." not in path:
        return path
    segments = path.split("/")[1:]
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    result = "/" + "/".join(kept)
    # A final "." or ".." names a directory, so the result ends in a slash.
    if segments and segments[-1] in {".", ".."} and not result.endswith("/"):
        result += "/"
    return result


def _clean_query(query: str) -> str:
    params = [_QUERY_ESCAPES.sub(_fix_escape, p) for p in query.split("&") if p]
    kept = [p for p in params if not _is_tracking(_param_name(p))]
    return "&".join(sorted(kept, key=_param_name))


def _param_name(param: str) -> str:
    return param.partition("=")[0]


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMETERS or lowered.startswith(TRACKING_PREFIXES)


def _after_scheme(normalized: str) -> str:
    return normalized.partition(":")[2]


def _authority(normalized: str) -> str:
    return urlsplit(normalized).netloc


def _host(normalized: str) -> str:
    authority = _authority(normalized)
    if authority.startswith("["):
        return authority.partition("]")[0] + "]"
    return authority.partition(":")[0]


def _within_domain(host: str, root_host: str) -> bool:
    if host == root_host:
        return True
    if root_host.startswith("[") or _is_ipv4(root_host):
        return False
    domains = [root_host]
    bare = root_host.removeprefix("www.")
    if bare != root_host and "." in bare:
        domains.append(bare)
    return any(host == d or host.endswith(f".{d}") for d in domains)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _shown(text: str) -> str:
    """``text`` quoted and cut short, for error details that people read."""
    return repr(text if len(text) <= 80 else f"{text[:77]}...")
